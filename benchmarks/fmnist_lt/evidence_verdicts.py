"""The evidence study in words: the verdicts PREREGISTRATION.md defines, the paragraph for users,
the README's sentence, and the whole RESULTS.md section assembled from ``evidence_results``.

- **H1** (memorization drives OPeN's gain over DRS) by the pre-registered support rule: a data size
  supports it where its contrast (P1 or P2) is above 0 after Holm and its manipulation check
  passed; it refutes it where the contrast is below 0 or equivalent within +-1 point with the check
  passed; a failed check makes that data size uninformative.
- **H2** (OPeN against the best baseline) is P3's verdict.
- A verdict is **final** once its quantity has every planned seed and it cannot change with the
  rest of the family: always once all three are in, and before that where even Bonferroni's
  ``3 p`` (an upper bound of Holm's adjusted p) is below 0.05. Only final verdicts reach the README.

Everything the paragraph for users adds beyond P1-P3 (how each twin moved every method, the best
mean of all, the subsets) is labelled secondary or exploratory, as the pre-registration requires.
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import evidence
import evidence_results as er
from evidence import BASELINE_SEEDS, LONG, LOSSES, MAIN, PRIMARY_SEEDS, SUBSETS

from purenoise.run_paths import RunPaths

SAME_NUMBERS = Path(__file__).resolve().parent / "same_numbers.json"  # written by same_numbers.py
# Where the study departs from PREREGISTRATION.md, and why (text, no numbers); the first item is
# completed from same_numbers.json by deviations().
DEVIATIONS = (
    "**Holm's correction before the family is complete.** The pre-registration does not say how to "
    "report P1 and P2 while P3 is missing. Until it is in, the adjusted p shown is 3 p, Bonferroni's "
    "bound of Holm's (Holm's is never larger), and a verdict is called final only where that bound "
    "already decides it.",
    "**A count in the pre-registration's table.** Its row for the twins' primary runs says 28 new runs; the "
    "design it states (two twins, ERM, DRS and OPeN, seeds 0-4, less the pilots' ERM and DRS of seed 0) has "
    "26, and the study trains that design.",
    "**Wall time.** The study was paused (SIGSTOP) while the test suite was timed on the same machine, "
    "and one run was stopped (SIGTERM) and resumed from its checkpoint (resuming continues exactly); "
    "the wall time logged for those runs is off, the numbers are not.",
    "**Exploratory additions.** The paragraph for users adds how each twin moved every method's "
    "top-1 and which method has the highest mean; neither was pre-registered, and they carry no test.",
)


def same_code(path: Path = SAME_NUMBERS) -> str:
    """The deviation of the study's code, with what ``same_numbers.py`` found (or that it has not run)."""
    head = ("**Not every run uses the commit that adds PREREGISTRATION.md.** The fixed worktree the study "
            "runs from was moved once, to a later commit (\"The code behind the runs\" counts the runs of each).")
    if not path.exists():
        return head + " Whether the two commits train the same numbers is not checked yet (`same_numbers.py`)."
    s = json.loads(path.read_text())
    same = [r["run"] for r in s["runs"] if r["identical"]]
    found = (f"every eval.json and metrics.jsonl value of all {len(same)} runs is identical apart from timing "
             "and provenance" if s["identical"] else
             f"{len(s['runs']) - len(same)} of {len(s['runs'])} runs differ: "
             + ", ".join(r["run"] for r in s["runs"] if not r["identical"]))
    return (f"{head} `benchmarks/fmnist_lt/same_numbers.py {s['old'][:7]} {s['new'][:7]}` trains a short run of "
            f"every method the study trains with each commit ({s['date']}, {s['cpu']}): {found}.")


def deviations() -> list[str]:
    """The deviations from the pre-registration, in RESULTS.md's words."""
    return [same_code(), *DEVIATIONS]


EXPECTED = {"P1": len(PRIMARY_SEEDS), "P2": len(PRIMARY_SEEDS), "P3": len(BASELINE_SEEDS)}
DECISIVE = ("above 0", "below 0", "OPeN ahead", "OPeN behind")


def final(prim: list[tuple], name: str) -> bool:
    """Whether the named primary verdict can no longer change (module docstring)."""
    rows = {row[0]: row for row in prim}
    if any(rows[k][2]["n"] < EXPECTED[k] for k in EXPECTED):
        _, _, s, _, v = rows[name]
        bound_decides = s["p"] is not None and min(1.0, er.FAMILY * s["p"]) < er.ALPHA
        return s["n"] >= EXPECTED[name] and bound_decides and v in DECISIVE
    return True


def h1(runs: Path, prim: list[tuple]) -> tuple[str, str]:
    """``(verdict, sentence)`` for H1 by the pre-registered rule; verdict "incomplete" until final."""
    chosen = evidence.twins(runs)
    sizes = []
    for name, size, cell in (("P1", "n_max 1000", MAIN), ("P2", "n_max 6000", LONG)):
        row = next(r for r in prim if r[0] == name)
        check = er.manipulation(runs, cell, chosen[cell], evidence.DIRECTION[cell]) if cell in chosen else None
        if check is None or check["passed"] is None or not final(prim, name):
            return "incomplete", "The memorization test is not finished: no verdict on it yet."
        v = row[4]
        if not check["passed"]:
            state = "uninformative (its manipulation check failed)"
        elif v == "above 0":
            state = "supports"
        elif v == "below 0" or v.startswith("equivalent"):
            state = "refutes"
        else:
            state = "not resolved"
        sizes.append((size, state, row[2], row[3]))
    states = [s for _, s, _, _ in sizes]
    numbers = " and ".join(f"{er.fmt(s['mean'])} {er.ci(s)} points at {size} (Holm p {p:.4f})"
                           for size, _, s, p in sizes)
    if states == ["supports", "supports"]:
        word, text = "supported", "both data sizes support it"
    elif "supports" in states:
        word = "partly supported"
        text = "only " + next(size for size, st, _, _ in sizes if st == "supports") + " supports it"
    elif states == ["refutes", "refutes"]:
        word, text = "refuted", "both data sizes refute it, and the README's advice is withdrawn"
    else:
        word = "not resolved"
        text = "; ".join(f"{size} {st}" for size, st, _, _ in sizes)
    return word, (f"**Memorization (H1): {word}.** Within one data size, OPeN's lead over DRS changes with how "
                  f"far the DRS runs memorize their minority half, larger where they memorize more by {numbers}: "
                  f"{text}.")


def _means(runs: Path, cell: str) -> dict[str, float | None]:
    out = {}
    for m in ("erm", "drs", "open"):
        v = [x for x in (er.top1(er.run_eval(runs, cell, m, s)) for s in PRIMARY_SEEDS) if x is not None]
        out[m] = statistics.fmean(v) if len(v) == len(PRIMARY_SEEDS) else None
    return out


def twin_moves(runs: Path) -> str:
    """Exploratory: how each twin moved every method's mean top-1, and the best mean per data size."""
    chosen, parts, worse = evidence.twins(runs), [], []
    for size, cell in (("n_max 1000", MAIN), ("n_max 6000", LONG)):
        if cell not in chosen:
            continue
        a, b = _means(runs, cell), _means(runs, chosen[cell])
        if None in a.values() or None in b.values():
            continue
        moves = ", ".join(f"{er.LABELS[m]} {er.fmt(b[m] - a[m])}" for m in a)
        best = max(((m, c, v[m]) for c, v in ((cell, a), (chosen[cell], b)) for m in v), key=lambda x: x[2])
        parts.append(f"at {size}, `{chosen[cell]}` moved the mean top-1 of {moves} points against `{cell}`, "
                     f"and the highest of the six means is {er.LABELS[best[0]]}'s in `{best[1]}` ({best[2]:.2f})")
        high, low = (a, b) if evidence.DIRECTION[cell] == "lower" else (b, a)  # which one memorizes more
        worse.append(all(high[m] < low[m] for m in high))
    if not parts:
        return ""
    tail = (" In both data sizes every method does worse in the cell that memorizes more: OPeN's larger gain "
            "comes where all three are less accurate." if worse == [True, True] else "")
    return ("**What the twins also did** (exploratory, seeds 0-4): the one config change moved every method, "
            "not only the gain: " + "; ".join(parts) + "." + tail)


def h2(runs: Path, prim: list[tuple]) -> tuple[str, str]:
    """``(verdict, sentence)`` for H2 (P3) and the secondary comparisons a user weighs with it."""
    name, what, s, p_adj, v = next(r for r in prim if r[0] == "P3")
    if not final(prim, "P3"):
        return "incomplete", "The comparison with the best baseline is not finished."
    best, _ = er.best_baseline(runs)
    text = (f"**Against the best baseline (H2): {v}.** The best baseline in the main cell is "
            f"{er.LABELS[best]}; OPeN − {er.LABELS[best]} is {er.fmt(s['mean'])} points {er.ci(s)} over "
            f"{s['n']} seeds (Holm p {p_adj:.4f}).")
    tops = {m: [er.top1(er.run_eval(runs, MAIN, m, k)) for k in BASELINE_SEEDS]
            for m in (*er.BASELINES, "open", *(f"open_{loss}" for loss in LOSSES))}
    tops = {m: v for m, v in tops.items() if None not in v}
    losses = [loss for loss in LOSSES if f"erm_{loss}" in tops]
    if losses:
        loss = max(losses, key=lambda x: statistics.fmean(tops[f"erm_{x}"]))
        d = er.one_sample([g for g in (er.gain(runs, MAIN, k, a=f"open_{loss}", b=f"erm_{loss}")
                                       for k in BASELINE_SEEDS) if g is not None])
        if d["n"] == len(BASELINE_SEEDS):
            text += (f" OPeN added to the better loss, {er.LABELS['erm_' + loss]}: {er.fmt(d['mean'])} "
                     f"{er.ci(d)} over it (secondary, {_word(d)}).")
    if tops:
        top = max(tops, key=lambda m: statistics.fmean(tops[m]))
        text += (f" The highest mean top-1 of every method trained there is {er.LABELS[top]}'s, "
                 f"{statistics.fmean(tops[top]):.2f} (exploratory).")
    return v, text


def _word(d: dict) -> str:
    """A secondary quantity's word: its 95% interval above, below or around 0."""
    if d["lo"] is None:
        return "incomplete"
    return "ahead" if d["lo"] > 0 else "behind" if d["hi"] < 0 else "not resolved"


def subsets(runs: Path) -> str:
    """Secondary: OPeN - DRS over the five long-tailed subsets of each cell, once all are in."""
    parts = []
    for size, cell in (("n_max 1000", MAIN), ("n_max 6000", LONG)):
        by_subset = [er.gain(runs, cell, 0, k) for k in (0, *SUBSETS)]
        by_seed = [er.gain(runs, cell, s) for s in PRIMARY_SEEDS]
        if None in by_subset or None in by_seed:
            return "The subsets are not finished."
        d = er.one_sample(by_subset)
        parts.append(f"{size} {er.fmt(d['mean'])} {er.ci(d)} ({_word(d)}; std {d['std']:.2f} over subsets "
                     f"against {statistics.stdev(by_seed):.2f} over seeds)")
    return ("**The subset** (secondary): OPeN − DRS over five long-tailed subsets, seed 0: "
            + "; ".join(parts) + ".")


def for_users(runs: Path, prim: list[tuple]) -> list[str]:
    """The paragraph for users: each verdict whichever way it falls, then what qualifies it."""
    body = [h1(runs, prim)[1], twin_moves(runs), h2(runs, prim)[1], subsets(runs)]
    return ["### For users", "", " ".join(x for x in body if x), ""]


def section(runs: Path) -> list[str]:
    """The RESULTS.md section of the pre-registered evidence study (markdown lines)."""
    specs = evidence.planned(runs)
    done = sum(RunPaths(s.folder(runs)).eval.exists() for s in specs)
    head = ["## Pre-registered evidence study", "",
            "Hypotheses, comparisons and analysis: [PREREGISTRATION.md](PREREGISTRATION.md), committed before any "
            "of these runs finished. Trained by `benchmarks/fmnist_lt/evidence.py`.", "",
            f"**{done} of {len(specs)} planned runs are done**" + " (the runs `evidence.py` plans: the main cell's "
            "seeds 0-4 of the regime study count among them, as the baselines part reuses them; the long cell's "
            "seeds 0-2 do not)"
            + ("" if evidence.twins(runs) else " (the twins' runs are planned once the pilots are in)")
            + ("." if done == len(specs) else ": what follows is incomplete and provisional."), ""]
    prim_lines, prim = er.primary_table(runs)
    return [*head, *er.pilots_lines(runs), *er.two_by_two_lines(runs), *prim_lines, *er.baselines_lines(runs),
            *er.subsets_lines(runs), *for_users(runs, prim), *er.code_lines(runs),
            "### Deviations from the pre-registration", "", *(f"- {d}" for d in deviations()), ""]


def status(runs: Path) -> str:
    """The README's sentence: each hypothesis's verdict once final, else "in progress".

    The count of finished runs is left to RESULTS.md (it changes with every run, the README only
    with a verdict).
    """
    _, prim = er.primary_table(runs)
    w1, s1 = h1(runs, prim)
    w2, s2 = h2(runs, prim)
    if w1 == "incomplete" and w2 == "incomplete":
        return "It is in progress; RESULTS.md shows the runs finished so far."
    parts = [s1 if w1 != "incomplete" else "The memorization test is in progress.",
             twin_moves(runs) if w1 != "incomplete" else "",
             s2 if w2 != "incomplete" else "The comparison with the best baseline is in progress."]
    return " ".join(p for p in parts if p)


def twin_findings(runs: Path) -> list[dict]:
    """The twins as cells of ``findings.json``: their DRS runs' fit of the minority half and OPeN - DRS."""
    cells = []
    for cell in evidence.twins(runs).values():
        drs = [er.run_eval(runs, cell, "drs", s) for s in PRIMARY_SEEDS]
        d = er.one_sample([g for g in (er.gain(runs, cell, s) for s in PRIMARY_SEEDS) if g is not None])
        if None in drs or d["n"] < len(PRIMARY_SEEDS):
            continue
        train = [er.train_minority(e) for e in drs]
        gap = [a - er.test_minority(e) for a, e in zip(train, drs)]
        cells.append({"cell": cell, "drs_train_minority_half": round(statistics.fmean(train), 2),
                      "drs_gap_minority_half": round(statistics.fmean(gap), 2),
                      "open_minus_drs": {k: round(d[k], 2) for k in ("mean", "lo", "hi")},
                      "seeds": d["n"], "verdict": _word(d)})
    return cells


def findings(runs: Path) -> dict:
    """The final verdicts of H1 and H2 for ``findings.json`` ("in progress" until final)."""
    _, prim = er.primary_table(runs)
    (w1, _), (w2, _) = h1(runs, prim), h2(runs, prim)
    best, _ = er.best_baseline(runs)
    return {"memorization": "in progress" if w1 == "incomplete" else w1,
            "against_best_baseline": "in progress" if w2 == "incomplete" else w2,
            "best_baseline": er.LABELS[best] if best and w2 != "incomplete" else None}
