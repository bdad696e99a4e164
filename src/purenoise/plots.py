"""Figures for run reports, drawn with matplotlib's object API on the Agg canvas.

Each function takes plain data (lists, dicts, tensors) and a file path, writes one PNG atomically
and returns the path, or ``None`` when there is nothing to draw. They use
:class:`matplotlib.figure.Figure` directly rather than ``pyplot``: rendering is headless (Agg)
without switching the global backend of the calling process (a notebook keeps its own), and no
figure is left open. Colours follow the Okabe-Ito palette, which stays distinguishable with the
common forms of colour blindness; the same position in a mapping gets the same colour in every
figure, so a run keeps its colour throughout a report.
"""
from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from purenoise.fileio import atomic_write

__all__ = [
    "PALETTE",
    "plot_per_class",
    "plot_groups",
    "plot_train_test",
    "plot_intervals",
    "plot_confusion",
    "plot_curves",
    "plot_samples",
]

#: Okabe-Ito colours (blue, orange, green, vermillion, purple, sky blue, yellow, black).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
COUNT_COLOR = "#8C8C8C"
DPI = 120
STYLE = {
    "font.size": 10,
    "axes.titlesize": 12,
    "axes.titleweight": "bold",
    "axes.labelsize": 10.5,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "figure.titlesize": 13,
    "figure.titleweight": "bold",
}
BAR_MODE_MAX_CLASSES = 40  # above this, per-class accuracy is drawn as lines, not bars
ANNOTATE_MAX_CLASSES = 15  # confusion cells carry their percentage up to this many classes


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _new_figure(width: float, height: float) -> Figure:
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as PNG atomically (temporary file in the target folder, fsync, rename)."""
    buf = io.BytesIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return atomic_write(path, buf.getbuffer())


def _pct(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else 100.0 * float(v) for v in values], dtype=float)


def _frequency_order(counts: Sequence[int] | None, n: int) -> np.ndarray:
    """Class indices from the most to the least frequent (stable: ties keep index order)."""
    if counts is None:
        return np.arange(n)
    return np.argsort(-np.asarray(counts, dtype=float), kind="stable")


def _moving_average(y: np.ndarray, w: int) -> np.ndarray:
    """Centred moving average that ignores NaN and shrinks its window at the ends."""
    ok = np.isfinite(y)
    kern = np.ones(w)
    num = np.convolve(np.where(ok, y, 0.0), kern, mode="same")
    den = np.convolve(ok.astype(float), kern, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def plot_per_class(
    accs: Mapping[str, Sequence[float | None]],
    counts: Sequence[int],
    class_names: Sequence[str] | None,
    path: str | os.PathLike,
    title: str | None = None,
    errors: Mapping[str, Sequence[float | None]] | None = None,
) -> Path | None:
    """Per-class test accuracy of each run against the class's training count (the paper's figure).

    Classes are ordered from the most to the least frequent on a shared x axis. A narrow top panel
    shows the training images per class on a log scale; the main panel shows one bar per run and
    class (lines instead of bars above 40 classes). ``accs`` maps a run label to fractions;
    ``errors`` (same keys, fractions) draws ± whiskers, e.g. the std over seeds.
    """
    if not accs:
        return None
    n = len(counts)
    order = _frequency_order(counts, n)
    names = [str(class_names[i]) if class_names else str(i) for i in order]
    cnt = np.asarray(counts, dtype=float)[order]
    k = len(accs)
    bars = n <= BAR_MODE_MAX_CLASSES
    width = min(16.0, max(7.5, 0.2 * n * (k + 1) + 3.0)) if bars else 11.0
    fig = _new_figure(width, 6.2)
    with matplotlib.rc_context(STYLE):
        top, ax = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 2.8]})
        x = np.arange(n)
        if bars:
            top.bar(x, cnt, width=0.6, color=COUNT_COLOR)
            if n <= 20:
                for xi, c in zip(x, cnt):
                    top.annotate(f"{int(c):,}", (xi, c), xytext=(0, 2), textcoords="offset points",
                                 ha="center", va="bottom", fontsize=8, color="#444444")
        else:
            top.fill_between(x, cnt, step="mid", color=COUNT_COLOR, alpha=0.7, linewidth=0)
        top.set_yscale("log")
        pos = cnt[cnt > 0]
        top.set_ylim(pos.min() / 2 if pos.size else 1, pos.max() * 4 if pos.size else 10)
        top.set_ylabel("train images\n(log scale)")
        top.grid(axis="x", visible=False)
        top.set_title(title or "Per-class test accuracy against training-set size")

        bw = 0.8 / k
        for i, (label, values) in enumerate(accs.items()):
            y = _pct(values)[order]
            mean = np.nanmean(y) if np.isfinite(y).any() else float("nan")
            leg = f"{label} (mean {mean:.1f}%)" if math.isfinite(mean) else label
            err = _pct(errors[label])[order] if errors and errors.get(label) else None
            if bars:
                xs = x - 0.4 + bw * (i + 0.5)
                ax.bar(xs, y, width=bw * 0.92, color=color(i), label=leg, yerr=err,
                       error_kw={"elinewidth": 0.9, "capsize": 2, "ecolor": "#333333"})  # NaN: no bar
                for xi in xs[~np.isfinite(y)]:  # a class without test images (or no value)
                    ax.text(xi, 1, "n/a", rotation=90, ha="center", va="bottom", fontsize=7, color=color(i))
            else:  # many classes: faint per-class line under a moving average over ~5% of them
                ax.plot(x, y, color=color(i), linewidth=0.7, alpha=0.35)
                ax.plot(x, _moving_average(y, max(3, n // 20)), color=color(i), linewidth=2.2, label=leg)
                if err is not None:
                    ax.fill_between(x, y - err, y + err, color=color(i), alpha=0.12, linewidth=0)
        ax.set_ylim(0, 108)
        ax.set_yticks(range(0, 101, 20))
        ax.set_ylabel("test accuracy (%)")
        ax.grid(axis="x", visible=False)
        if bars:
            ax.set_xticks(x)
            rot = 30 if max(len(s) for s in names) > 6 or n > 12 else 0
            ax.set_xticklabels(names, rotation=rot, ha="right" if rot else "center")
            ax.set_xlim(-0.6, n - 0.4)
            ax.set_xlabel("class, from most to least frequent in training")
        else:
            ax.set_xlim(-0.5, n - 0.5)
            ax.set_xlabel("class rank by training count (most frequent first)")
        ax.legend(loc="lower left", ncol=min(k, 4), bbox_to_anchor=(0, 1.0, 1, 0.1), borderaxespad=0.2)
    return _save(fig, path)


def plot_groups(
    groups: Mapping[str, Sequence[float | None]],
    path: str | os.PathLike,
    group_labels: Sequence[str] | None = None,
    title: str | None = None,
    errors: Mapping[str, Sequence[float | None]] | None = None,
) -> Path | None:
    """Accuracy of equal-sized groups of classes (most to least frequent), one bar per run.

    ``errors`` (same keys as ``groups``, fractions) draws ± whiskers, e.g. the std over seeds.
    """
    if not groups:
        return None
    g = max(len(v) for v in groups.values())
    labels = list(group_labels) if group_labels else [f"group {j + 1}" for j in range(g)]
    k = len(groups)
    fig = _new_figure(max(7.0, 1.2 + g * (0.35 * k + 0.6)), 4.6)
    with matplotlib.rc_context(STYLE):
        ax = fig.subplots()
        x = np.arange(g)
        bw = 0.8 / k
        for i, (label, values) in enumerate(groups.items()):
            y = _pct(list(values) + [None] * (g - len(values)))
            err = errors.get(label) if errors else None
            err = _pct(list(err) + [None] * (g - len(err))) if err else None
            rects = ax.bar(x - 0.4 + bw * (i + 0.5), y, width=bw * 0.92, color=color(i), label=label, yerr=err,
                           error_kw={"elinewidth": 0.9, "capsize": 2, "ecolor": "#333333"})
            if k <= 4:
                for r, v in zip(rects, y):
                    if math.isfinite(v):
                        ax.annotate(f"{v:.1f}", (r.get_x() + r.get_width() / 2, v), xytext=(0, 2),
                                    textcoords="offset points", ha="center", va="bottom", fontsize=7.5)
        ax.set_xticks(x)
        ax.set_xticklabels(labels)
        ax.set_ylim(0, 110)
        ax.set_yticks(range(0, 101, 20))
        ax.set_ylabel("test accuracy (%)")
        ax.set_xlabel("classes in 5 equal groups by training count (most frequent first)")
        ax.grid(axis="x", visible=False)
        ax.set_title(title or "Accuracy by class-frequency group")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def plot_train_test(
    train: Mapping[str, Sequence[float | None]],
    test: Mapping[str, Sequence[float | None]],
    counts: Sequence[int],
    class_names: Sequence[str] | None,
    path: str | os.PathLike,
    title: str | None = None,
    train_errors: Mapping[str, Sequence[float | None]] | None = None,
    test_errors: Mapping[str, Sequence[float | None]] | None = None,
) -> Path | None:
    """Per-class training accuracy (dashed, hollow) and test accuracy (solid, filled) of each run.

    Classes run from the most to the least frequent in training. The vertical distance between a
    run's two lines at a class is that class's generalization gap; memorized minority classes show
    training accuracy near 100% over a much lower test accuracy. ``*_errors`` draw ± whiskers.
    """
    if not train:
        return None
    n = len(counts)
    order = _frequency_order(counts, n)
    names = [str(class_names[i]) if class_names else str(i) for i in order]
    fig = _new_figure(min(16.0, max(7.5, 0.55 * n + 3.0)), 4.8)
    with matplotlib.rc_context(STYLE):
        ax = fig.subplots()
        x = np.arange(n)
        k = len(train)
        for i, label in enumerate(train):
            off = (i - (k - 1) / 2) * min(0.12, 0.6 / k)
            for values, errs, style, fill in ((train[label], train_errors, "--", "none"),
                                              (test.get(label), test_errors, "-", color(i))):
                if values is None:
                    continue
                err = _pct(errs[label])[order] if errs and errs.get(label) else None
                ax.errorbar(x + off, _pct(values)[order], yerr=err, color=color(i), linestyle=style,
                            marker=MARKERS[i % len(MARKERS)], markerfacecolor=fill, markersize=5,
                            linewidth=1.4, capsize=2, elinewidth=0.8)
        ax.set_ylim(0, 105)
        ax.set_yticks(range(0, 101, 20))
        ax.set_ylabel("accuracy (%)")
        ax.set_xticks(x)
        rot = 30 if max(len(s) for s in names) > 6 or n > 12 else 0
        ax.set_xticklabels(names, rotation=rot, ha="right" if rot else "center")
        ax.set_xlabel("class, from most to least frequent in training")
        ax.set_title(title or "Training (un-augmented) against test accuracy per class")
        handles = [Line2D([], [], color=color(i), marker=MARKERS[i % len(MARKERS)], label=label)
                   for i, label in enumerate(train)]
        handles += [Line2D([], [], color="#555555", linestyle="--", marker="o", markerfacecolor="none",
                           label="training set"),
                    Line2D([], [], color="#555555", linestyle="-", marker="o", label="test set")]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def plot_intervals(
    points: Sequence[tuple[str, float, float, float | None, float | None]],
    path: str | os.PathLike,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
) -> Path | None:
    """Labelled points ``(label, x, y, y_lo, y_hi)`` with vertical interval bars and a zero line.

    For an effect (``y``, with its confidence interval) against a property of each setting
    (``x``): an interval that stays clear of the dashed zero line is an effect beyond its noise.
    """
    if not points:
        return None
    fig = _new_figure(7.5, 4.8)
    with matplotlib.rc_context(STYLE):
        ax = fig.subplots()
        ax.axhline(0, color="#555555", linestyle="--", linewidth=1)
        for i, (label, x, y, lo, hi) in enumerate(points):
            err = None if lo is None or hi is None else [[y - lo], [hi - y]]
            ax.errorbar([x], [y], yerr=err, color=color(i), marker=MARKERS[i % len(MARKERS)], markersize=7,
                        capsize=4, linewidth=1.5, label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title or "")
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, path)


def plot_confusion(
    confusion: Sequence[Sequence[int]],
    class_names: Sequence[str] | None,
    path: str | os.PathLike,
    counts: Sequence[int] | None = None,
    title: str | None = None,
) -> Path | None:
    """Row-normalised confusion matrix (rows: true class), classes by training count."""
    cm = np.asarray(confusion, dtype=float)
    if cm.ndim != 2 or cm.shape[0] == 0 or cm.shape[0] != cm.shape[1]:
        return None
    n = cm.shape[0]
    order = _frequency_order(counts, n)
    cm = cm[np.ix_(order, order)]
    rows = cm.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(rows > 0, 100.0 * cm / rows, np.nan)
    names = [str(class_names[i]) if class_names else str(i) for i in order]
    ylabels = [f"{s} ({int(counts[i]):,})" for s, i in zip(names, order)] if counts is not None else names
    side = min(11.0, max(5.5, 0.5 * n + 3.0))
    fig = _new_figure(side + 1.2, side)
    with matplotlib.rc_context(STYLE):
        ax = fig.subplots()
        cmap = matplotlib.colormaps["Blues"].with_extremes(bad="#DDDDDD")
        im = ax.imshow(norm, cmap=cmap, vmin=0, vmax=100, interpolation="nearest")
        ax.grid(False)
        for s in ax.spines.values():
            s.set_visible(False)
        if n <= BAR_MODE_MAX_CLASSES:
            ax.set_xticks(range(n))
            ax.set_xticklabels(names, rotation=45, ha="right", rotation_mode="anchor")
            ax.set_yticks(range(n))
            ax.set_yticklabels(ylabels)
        if n <= ANNOTATE_MAX_CLASSES:
            for r in range(n):
                for c in range(n):
                    v = norm[r, c]
                    if math.isfinite(v) and round(v) >= 1:
                        ax.text(c, r, f"{v:.0f}", ha="center", va="center", fontsize=8,
                                color="white" if v > 60 else "#222222")
        if n <= BAR_MODE_MAX_CLASSES:
            ax.set_xlabel("predicted class")
            ax.set_ylabel("true class (training images)" if counts is not None else "true class")
        else:  # too many classes to name: ticks are positions in the frequency order
            rank = " (rank by training count)" if counts is not None else ""
            ax.set_xlabel("predicted class" + rank)
            ax.set_ylabel("true class" + rank)
        ax.set_title(title or "Confusion matrix")
        cb = fig.colorbar(im, ax=ax, shrink=0.8, pad=0.02)
        cb.set_label("% of the true class's test images")
    return _save(fig, path)


def plot_curves(
    curves: Mapping[str, Sequence[Mapping[str, Any]]],
    path: str | os.PathLike,
    defer: Mapping[str, int | None] | None = None,
    title: str | None = None,
) -> Path | None:
    """Training curves per run: loss, accuracy (train, and test when logged), noise fraction.

    ``curves`` maps a run label to its ``metrics.jsonl`` records; ``defer`` maps a label to the
    0-based epoch from which sampling was class-balanced, drawn as a dashed vertical line at the
    boundary before that epoch. The x axis counts completed epochs (record ``epoch`` + 1).
    """
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return None
    defer = defer or {}

    def series(recs: Sequence[Mapping[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
        pts = [(r["epoch"] + 1, r[key]) for r in recs if r.get(key) is not None]
        if not pts:
            return np.empty(0), np.empty(0)
        a = np.asarray(pts, dtype=float)
        return a[:, 0], a[:, 1]

    has_test = any(series(v, "test_balanced_acc")[0].size or series(v, "test_top1")[0].size for v in curves.values())
    has_noise = any((series(v, "noise_frac")[1] > 0).any() for v in curves.values())
    n_panels = 3 if has_noise else 2
    fig = _new_figure(4.6 * n_panels + 0.6, 4.4)
    with matplotlib.rc_context(STYLE):
        axes = fig.subplots(1, n_panels)
        ax_loss, ax_acc = axes[0], axes[1]
        max_ep = max(max(r["epoch"] for r in v) + 1 for v in curves.values())
        for i, (label, recs) in enumerate(curves.items()):
            # distinct markers and some transparency keep runs that share a phase (branched
            # from one checkpoint) visible where their curves coincide
            kw = dict(color=color(i), alpha=0.85, linewidth=1.6, markersize=4,
                      marker=MARKERS[i % len(MARKERS)] if max_ep <= 40 else None)
            x, y = series(recs, "train_loss")
            ax_loss.plot(x, y, label=label, **kw)
            x, y = series(recs, "train_acc")
            ax_acc.plot(x, 100 * y, **kw)
            x, y = series(recs, "test_balanced_acc")
            if not x.size:
                x, y = series(recs, "test_top1")
            if x.size:
                ax_acc.plot(x, 100 * y, linestyle="--", **kw)
            if has_noise:
                x, y = series(recs, "noise_frac")
                axes[2].plot(x, 100 * y, drawstyle="steps-pre", **{**kw, "marker": None})
        # defer epochs: one shared black line if all runs agree, else one line per run colour
        ds = {lab: d for lab, d in defer.items() if d is not None and lab in curves}
        common = len(set(ds.values())) == 1
        for ax in axes:
            for j, (lab, d) in enumerate(ds.items()):
                ci = list(curves).index(lab)
                ax.axvline(d, color="#333333" if common else color(ci), linestyle=":", linewidth=1.3)
                if common:
                    break
        ax_loss.set_title("Training loss")
        ax_loss.set_ylabel("loss on training batches")
        ax_acc.set_title("Accuracy")
        ax_acc.set_ylabel("accuracy (%)")
        ax_acc.set_ylim(0, 101)
        handles = [Line2D([], [], color="#444444", label="train (natural rows)")]
        if has_test:
            handles.append(Line2D([], [], color="#444444", linestyle="--", label="test (balanced acc)"))
        if ds:
            handles.append(Line2D([], [], color="#333333", linestyle=":",
                                  label="switch to class-balanced sampling"))
        ax_acc.legend(handles=handles, loc="lower right")
        ax_loss.legend(loc="upper right")
        if has_noise:
            axes[2].set_title("Pure-noise share of each batch")
            axes[2].set_ylabel("noise rows (%)")
            axes[2].set_ylim(bottom=0)
        for ax in axes:
            ax.set_xlabel("epoch")
            ax.set_xlim(0, max_ep + 0.5)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if title:
            fig.suptitle(title)
    return _save(fig, path)


def _to_display(img: Any) -> tuple[np.ndarray, bool]:
    """[C,H,W] tensor/array (uint8 or float in [0,1]) -> HxW or HxWx3 floats in [0,1]."""
    a = img.detach().cpu().numpy() if hasattr(img, "detach") else np.asarray(img)
    rescaled = False
    if a.dtype == np.uint8:
        a = a.astype(np.float32) / 255.0
    else:
        a = a.astype(np.float32)
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        if lo < -0.05 or hi > 1.05:  # not in [0,1] (e.g. still normalised): stretch to show it
            a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
            rescaled = True
    a = np.clip(a, 0.0, 1.0)
    if a.ndim == 3:
        a = a[0] if a.shape[0] == 1 else np.transpose(a[:3], (1, 2, 0))
    return a, rescaled


def plot_samples(
    samples: Mapping[str, Any],
    class_names: Sequence[str] | None,
    path: str | os.PathLike,
    title: str | None = None,
    max_per_kind: int = 8,
) -> Path | None:
    """A row of real training images above a row of the pure-noise images that replaced them.

    ``samples`` holds ``natural``/``noise`` image batches [n,C,H,W] and their labels; a noise
    image's label is the (minority) class it was trained as.
    """
    kinds = [("natural", "real images"), ("noise", "pure noise\n(OPeN)")]
    imgs = {k: samples.get(k) for k, _ in kinds}
    counts = {k: (0 if v is None else min(len(v), max_per_kind)) for k, v in imgs.items()}
    m = max(counts.values())
    if m == 0:
        return None
    rows = [k for k, _ in kinds if counts[k] > 0]
    fig = _new_figure(max(6.0, 1.25 * m + 1.4), 1.45 * len(rows) + 0.6)
    any_rescaled = False
    with matplotlib.rc_context(STYLE):
        axes = np.atleast_2d(fig.subplots(len(rows), m, squeeze=False))
        for r, kind in enumerate(rows):
            labels = samples.get(f"{kind}_labels")
            for c in range(m):
                ax = axes[r, c]
                ax.set_xticks([])
                ax.set_yticks([])
                ax.grid(False)
                for s in ax.spines.values():
                    s.set_visible(False)
                if c >= counts[kind]:
                    continue
                a, rescaled = _to_display(imgs[kind][c])
                any_rescaled |= rescaled
                ax.imshow(a, cmap="gray" if a.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
                if labels is not None:
                    lab = int(labels[c])
                    name = str(class_names[lab]) if class_names and 0 <= lab < len(class_names) else str(lab)
                    ax.set_title(name, fontsize=8.5, fontweight="normal")
            axes[r, 0].set_ylabel(dict(kinds)[kind], fontsize=10, rotation=0, ha="right", va="center",
                                  labelpad=8)
        fig.suptitle(title or "Images the model was trained on")
        if any_rescaled:
            fig.supxlabel("values outside [0, 1]: contrast stretched per image for display", fontsize=8.5)
    return _save(fig, path)
