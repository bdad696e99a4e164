"""One summary row per run, and the tables of runs: a fixed-width table, seed aggregates.

The rows are what ``comparison.csv`` holds and what ``purenoise report`` prints: identity fields
and the main metrics (fractions; ``None`` where absent). Numbers become text through
:mod:`purenoise.reporting.text`.

>>> from purenoise.reporting.summary import format_table
>>> print(format_table(["runs/erm", "runs/drs", "runs/open"]))      # doctest: +SKIP
"""
from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from purenoise.reporting.runs import Run, RunLike, load_run, load_runs
from purenoise.reporting.text import markdown_table, mean_std, pct

__all__ = ["MAIN_METRICS", "HEADERS", "minority_half_accuracy", "summarize", "run_labels", "format_table",
           "aggregate", "format_aggregate"]

#: Metrics of the comparison table and of :func:`aggregate` (all fractions).
MAIN_METRICS = ("top1", "balanced_acc", "many", "medium", "few", "minority_half", "ece")
HEADERS = {"run": "Run", "method": "Method", "top1": "Top-1", "balanced_acc": "Bal. acc",
           "many": "Many", "medium": "Medium", "few": "Few", "minority_half": "Minority half",
           "ece": "ECE", "gmean": "G-mean", "top5": "Top-5"}


def minority_half_accuracy(per_class_acc: Sequence[float | None], class_counts: Sequence[int]) -> float | None:
    """Mean accuracy of the ``C // 2`` classes (at least one) with the fewest training images.

    Ties in count are broken by class index. Classes without test images (``None``) are skipped.
    """
    if not per_class_acc or class_counts is None or len(class_counts) != len(per_class_acc):
        return None
    order = np.argsort(np.asarray(class_counts), kind="stable")[: max(1, len(class_counts) // 2)]
    vals = [per_class_acc[i] for i in order if per_class_acc[i] is not None]
    return float(np.mean(vals)) if vals else None


def summarize(run: RunLike) -> dict[str, Any]:
    """One comparison-table row of a run: identity fields and metrics (fractions; None if absent)."""
    run = load_run(run)
    ev = run.eval or {}
    pca, counts = ev.get("per_class_acc"), ev.get("class_counts")
    bal = ev.get("balanced_acc")
    if bal is None and pca and any(v is not None for v in pca):
        bal = float(np.mean([v for v in pca if v is not None]))
    return {
        "run": run.name, "method": run.method, "dataset": run.get("dataset"), "model": run.get("model"),
        "seed": run.get("seed"), "epochs": run.epochs_done if ev.get("epoch") is None else int(ev["epoch"]),  # epochs trained
        "status": run.status,
        "top1": ev.get("top1"), "top5": ev.get("top5"), "balanced_acc": bal,
        "many": ev.get("many"), "medium": ev.get("medium"), "few": ev.get("few"),
        "minority_half": minority_half_accuracy(pca, counts) if pca and counts else None,
        "gmean": ev.get("gmean"), "ece": ev.get("ece"), "nll": ev.get("nll"),
        "path": str(run.path),
    }


def run_labels(runs: Sequence[Run]) -> list[str]:
    """Run names, made unique with the folder name (then a counter) where they clash."""
    names = [r.name for r in runs]
    out = [n if names.count(n) == 1 else f"{n} ({r.path.name})" for n, r in zip(names, runs)]
    return [o if out.count(o) == 1 else f"{o} #{i + 1}" for i, o in enumerate(out)]


def format_table(runs: RunLike | Iterable[RunLike], metrics: Sequence[str] = MAIN_METRICS) -> str:
    """A fixed-width table of runs for a terminal; accuracies (and ECE) in % with 2 decimals."""
    runs = load_runs(runs)
    rows = [summarize(r) for r in runs]
    cols = ["run", "method", *metrics]
    cells = [[HEADERS.get(c, c) + ("" if c in ("run", "method") else " %") for c in cols]]
    for lab, row in zip(run_labels(runs), rows):
        cells.append([lab, row["method"]] + [pct(row[m]) for m in metrics])
    widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]

    def fmt(r: list[str]) -> str:  # text columns left-aligned, numbers right-aligned
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in cells[1:]]
    lines += [f"* {lab}: {r.status}" for lab, r in zip(run_labels(runs), runs) if r.eval is None]
    return "\n".join(lines)


def aggregate(runs: RunLike | Iterable[RunLike], by: Sequence[str] = ("method",),
              metrics: Sequence[str] = MAIN_METRICS) -> list[dict[str, Any]]:
    """Mean and sample standard deviation (ddof=1) of ``metrics`` over runs grouped by ``by``.

    Group keys are looked up in the config, then eval.json, as :meth:`Run.get` does (e.g.
    ``("dataset", "method")``).
    Returns one dict per group, in order of first appearance: the ``by`` keys, ``n`` (runs with
    test metrics), ``runs`` (their names), and ``<metric>_mean`` / ``<metric>_std`` (fractions;
    std is None for a single run, both None when no run has the metric). Runs without test
    metrics are left out and named in ``missing``.
    """
    groups: dict[tuple, list[Run]] = {}
    for r in load_runs(runs):
        groups.setdefault(tuple(r.get(k) for k in by), []).append(r)
    out = []
    for key, members in groups.items():
        done = [r for r in members if r.eval is not None]
        rows = [summarize(r) for r in done]
        row: dict[str, Any] = dict(zip(by, key))
        row.update(n=len(done), runs=[r.name for r in done], missing=[r.name for r in members if r.eval is None])
        for m in metrics:
            vals = [x[m] for x in rows if x[m] is not None]
            row[f"{m}_mean"] = statistics.fmean(vals) if vals else None
            row[f"{m}_std"] = statistics.stdev(vals) if len(vals) > 1 else None
        out.append(row)
    return out


def format_aggregate(rows: Sequence[dict[str, Any]], by: Sequence[str] = ("method",),
                     metrics: Sequence[str] = MAIN_METRICS) -> str:
    """A Markdown table of :func:`aggregate` rows: ``mean ± std`` in % with 2 decimals."""
    head = [*by, "n", *(HEADERS.get(m, m) for m in metrics)]
    cells = [[*(row[k] for k in by), row["n"], *(mean_std(row[f"{m}_mean"], row[f"{m}_std"]) for m in metrics)]
             for row in rows]
    return "\n".join(markdown_table(head, cells, right_from=len(by) + 1))
