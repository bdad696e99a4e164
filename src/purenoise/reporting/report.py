"""The report of a set of runs: a Markdown page with tables and figures, and comparison files.

``make_report`` reads run folders (see :mod:`purenoise.reporting.runs`) and writes ``report.md``,
``comparison.csv``/``.json`` (one row per run) and PNG figures. Runs that differ only in their seed
(see :mod:`purenoise.reporting.replicates`) are shown as one entry: mean ± std over the seeds in
every table, error bars in every figure, and the **paired** difference between entries that share
their seeds, with a 95% t-interval. Where the test metrics hold the memorization diagnostic, a
section shows per-class training accuracy (un-augmented training set) next to test accuracy: the
gap OPeN is meant to close.

>>> from purenoise.reporting.report import make_report
>>> make_report(["runs/erm_s0", "runs/erm_s1", "runs/open_s0", "runs/open_s1"])  # doctest: +SKIP
PosixPath('runs/report/report.md')
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from purenoise.compare_verdict import should_open_help
from purenoise.fileio import atomic_write_text
from purenoise.reporting import plots
from purenoise.reporting.replicates import (Replicates, group_replicates, mean_std_per_position, paired_difference,
                                            shared_key)
from purenoise.reporting.runs import Run, RunLike, load_runs
from purenoise.reporting.summary import HEADERS, MAIN_METRICS, run_labels, summarize
from purenoise.reporting.text import interval, markdown_table, mean_std, pct
from purenoise.run_paths import EVAL_FILE

__all__ = ["make_report", "report_entries", "paired_table"]

PER_CLASS_TABLE_MAX = 30
PAIRED_METRICS = ("top1", "minority_half")
CSV_COLUMNS = ("run", "method", "dataset", "model", "seed", "epochs", "status", "top1", "top5", "balanced_acc",
               "many", "medium", "few", "minority_half", "gmean", "ece", "nll", "path")
METRIC_NOTE = ("Many / Medium / Few: classes with more than 100, 20 to 100, and fewer than 20 training images "
               "(\"-\": no class in the group). Minority half: mean accuracy of the half of the classes with the "
               "fewest training images. ECE: expected calibration error (15 bins).")


def report_entries(runs: Sequence[Run]) -> list[Replicates]:
    """The report's entries: one per configuration, its seeds together.

    When no two runs share a configuration, each run is its own entry, labelled as in
    :func:`~purenoise.reporting.summary.format_table`.
    """
    groups = group_replicates(runs)
    if all(len(g.runs) == 1 for g in groups):
        return [Replicates(lab, [r], [r.seed]) for lab, r in zip(run_labels(runs), runs)]
    return groups


def _mean_std(entry: Replicates, metric: str) -> tuple[float | None, float | None]:
    rows = [summarize(r) for r in entry.runs if r.eval is not None]
    m, s = mean_std_per_position([[row[metric]] for row in rows])
    return (m[0], s[0]) if m else (None, None)


def paired_table(entries: Sequence[Replicates], metrics: Sequence[str] = PAIRED_METRICS,
                 pairs: Sequence[tuple[int, int]] | None = None) -> list[list[str]]:
    """Rows ``later − earlier`` for entries that share at least two seeds and their first phase.

    Only entries whose shared-scope settings agree (data, model, optimizer, schedule: what a
    branch shares with its parent) are paired: a seed means the same initialization and first
    phase only there. Each metric cell is ``mean ± std [95% interval]`` of the seed-by-seed
    difference, in points; ``pairs`` (indices into ``entries``) chooses the comparisons, default
    every pair in order.
    """
    rows = []
    for i, j in pairs if pairs is not None else [(i, j) for i in range(len(entries)) for j in range(i + 1, len(entries))]:
        a, b = entries[j], entries[i]
        if shared_key(a.runs[0]) != shared_key(b.runs[0]):
            continue
        cells, seeds, wins = [], None, []
        for m in metrics:
            d = paired_difference(a, b, lambda r, m=m: summarize(r)[m] if r.eval is not None else None)
            cells.append(interval(d))
            seeds = d["seeds"] if seeds is None or len(d["seeds"]) < len(seeds) else seeds
            wins.append(f"{d['wins']}/{d['n']}")
        if seeds is not None and len(seeds) >= 2:
            rows.append([f"{a.label} − {b.label}", ", ".join(map(str, seeds)), *cells, " ".join(wins)])
    return rows


# ----------------------------------------------------------------------------------- writing
def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s).strip("_") or "run"


def _group_labels(counts: Sequence[int] | None, g: int) -> list[str]:
    if not counts or len(counts) < g:
        return [f"group {j + 1}" for j in range(g)]
    order = np.argsort(-np.asarray(counts), kind="stable")
    out = []
    for j, idx in enumerate(np.array_split(order, g)):
        hi, lo = max(counts[i] for i in idx), min(counts[i] for i in idx)
        out.append(f"G{j + 1}\n{hi:,}" + (f"–{lo:,}" if lo != hi else "") + " imgs")
    return out


def _write_comparison(rows: Sequence[dict[str, Any]], out: Path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows([{c: ("" if row[c] is None else row[c]) for c in CSV_COLUMNS} for row in rows])
    atomic_write_text(out / "comparison.csv", buf.getvalue())
    js = json.dumps([{c: row[c] for c in CSV_COLUMNS} for row in rows], indent=2)
    atomic_write_text(out / "comparison.json", js + "\n")


class _Page:
    """Markdown lines plus the figures drawn into the output folder."""

    def __init__(self, out: Path) -> None:
        self.out, self.md = out, []

    def add(self, *lines: str) -> None:
        self.md.extend(lines)

    def table(self, head: Sequence[str], rows: Sequence[Sequence[Any]], right_from: int = 1) -> None:
        self.md += [""] + markdown_table(head, rows, right_from)

    def figure(self, alt: str, path: Path | None, caption: str = "") -> None:
        if path is not None:
            self.md += ["", f"![{alt}]({path.name})"] + (["", caption] if caption else [])


def _per_class(entries: Sequence[Replicates], key: str, n: int):
    """Mean and std per class of the test metrics' ``key`` for each entry that has it for ``n`` classes."""
    means, stds = {}, {}
    if n == 0:
        return means, stds
    for e in entries:
        rows = [r.eval[key] for r in e.runs if r.eval is not None and len(r.eval.get(key) or ()) == n]
        if rows:
            means[e.label], stds[e.label] = mean_std_per_position(rows)
    return means, stds


def _per_class_sections(page: _Page, entries: list[Replicates], ref: dict[str, Any]) -> None:
    counts, names = ref["class_counts"], ref.get("class_names")
    n = len(counts)
    accs, errs = _per_class(entries, "per_class_acc", n)
    left = [e.label for e in entries if e.label not in accs and any(r.eval for r in e.runs)]
    if left:
        page.add("", f"Not in the per-class figures (no accuracy for these {n} classes): {', '.join(left)}.")
    page.add("", "## Per-class accuracy against training-set size")
    seeds = any(len(e.runs) > 1 for e in entries)
    page.figure("per-class accuracy", plots.plot_per_class(accs, counts, names, page.out / "per_class_accuracy.png",
                                                           errors=errs if seeds else None),
                "Classes from the most to the least frequent in training (top: training images per class, "
                "log scale; bottom: test accuracy of each run). The legend gives each run's mean per-class "
                "accuracy (= balanced accuracy)." + (" Bars: mean over seeds; whiskers: ± one standard "
                                                     "deviation." if seeds else ""))
    order = np.argsort(-np.asarray(counts), kind="stable")
    if n <= PER_CLASS_TABLE_MAX:
        page.table(["Class", "Train images", *accs],
                   [[names[i] if names else i, counts[i], *(mean_std(accs[k][i], errs[k][i]) for k in accs)]
                    for i in order])
    g5, g5e = _per_class(entries, "groups5", max((len(r.eval.get("groups5") or ()) for e in entries
                                                  for r in e.runs if r.eval), default=0))
    if g5:
        glabels = _group_labels(counts, max(len(v) for v in g5.values()))
        page.add("", "## Accuracy by class-frequency group")
        page.figure("frequency groups", plots.plot_groups(g5, page.out / "frequency_groups.png", glabels,
                                                          errors=g5e if seeds else None),
                    "The classes split into 5 equal groups by training count, G1 the most frequent.")
        page.table(["Run", *(g.replace("\n", " ") for g in glabels)],
                   [[lab, *(mean_std(m, s) for m, s in zip(vals, g5e[lab]))] for lab, vals in g5.items()])
    train, train_err = _per_class(entries, "train_per_class_acc", n)
    if train:
        page.add("", "## Training against test accuracy per class",
                 "", "Training accuracy is measured at the end of training in eval mode on the un-augmented "
                 "long-tailed training set; a class near 100% on training images and far lower on test images is "
                 "memorized, the failure OPeN addresses.")
        page.figure("train vs test", plots.plot_train_test(
            train, {k: accs[k] for k in train if k in accs}, counts, names, page.out / "train_vs_test.png",
            train_errors=train_err if seeds else None, test_errors=errs if seeds else None))
        if n <= PER_CLASS_TABLE_MAX:
            page.table(["Class", "Train images", *(f"{k}: train / test" for k in train)],
                       [[names[i] if names else i, counts[i],
                         *(f"{mean_std(train[k][i], train_err[k][i])} / {mean_std(accs.get(k, [None] * n)[i], errs.get(k, [None] * n)[i])}"
                           for k in train)] for i in order])


def _mean_curves(entry: Replicates) -> list[dict[str, Any]]:
    """Per-epoch mean over the entry's runs of every numeric key all of them logged."""
    runs = [r for r in entry.runs if r.metrics]
    if len(runs) == 1:
        return runs[0].metrics
    by = [{m["epoch"]: m for m in r.metrics} for r in runs]
    out = []
    for ep in sorted(set.intersection(*(set(b) for b in by))):
        recs = [b[ep] for b in by]
        rec = {"epoch": ep, "sampling": recs[0].get("sampling")}
        for k, v in recs[0].items():
            vals = [x.get(k) for x in recs]
            if k != "epoch" and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vals):
                rec[k] = float(np.mean(vals))
        out.append(rec)
    return out


def _curves_section(page: _Page, entries: list[Replicates]) -> None:
    curves = {e.label: _mean_curves(e) for e in entries if any(r.metrics for r in e.runs)}
    if not curves:
        return
    defer = {e.label: e.runs[0].defer_epoch for e in entries}
    switched = [f"{lab} at epoch {d}" for lab, d in defer.items() if d is not None and lab in curves]
    tested = any(m.get("test_balanced_acc") is not None or m.get("test_top1") is not None
                 for v in curves.values() for m in v)
    caption = ("Loss and accuracy on the training batches (natural rows only; after the switch they are "
               "class-balanced, so train accuracy is not comparable across the switch)"
               + (", and test accuracy where it was evaluated during training." if tested else "."))
    if any(len(e.runs) > 1 for e in entries):
        caption += " Curves are means over each entry's seeds."
    if switched:
        caption += f" Dotted line: switch from instance to class-balanced sampling ({'; '.join(switched)})."
    page.add("", "## Training curves")
    page.figure("training curves", plots.plot_curves(curves, page.out / "training_curves.png", defer), caption)


def _results_section(page: _Page, entries: list[Replicates], rows: list[dict[str, Any]]) -> None:
    page.add("", "## Results")
    if all(len(e.runs) == 1 for e in entries):
        page.table([HEADERS[c] + ("" if c in ("run", "method") else " (%)") for c in ("run", "method", *MAIN_METRICS)],
                   [[row["run"], row["method"], *(pct(row[m]) for m in MAIN_METRICS)] for row in rows], right_from=2)
    else:
        page.add("", "One row per configuration: mean ± standard deviation over its seeds (sample std, ddof 1).")
        page.table(["Configuration", "Method", "Seeds", *(HEADERS[m] + " (%)" for m in MAIN_METRICS)],
                   [[e.label, e.method, ", ".join(str(r.get("seed", "?")) for r in e.runs if r.eval is not None),
                     *(mean_std(*_mean_std(e, m)) for m in MAIN_METRICS)] for e in entries], right_from=3)
        paired = paired_table(entries)
        if paired:
            page.add("", "## Paired differences",
                     "", "Seed by seed, between configurations that share their data, model and schedule (the "
                     "same seed: the same initialization and, for branched runs, the same first phase; the "
                     "long-tailed subset is the same for every seed), in points: mean ± std [95% t-interval "
                     "over the seeds]. Wins: seeds on which the first entry is ahead.")
            page.table(["Difference", "Seeds", *(HEADERS[m] for m in PAIRED_METRICS), "Wins"], paired, right_from=2)
    page.add("", METRIC_NOTE)


def _where(path: Path, out: Path) -> str:
    """``path`` relative to the report's folder (absolute where no relative path exists, e.g. another drive)."""
    try:
        return os.path.relpath(path, out)
    except ValueError:
        return str(path)


def _setting(value: Any) -> Any:
    """A config value for the runs table: floats with 4 significant digits (delta 1/3 reads 0.3333)."""
    return f"{value:.4g}" if isinstance(value, float) else value


def make_report(run_dirs: RunLike | Iterable[RunLike], out_dir: str | os.PathLike | None = None,
                title: str | None = None) -> Path:
    """Write ``report.md``, ``comparison.csv``/``.json`` and PNG figures; return the Markdown path.

    ``out_dir`` defaults to the run folder for one run, else ``report/`` beside the first run. Run
    folders are named relative to ``out_dir`` (in the page and in the ``path`` column), so a report
    moved or cloned together with its runs still points at them.
    """

    runs = load_runs(run_dirs)
    labels = run_labels(runs)
    entries = report_entries(runs)
    if out_dir is not None:
        out = Path(out_dir)
    else:
        out = runs[0].path if len(runs) == 1 else runs[0].path.parent / "report"
    out.mkdir(parents=True, exist_ok=True)
    rows = [{**summarize(r), "run": lab, "path": _where(r.path, out)} for lab, r in zip(labels, runs)]
    _write_comparison(rows, out)

    page = _Page(out)
    first = runs[0]
    page.add(f"# {title or (f'Run report: {labels[0]}' if len(runs) == 1 else f'Comparison of {len(runs)} runs')}",
             "", f"Dataset **{first.get('dataset', '?')}**, model **{first.get('model', '?')}**. "
             "Test metrics are from the last epoch; accuracies in % of test images. "
             "Tables also in `comparison.csv` and `comparison.json` (fractions).", "", "## Runs")
    page.table(["Run", "Method", "Epochs", "Defer epoch", "Delta", "BN mode", "Seed", "Status", "Folder"],
               [[lab, r.method, r.epochs_done, "-" if r.defer_epoch is None else r.defer_epoch,
                 _setting(r.get("delta", "-")), r.get("bn_mode", "-"), r.get("seed", "-"), r.status,
                 f"`{row['path']}`"] for lab, r, row in zip(labels, runs, rows)], right_from=99)
    notes = [f"- **{lab}**: {n}" for lab, r in zip(labels, runs) for n in r.notes]
    if notes:
        page.add("", "What is missing or was skipped:", "", *notes)
    _results_section(page, entries, rows)
    if any(r.method == "erm" and r.eval is not None and r.eval.get("train_per_class_acc") for r in runs):
        page.add("", *should_open_help(runs))  # the same section as `purenoise compare` ends with

    evald = [r for r in runs if r.eval is not None]
    ref = next((r.eval for r in evald if r.eval.get("per_class_acc") and r.eval.get("class_counts")), None)
    if ref is not None:
        _per_class_sections(page, entries, ref)
    elif evald:
        page.add("", f"No {EVAL_FILE} holds both `per_class_acc` and `class_counts`: per-class figures skipped.")
    cms = [(e, [r for r in e.runs if r.eval is not None and r.eval.get("confusion")]) for e in entries]
    cms = [(e, rs) for e, rs in cms if rs]
    if cms:
        page.add("", "## Confusion matrices", "",
                 "Rows are true classes, normalised to 100%; classes ordered by training count"
                 + ("; an entry's seeds are summed." if any(len(rs) > 1 for _, rs in cms) else "."))
        for e, rs in cms:
            ev = rs[0].eval
            same = [r for r in rs if len(r.eval["confusion"]) == len(ev["confusion"])]
            other = [r for r in rs if len(r.eval["confusion"]) != len(ev["confusion"])]
            total = np.sum([np.asarray(r.eval["confusion"], dtype=float) for r in same], axis=0).tolist()
            page.add("", f"### {e.label}")
            if other:
                page.add("", f"Left out of this sum (a confusion matrix of another size than "
                         f"{len(ev['confusion'])} x {len(ev['confusion'])}): "
                         + ", ".join(f"`{r.path}`" for r in other) + ".")
            page.figure(f"confusion {e.label}", plots.plot_confusion(
                total, ev.get("class_names"), out / f"confusion_{_slug(e.label)}.png", ev.get("class_counts"),
                title=f"Confusion matrix: {e.label}"))
    _curves_section(page, entries)
    smp = [(e.label, next((r for r in e.runs if r.samples), None)) for e in entries]
    smp = [(lab, r) for lab, r in smp if r is not None]
    if smp:
        page.add("", "## Images trained on: real and pure noise", "",
                 "Pure-noise images (OPeN) are trained as the minority class named above them.")
        for lab, r in smp:
            names = (r.eval or {}).get("class_names") or (ref or {}).get("class_names")
            page.figure(f"samples {lab}", plots.plot_samples(r.samples, names, out / f"samples_{_slug(lab)}.png",
                                                             title=f"Images trained on: {lab}"))
    return atomic_write_text(out / "report.md", "\n".join(page.md) + "\n")
