"""The pre-registered evidence study's numbers and tables, computed from the run folders.

``evidence_verdicts.py`` turns them into words and ``evidence_section.py`` assembles RESULTS.md's section.
The analysis is the one fixed in ``PREREGISTRATION.md``: per-seed (or per-subset) differences of
test top-1 in points, their mean with a two-sided one-sample t-test and a 95% t-interval (scipy),
Holm's correction over the primary family (P1, P2, P3) with the Bonferroni interval at
1 - 0.05/3 next to each 95% one, equivalence within +-1 point by the 90% interval (two one-sided
tests at 5%), and otherwise "not resolved" with the seeds a difference of the observed size
would need at the observed spread. Nothing is filled in: a missing run leaves its pair out and
the part is reported as incomplete.

    python benchmarks/fmnist_lt/results.py   # writes RESULTS.md, this section included
"""
from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from pathlib import Path

import evidence
from evidence import BASELINE_SEEDS, LONG, LOSSES, MAIN, PRIMARY_SEEDS, SUBSETS
from study_plan import RunSpec

from purenoise.reporting.summary import minority_half_accuracy
from purenoise.reporting.text import markdown_table
from purenoise.run_paths import RunPaths

ALPHA = 0.05
MARGIN = 1.0  # points: the pre-registered equivalence margin
FAMILY = 3  # P1, P2, P3
LABELS = {"erm": "ERM", "rs": "RS", "drs": "DRS", "open": "OPeN", "erm_logit_adjust": "LA / BS (tau 1)",
          "erm_ldam_drw": "LDAM-DRW", "open_logit_adjust": "OPeN on LA / BS", "open_ldam_drw": "OPeN on LDAM-DRW"}
BASELINES = ("erm", "rs", "drs", "erm_logit_adjust", "erm_ldam_drw")
Measure = Callable[[dict | None], float | None]  # a run's eval.json -> points (top1, test_minority, ...)


# ----------------------------------------------------------------------------- reading runs
def run_eval(runs: Path, cell: str, method: str, seed: int, subset: int = 0) -> dict | None:
    """A planned run's eval.json, or None while it is not finished."""
    path = RunPaths(RunSpec(cell, method, seed, subset=subset).folder(runs)).eval
    return json.loads(path.read_text()) if path.exists() else None


def top1(ev: dict | None) -> float | None:
    """Test top-1 in points."""
    return None if ev is None else 100.0 * ev["top1"]


def train_minority(ev: dict | None) -> float | None:
    """Minority-half training accuracy (the memorization diagnostic) in points."""
    if ev is None or not ev.get("train_per_class_acc"):
        return None
    v = minority_half_accuracy(ev["train_per_class_acc"], ev["class_counts"])
    return None if v is None else 100.0 * v


def test_minority(ev: dict | None) -> float | None:
    """Minority-half test accuracy in points."""
    if ev is None:
        return None
    v = minority_half_accuracy(ev["per_class_acc"], ev["class_counts"])
    return None if v is None else 100.0 * v


# ----------------------------------------------------------------------------- statistics
def one_sample(values: list[float], level: float = 0.95) -> dict:
    """Mean, std, t-interval at ``level`` and at 90% (equivalence), and the two-sided p of mean 0."""
    from scipy import stats

    n = len(values)
    out = {"n": n, "values": values, "mean": statistics.fmean(values) if n else None}
    if n < 2:
        return {**out, "std": None, "lo": None, "hi": None, "lo90": None, "hi90": None, "p": None}
    std = statistics.stdev(values)
    se = std / math.sqrt(n)
    mean = out["mean"]
    q, q90 = stats.t.ppf(0.5 + level / 2, n - 1), stats.t.ppf(0.95, n - 1)
    p = 1.0 if se == 0 and mean == 0 else (0.0 if se == 0 else float(2 * stats.t.sf(abs(mean) / se, n - 1)))
    return {**out, "std": std, "lo": mean - q * se, "hi": mean + q * se,
            "lo90": mean - q90 * se, "hi90": mean + q90 * se, "p": p}


def holm(pvalues: list[float | None]) -> list[float | None]:
    """Holm-adjusted p-values (step-down, monotone, capped at 1); None stays None."""
    present = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    m, out, running = len(present), [None] * len(pvalues), 0.0
    for k, (p, i) in enumerate(present):
        running = max(running, min(1.0, (m - k) * p))
        out[i] = running
    return out


def seeds_needed(mean: float, std: float, level: float = 0.95, most: int = 1000) -> int | None:
    """The fewest seeds whose t-interval at ``level`` would exclude 0 for this mean and spread."""
    from scipy import stats

    if not mean or not std:
        return None
    for n in range(2, most + 1):
        if stats.t.ppf(0.5 + level / 2, n - 1) * std / math.sqrt(n) < abs(mean):
            return n
    return None


def verdict(s: dict, p_adj: float | None, up: str = "above 0", down: str = "below 0") -> str:
    """The pre-registered words for one primary quantity.

    Significance after Holm is read first, equivalence second: a contrast that is both above 0
    after Holm and inside +-1 point is called "above 0" (RESULTS.md lists this reading). The seeds
    a "not resolved" difference would need are counted at the family's level (1 - 0.05/3), the
    level at which it would be resolved.
    """
    if s["mean"] is None or s["p"] is None:
        return "incomplete"
    if p_adj is not None and p_adj < ALPHA:
        return up if s["mean"] > 0 else down
    if -MARGIN < s["lo90"] and s["hi90"] < MARGIN:
        return f"equivalent within +-{MARGIN:g} point"
    n = seeds_needed(s["mean"], s["std"], level=1 - ALPHA / FAMILY)
    more = f"; about {n} seeds would resolve a difference of this size at this spread" if n else ""
    return f"not resolved (not significant after Holm's correction{more})"


def fmt(v: float | None, signed: bool = True, nd: int = 2) -> str:
    """A number with ``nd`` decimals (signed by default), or ``n/a``."""
    return "n/a" if v is None else (f"{v:+.{nd}f}" if signed else f"{v:.{nd}f}")


def ci(s: dict, lo: str = "lo", hi: str = "hi") -> str:
    """``[lo, hi]`` of a :func:`one_sample` result, or ``n/a`` with fewer than two values."""
    return "n/a" if s.get(lo) is None else f"[{fmt(s[lo])}, {fmt(s[hi])}]"


def mean_std(vals: list[float]) -> str:
    """``mean +- std (n=k)`` of the values, ``x (1 run)`` for one, ``n/a`` for none."""
    if not vals:
        return "n/a"
    if len(vals) < 2:
        return f"{vals[0]:.2f} (1 run)"
    return f"{statistics.fmean(vals):.2f} +- {statistics.stdev(vals):.2f} (n={len(vals)})"


# ----------------------------------------------------------------------------- quantities
def gain(runs: Path, cell: str, seed: int, subset: int = 0, *, a: str = "open", b: str = "drs",
         measure: Measure = top1) -> float | None:
    """``a - b`` in points of ``measure`` (test top-1 unless told) for one seed (and subset); None if
    either run is missing."""
    x, y = measure(run_eval(runs, cell, a, seed, subset)), measure(run_eval(runs, cell, b, seed, subset))
    return None if x is None or y is None else x - y


def paired_gain(runs: Path, cell: str, seeds: tuple[int, ...], *, a: str = "open", b: str = "drs",
                measure: Measure = top1) -> dict:
    """:func:`one_sample` of ``a - b`` (:func:`gain`) over the seeds where both runs are finished."""
    return one_sample([g for g in (gain(runs, cell, s, a=a, b=b, measure=measure) for s in seeds) if g is not None])


def seeds_of(runs: Path, cell: str, method: str, measure: Measure = top1,
             seeds: tuple[int, ...] = PRIMARY_SEEDS) -> list[float]:
    """``measure`` of a cell's method over the seeds whose run is finished."""
    return [v for v in (measure(run_eval(runs, cell, method, s)) for s in seeds) if v is not None]


def contrast(runs: Path, high: str, low: str, seeds=PRIMARY_SEEDS) -> dict:
    """Per seed: (OPeN - DRS) in the cell that memorizes more minus that in the one that memorizes less."""
    vals = []
    for s in seeds:
        g_hi, g_lo = gain(runs, high, s), gain(runs, low, s)
        if g_hi is not None and g_lo is not None:
            vals.append(g_hi - g_lo)
    return one_sample(vals)


def best_baseline(runs: Path) -> tuple[str | None, dict[str, list[float]]]:
    """The baseline with the highest mean top-1 over seeds 0-9 (needs all ten seeds of each)."""
    tops = {m: seeds_of(runs, MAIN, m, seeds=BASELINE_SEEDS) for m in BASELINES}
    if any(len(v) < len(BASELINE_SEEDS) for v in tops.values()):
        return None, tops
    return max(BASELINES, key=lambda m: statistics.fmean(tops[m])), tops


def primary(runs: Path) -> list[tuple[str, str, dict]]:
    """``(name, description, stats)`` of P1, P2 and P3, in the pre-registered order."""
    chosen = evidence.twins(runs)
    p1 = contrast(runs, MAIN, chosen[MAIN]) if MAIN in chosen else one_sample([])
    p2 = contrast(runs, chosen[LONG], LONG) if LONG in chosen else one_sample([])
    best, _ = best_baseline(runs)
    p3 = paired_gain(runs, MAIN, BASELINE_SEEDS, b=best) if best else one_sample([])
    return [("P1", f"n_max 1000: (OPeN - DRS)[{MAIN}] - (OPeN - DRS)[{chosen.get(MAIN, 'twin')}]", p1),
            ("P2", f"n_max 6000: (OPeN - DRS)[{chosen.get(LONG, 'twin')}] - (OPeN - DRS)[{LONG}]", p2),
            ("P3", f"main cell: OPeN - best baseline ({LABELS.get(best, 'not known yet')})", p3)]


def manipulation(runs: Path, cell: str, twin: str, direction: str) -> dict:
    """Mean DRS minority-half training accuracy of a cell and its twin over seeds 0-4, and the check."""
    a = [v for v in (train_minority(run_eval(runs, cell, "drs", s)) for s in PRIMARY_SEEDS) if v is not None]
    b = [v for v in (train_minority(run_eval(runs, twin, "drs", s)) for s in PRIMARY_SEEDS) if v is not None]
    if len(a) < len(PRIMARY_SEEDS) or len(b) < len(PRIMARY_SEEDS):  # the check is over all five seeds
        return {"cell": a, "twin": b, "moved": None, "passed": None}
    moved = statistics.fmean(b) - statistics.fmean(a)
    sign = -1 if direction == "lower" else 1
    return {"cell": a, "twin": b, "moved": moved, "passed": sign * moved >= 3.0}


# ----------------------------------------------------------------------------- the section
def pilots_lines(runs: Path) -> list[str]:
    """The pilots' table and the twins chosen (markdown lines)."""
    rows = []
    for cell, cands in evidence.CANDIDATES.items():
        for c in cands:
            erm, drs = run_eval(runs, c, "erm", 0), run_eval(runs, c, "drs", 0)
            rows.append([f"`{c}`", f"`{cell}`", evidence.DIRECTION[cell],
                         fmt(None if erm is None else 100 * erm["train_top1"], False),
                         fmt(train_minority(erm), False), fmt(train_minority(drs), False)])
    lines = ["### The twins: pilots and the choice", "",
             "Seed 0 of every candidate (ERM, and DRS branched at epoch 160); the rule reads only the last "
             "column (training accuracy, %, un-augmented training images).", "",
             *markdown_table(["candidate", "twin of", "wanted", "ERM train top-1", "ERM train, minority half",
                              "DRS train, minority half"], rows), ""]
    path = runs / evidence.TWINS_FILE
    if path.exists():
        t = json.loads(path.read_text())
        lines.append("Chosen (`runs/twins.json`, " + t["decided"] + "): " + "; ".join(
            f"`{v['twin']}` for `{k}`" for k, v in t["twins"].items()) + ".")
    else:
        lines.append("**No twin chosen yet**: the pilots are not all finished.")
    return lines + [""]


def two_by_two_lines(runs: Path) -> list[str]:
    """The 2x2 of each data size and the manipulation checks (markdown lines)."""
    chosen = evidence.twins(runs)
    rows, minority = [], []
    for cell in (MAIN, chosen.get(MAIN), LONG, chosen.get(LONG)):
        if cell is None:
            continue
        g = paired_gain(runs, cell, PRIMARY_SEEDS)
        rows.append([f"`{cell}`", *(mean_std(seeds_of(runs, cell, m)) for m in ("erm", "drs", "open")),
                     f"{fmt(g['mean'])} {ci(g)}", mean_std(seeds_of(runs, cell, "drs", train_minority))])
        minority.append([f"`{cell}`", *(mean_std(seeds_of(runs, cell, m, f)) for f in (train_minority, test_minority)
                                        for m in ("drs", "open"))])
    lines = ["### The 2x2: memorization within one data size", "",
             "Test top-1 (%), seeds 0-4, mean +- std; OPeN - DRS paired by seed with its 95% t-interval "
             "(secondary); the DRS runs' minority-half training accuracy (%), the memorization they reach.", "",
             *markdown_table(["cell", "ERM", "DRS", "OPeN", "OPeN - DRS", "DRS train, minority half"], rows), "",
             "The minority half in the same runs (secondary): accuracy (%) on the training images (un-augmented) "
             "and on the test images of the half of the classes with the fewest training images.", "",
             *markdown_table(["cell", "DRS train", "OPeN train", "DRS test", "OPeN test"], minority), ""]
    for cell, key in ((MAIN, MAIN), (LONG, LONG)):
        if key in chosen:
            m = manipulation(runs, cell, chosen[key], evidence.DIRECTION[key])
            state = ("incomplete" if m["passed"] is None else
                     f"the twin moved it by {fmt(m['moved'])} points: "
                     + ("passed (3 points or more the intended way)" if m["passed"] else
                        "**failed** (less than 3 points the intended way): this data size's contrast is uninformative"))
            lines.append(f"- Manipulation check, `{cell}` against `{chosen[key]}`: {state}.")
    return lines + [""]


def primary_table(runs: Path) -> tuple[list[str], list[tuple[str, str, dict, float | None, str]]]:
    """The primary family's table, and per quantity ``(name, what, stats, adjusted p, verdict)``."""
    prim = primary(runs)
    pvalues = [s["p"] for _, _, s in prim]
    complete = [s["n"] for _, _, s in prim] == [len(PRIMARY_SEEDS), len(PRIMARY_SEEDS), len(BASELINE_SEEDS)]
    # Until all three are in, m * p bounds Holm's adjusted p from above whatever the others turn out.
    adj = holm(pvalues) if complete else [None if p is None else min(1.0, FAMILY * p) for p in pvalues]
    rows, out = [], []
    for (name, what, s), p_adj in zip(prim, adj):
        v = verdict(s, p_adj, *(("OPeN ahead", "OPeN behind") if name == "P3" else ("above 0", "below 0")))
        bonf = one_sample(s["values"], 1 - ALPHA / FAMILY) if s["n"] >= 2 else s
        rows.append([name, what, str(s["n"]), fmt(s["mean"]), fmt(s["std"], False), ci(s), ci(bonf),
                     "n/a" if s["p"] is None else f"{s['p']:.4f}", "n/a" if p_adj is None else f"{p_adj:.4f}", v])
        out.append((name, what, s, p_adj, v))
    lines = ["### The primary family", "",
             "Points of test top-1, paired by seed; two-sided t-tests of mean 0, Holm-adjusted over the three; the "
             "Bonferroni interval (98.33%) holds for the three together."
             + ("" if complete else " The family is incomplete, so the adjusted p is 3 p (Bonferroni), an upper "
                "bound of Holm's whatever the missing p-values turn out to be: a verdict it decides (\"above 0\", \"below "
                "0\", \"OPeN ahead\", \"OPeN behind\") is final once that quantity has all its seeds; any other "
                "verdict is provisional."),
             "",
             *markdown_table(["", "quantity", "n", "mean", "std", "95% interval", "98.33% interval", "p",
                              "Holm p", "verdict"], rows), ""]
    return lines, out


def baselines_lines(runs: Path) -> list[str]:
    """The baselines table over seeds 0-9 and OPeN on each loss against that loss (markdown lines)."""
    best, _ = best_baseline(runs)
    rows = []
    for m in (*BASELINES, "open", *(f"open_{loss}" for loss in LOSSES)):
        d, dm = ((paired_gain(runs, MAIN, BASELINE_SEEDS, b=m, measure=f) for f in (top1, test_minority))
                 if m in BASELINES else (None, None))
        rows.append([LABELS[m] + (" (best)" if m == best else ""),
                     mean_std(seeds_of(runs, MAIN, m, top1, BASELINE_SEEDS)), _paired_cell(d),
                     mean_std(seeds_of(runs, MAIN, m, test_minority, BASELINE_SEEDS)), _paired_cell(dm)])
    lines = ["### The baselines a user would pick (main cell, seeds 0-9)", "",
             "Test top-1 (%), mean +- std; OPeN minus each baseline paired by seed with its 95% t-interval "
             "(secondary, except against the best: P3); the same on the minority half (test accuracy of the half "
             "of the classes with the fewest training images; secondary).", "",
             *markdown_table(["method", "top-1", "OPeN - method", "minority half (test)",
                              "OPeN - method, minority half"], rows), ""]
    for loss in LOSSES:
        d, dm = (paired_gain(runs, MAIN, BASELINE_SEEDS, a=f"open_{loss}", b=f"erm_{loss}", measure=f)
                 for f in (top1, test_minority))
        lines.append(f"- {LABELS['open_' + loss]} - {LABELS['erm_' + loss]}: {fmt(d['mean'])} {ci(d)} "
                     f"over {d['n']} seed{'' if d['n'] == 1 else 's'}; on the minority half {fmt(dm['mean'])} "
                     f"{ci(dm)} (secondary).")
    return lines + [""]


def _paired_cell(d: dict | None) -> str:
    """A table cell for a paired difference: ``mean [lo, hi] (n=k)``, empty where none is made."""
    return "" if d is None else f"{fmt(d['mean'])} {ci(d)} (n={d['n']})"


def over_subsets(runs: Path, cell: str, other: str) -> tuple[list[float | None], dict]:
    """OPeN - ``other`` for seed 0 on each subset (0, 10-13; None where a run is missing), and
    :func:`paired_gain` of the same over seeds 0-4 on subset 0."""
    return [gain(runs, cell, 0, k, b=other) for k in (0, *SUBSETS)], paired_gain(runs, cell, PRIMARY_SEEDS, b=other)


def subsets_lines(runs: Path) -> list[str]:
    """OPeN - DRS and OPeN - RS over the subsets, with both spreads (markdown lines)."""
    rows = []
    for cell in (MAIN, LONG):
        for other in ("drs", "rs"):
            by_subset, by_seed = over_subsets(runs, cell, other)
            d = one_sample([g for g in by_subset if g is not None])
            rows.append([f"`{cell}`", f"OPeN - {LABELS[other]}", f"{fmt(d['mean'])} {ci(d)}", str(d["n"]),
                         fmt(d["std"], False), fmt(by_seed["std"], False) + f" (n={by_seed['n']})"])
    return ["### The long-tailed subset (secondary)", "",
            "Seed 0 on the subsets `subset_seed` 0 (the standard one), 10, 11, 12 and 13: the difference over "
            "subsets with its 95% t-interval, and the subset-to-subset std next to the seed-to-seed std (seeds "
            "0-4 on subset 0, or the seeds trained there: n says how many). Each subset has one training "
            "seed, so the spread over subsets holds the seed-to-seed spread as well as the subset-to-subset one.",
            "",
            *markdown_table(["cell", "difference", "mean over subsets", "subsets", "std over subsets",
                             "std over seeds"], rows), ""]


def code_behind(runs: Path) -> list[tuple[str, int]]:
    """``(what trained them, how many)`` over the finished planned runs, most runs first.

    What eval.json's ``provenance`` records: the commit (with "changed tree" where the checkout had
    uncommitted changes), the torch version and the CPU; runs trained before eval.json recorded it
    count as "no provenance".
    """
    counts: dict[str, int] = {}
    for spec in evidence.planned(runs):
        path = RunPaths(spec.folder(runs)).eval
        if not path.exists():
            continue
        prov = json.loads(path.read_text()).get("provenance")
        if not isinstance(prov, dict):
            key = "no provenance"
        else:
            commit = str(prov.get("git_commit") or "no git checkout")[:7]
            key = (f"commit {commit}{' (changed tree)' if prov.get('git_dirty') else ''}, "
                   f"torch {prov.get('torch', '?')}, {prov.get('cpu', '?')}")
        counts[key] = counts.get(key, 0) + 1
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def code_lines(runs: Path) -> list[str]:
    """What trained the runs, from :func:`code_behind` (markdown lines)."""
    rows = code_behind(runs)
    if not rows:
        return []
    return ["### The code behind the runs", "",
            "The study ran while the code changed; each run's eval.json records what trained it (for a "
            "resumed run, what finished it):", "",
            *(f"- {what}: {n} run{'s' if n != 1 else ''}" for what, n in rows), ""]
