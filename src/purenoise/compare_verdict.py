"""A comparison's result in words: one verdict per pair of methods, and whether OPeN should help.

A verdict is a paired difference of test top-1 over the seeds both methods have, with its 95%
t-interval (:func:`purenoise.reporting.replicates.paired_difference`): "ahead" or "behind" when the interval
excludes 0, else "not resolved" with the number of seeds that would resolve a difference of the
observed size at the observed spread. :func:`should_open_help` reads the training-set diagnostic
(``memorization: true``) of the runs and quotes what the Fashion-MNIST-LT study found for runs
in the nearest state (``findings.json``). Torch-free.
"""
from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from importlib import resources
from typing import Any

from purenoise.reporting.replicates import Replicates, paired_difference, t_quantile
from purenoise.reporting.runs import Run, RunLike, load_run
from purenoise.reporting.summary import minority_half_accuracy
from purenoise.reporting.text import pct

__all__ = ["PAIRS", "MAX_SEEDS", "ONE_CLASS_SHARE", "seeds_to_resolve", "verdict_line", "pair_verdicts", "load_findings",
           "nearest_cells", "should_open_help"]

MAX_SEEDS = 1000  # beyond this many seeds a difference is called unresolvable in practice
ONE_CLASS_SHARE = 0.9  # a noise histogram with this share in one class is flagged
FAR_POINTS = 10.0  # a study cell farther than this (training accuracy, points) from the runs is called far
#: The pairs a comparison reports, first minus second, when both methods are present.
PAIRS = (("open", "drs"), ("open", "rs"), ("open", "erm"), ("drs", "erm"), ("rs", "erm"))


def seeds_to_resolve(mean: float, std: float, level: float = 0.95, limit: int = MAX_SEEDS) -> int | None:
    """The fewest seeds whose ``level`` t-interval half-width is below ``|mean|`` at spread ``std``.

    ``None`` when not even ``limit`` seeds would do (a mean of 0 never resolves).
    """
    if mean == 0:
        return None
    if std == 0:
        return 2
    for n in range(2, limit + 1):
        if t_quantile(n - 1, level) * std / math.sqrt(n) < abs(mean):
            return n
    return None


def verdict_line(a: str, b: str, d: Mapping[str, Any] | None) -> str:
    """``a - b`` in test top-1 points, paired by seed, as one sentence (``d`` in fractions, from
    :func:`paired_difference`)."""
    head = f"{a} - {b}"
    if d is None or not d.get("n"):
        return f"{head}: no seed has both runs finished yet"
    mean, n = 100 * d["mean"], d["n"]
    if n < 2:
        return f"{head}: {mean:+.2f} points over 1 seed: one seed gives no interval; run more seeds (--seeds 3 or more)"
    lo, hi, std = 100 * d["lo"], 100 * d["hi"], 100 * d["std"]
    where = f"{head}: {mean:+.2f} [{lo:+.2f}, {hi:+.2f}] points over {n} seeds"
    if lo > 0:
        return f"{where}: {a} ahead"
    if hi < 0:
        return f"{where}: {a} behind"
    if std == 0 and mean == 0:
        return f"{where}: not resolved: the two gave the same accuracy on every seed"
    need = seeds_to_resolve(mean, std)
    size = (f"about {need} seeds would resolve a difference of this size" if need is not None else
            f"more than {MAX_SEEDS} seeds would be needed to resolve a difference of this size")
    return f"{where}: not resolved: the interval contains 0; at this spread {size}"


def _top1(run: Run) -> float | None:
    return (run.eval or {}).get("top1")


def pair_verdicts(groups: Mapping[str, Replicates], labels: Mapping[str, str] | None = None,
                  variants: Sequence[tuple[str, str]] = ()) -> list[str]:
    """Verdict lines for :data:`PAIRS` among ``groups`` (keyed by method name), then ``variants``
    (extra ``(a, b)`` keys). ``labels`` names the keys (default: the key)."""
    labels = labels or {}
    keys = [(a, b) for a, b in (*PAIRS, *variants) if a in groups and b in groups]
    return [verdict_line(labels.get(a, a), labels.get(b, b), paired_difference(groups[a], groups[b], _top1))
            for a, b in keys]


# ------------------------------------------------------------------------------ should OPeN help?
def load_findings() -> dict[str, Any] | None:
    """The Fashion-MNIST-LT study's cells (``purenoise/findings.json``), or ``None`` if unreadable."""
    try:
        data = json.loads(resources.files("purenoise").joinpath("findings.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    cells = data.get("cells") if isinstance(data, dict) else None
    if not isinstance(cells, list):
        return None
    return data


def nearest_cells(findings: Mapping[str, Any], train_minority: float, within: float = 2.0) -> list[dict[str, Any]]:
    """The study's cells whose DRS minority-half training accuracy (points) is nearest
    ``train_minority`` (points), and any other cell within ``within`` points of the nearest."""
    cells = [c for c in findings.get("cells", []) if isinstance(c, dict)
             and isinstance(c.get("drs_train_minority_half"), (int, float))]
    if not cells:
        return []
    dist = lambda c: abs(c["drs_train_minority_half"] - train_minority)  # noqa: E731
    best = min(map(dist, cells))
    return sorted((c for c in cells if dist(c) <= best + within), key=dist)


def _mean(values: Iterable[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return sum(vals) / len(vals) if vals else None


def _minority(run: Run, key: str, at_defer: bool = False) -> float | None:
    ev = run.eval or {}
    src = ev.get("train_at_defer") if at_defer else ev
    if not isinstance(src, dict):
        return None
    return minority_half_accuracy(src.get(key), ev.get("class_counts"))


def _names(run: Run) -> list[str]:
    ev = run.eval or {}
    n = len(ev.get("class_counts") or [])
    names = ev.get("class_names")
    return list(names) if isinstance(names, list) and len(names) == n else [str(i) for i in range(n)]


def _minority_classes(run: Run) -> list[int]:
    counts = (run.eval or {}).get("class_counts") or []
    order = sorted(range(len(counts)), key=lambda c: (counts[c], c))
    return order[: max(1, len(counts) // 2)] if counts else []


def _zero_at_switch(erm: Sequence[Run]) -> str:
    """Classes at 0% training accuracy at the switch, with the seeds where they were."""
    zero: dict[str, list[str]] = {}
    for r in erm:
        accs = ((r.eval or {}).get("train_at_defer") or {}).get("train_per_class_acc") or []
        for name, acc in zip(_names(r), accs):
            if acc == 0:
                zero.setdefault(name, []).append(str(r.get("seed", "?")))
    if not zero:
        return "no class is at 0% training accuracy there"
    return "classes at 0% training accuracy there: " + ", ".join(
        f"{c} (seed{'s' if len(s) > 1 else ''} {', '.join(s)})" for c, s in zero.items())


def _fit_lines(erm: Sequence[Run]) -> list[str]:
    """How far the ERM runs fit the minority half, at the switch and at the end."""
    done = [r for r in erm if r.eval and r.eval.get("train_per_class_acc")]
    if not done:
        return ["The ERM runs have no training-set diagnostic (it needs `memorization: true`), so how far "
                "they fit the minority half is not known."]
    first = done[0]
    classes = ", ".join(_names(first)[c] for c in _minority_classes(first))
    lines = [f"How far the ERM runs fit the minority half (the classes with the fewest training images: {classes}), "
             f"mean over {len(done)} seed{'s' if len(done) > 1 else ''}:", ""]
    at_switch = _mean(_minority(r, "train_per_class_acc", at_defer=True) for r in done)
    epoch = ((first.eval or {}).get("train_at_defer") or {}).get("epoch")
    if at_switch is not None:
        lines.append(f"- at the switch (epoch {epoch}): {pct(at_switch)}% training accuracy; {_zero_at_switch(done)}")
    train, test = (_mean(_minority(r, k) for r in done) for k in ("train_per_class_acc", "per_class_acc"))
    gap = f" (training {100 * (train - test):+.2f} points above test)" if train is not None and test is not None else ""
    lines.append(f"- at the end (epoch {(first.eval or {}).get('epoch')}): {pct(train)}% training accuracy, "
                 f"{pct(test)}% test accuracy{gap}")
    return lines


def _num(value: Any) -> float:
    """A number of findings.json, NaN where it is not one (the file is generated; still, never crash)."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else float("nan")


def _cell_line(c: Mapping[str, Any]) -> str:
    d = c.get("open_minus_drs") if isinstance(c.get("open_minus_drs"), dict) else {}
    return (f"- `{c.get('cell')}`: DRS at {_num(c.get('drs_train_minority_half')):.2f}% training accuracy on the "
            f"minority half ({_num(c.get('drs_gap_minority_half')):.2f} points above test); OPeN - DRS "
            f"{_num(d.get('mean')):+.2f} [{_num(d.get('lo')):+.2f}, {_num(d.get('hi')):+.2f}] points over "
            f"{c.get('seeds')} seeds: {c.get('verdict')}")


def _study_lines(drs: Sequence[Run], erm: Sequence[Run]) -> list[str]:
    """What the study found for the cells nearest the runs' fit of the minority half."""
    runs, whose = (drs, "DRS") if any(_minority(r, "train_per_class_acc") is not None for r in drs) else (erm, "ERM")
    value = _mean(_minority(r, "train_per_class_acc") for r in runs)
    if value is None:
        return []
    findings = load_findings()
    if findings is None:
        return ["(The study's findings, purenoise/findings.json, could not be read.)"]
    lines = [f"The {whose} runs end at {pct(value)}% training accuracy on the minority half"
             + ("" if whose == "DRS" else " (no DRS runs; the study's cells are placed by their DRS runs)")
             + f". For DRS runs in the nearest state the study found, in {findings.get('source', 'RESULTS.md')}:", ""]
    cells = nearest_cells(findings, 100 * value)
    lines += [_cell_line(c) for c in cells]
    far = min((abs(_num(c.get("drs_train_minority_half")) - 100 * value) for c in cells), default=math.inf)
    if far > FAR_POINTS:
        lines += ["", f"No cell of the study is near your runs (the nearest is {far:.0f} points away), so it says "
                      "little about them."]
    return [*lines, *_evidence_lines(findings), "", "That is what the study found on its data, not a promise for yours."]


def _evidence_lines(findings: Mapping[str, Any]) -> list[str]:
    """The pre-registered evidence study's verdicts, as findings.json gives them (none if absent)."""
    ev = findings.get("evidence")
    keys = ("memorization", "against_best_baseline")
    if not isinstance(ev, dict) or not all(isinstance(ev.get(k), str) for k in keys):
        return []
    best = ev.get("best_baseline")
    against = ev["against_best_baseline"] + (f" (the best baseline there: {best})" if isinstance(best, str) else "")
    return ["", "The pre-registered evidence study (memorization changed within one data size; OPeN against the "
                "losses a user would otherwise pick): that memorization drives OPeN's gain over DRS, "
                f"{ev['memorization']}; OPeN against the best baseline, {against}."]


def _noise_lines(open_runs: Sequence[Run]) -> list[str]:
    """Which classes the OPeN runs predict for pure-noise images; one class taking nearly all is flagged."""
    lines = []
    for r in open_runs:
        hist = (r.eval or {}).get("noise_pred_hist")
        if not isinstance(hist, list) or not hist or not sum(hist):
            continue
        total, names = sum(hist), _names(r)
        names = names if len(names) == len(hist) else [str(i) for i in range(len(hist))]
        top = sorted(range(len(hist)), key=lambda c: -hist[c])
        shown = ", ".join(f"{names[c]} {100 * hist[c] / total:.1f}%" for c in top[:4] if hist[c])
        flag = (f" — nearly all noise goes to one class ({names[top[0]]}): the model has one answer for noise"
                if hist[top[0]] / total >= ONE_CLASS_SHARE else "")
        lines.append(f"- {r.path.name}: {shown}{flag}")
    if not lines:
        return []
    return ["What the OPeN runs predict for pure-noise images (trained on as minority-class images, so "
            "spread over the minority classes is expected):", ""] + lines


def should_open_help(runs: Iterable[RunLike]) -> list[str]:
    """The markdown section "Should OPeN help here?" for a set of runs (ERM, DRS and OPeN ones used).

    From the ERM runs' training-set diagnostic at the switch and at the end: how far the minority
    half of the classes is fit, training against test accuracy; then what the Fashion-MNIST-LT
    study found for runs in the nearest state; then the OPeN runs' noise-prediction histograms.
    """
    loaded = [load_run(r) for r in runs]
    by = lambda m: [r for r in loaded if r.method == m and r.eval is not None]  # noqa: E731
    erm, drs, open_runs = by("erm"), by("drs"), by("open")
    lines = ["## Should OPeN help here?", "",
             "OPeN's case is a network that memorizes the few images of its minority classes: it fits them "
             "in training and misses them at test (docs/method.md).", ""]
    lines += _fit_lines(erm)
    study = _study_lines(drs, erm)
    lines += [""] + study if study else []
    noise = _noise_lines(open_runs)
    lines += [""] + noise if noise else []
    return lines
