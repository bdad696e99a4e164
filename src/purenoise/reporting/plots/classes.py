"""Per-class figures: accuracy against the training count, frequency groups, training against test
accuracy, and the confusion matrix. Classes run from the most to the least frequent.

Each function takes plain data and a file path, writes one PNG atomically and returns the path,
or ``None`` when there is nothing to draw.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.lines import Line2D

from purenoise.reporting.plots.style import (ANNOTATE_MAX_CLASSES, BAR_MODE_MAX_CLASSES, COUNT_COLOR, MARKERS, STYLE,
                                             color, frequency_order, moving_average, new_figure, save_png, to_points)

__all__ = ["plot_per_class", "plot_groups", "plot_train_test", "plot_confusion"]


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
    order = frequency_order(counts, n)
    names = [str(class_names[i]) if class_names else str(i) for i in order]
    cnt = np.asarray(counts, dtype=float)[order]
    k = len(accs)
    bars = n <= BAR_MODE_MAX_CLASSES
    width = min(16.0, max(7.5, 0.2 * n * (k + 1) + 3.0)) if bars else 11.0
    fig = new_figure(width, 6.2)
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
            y = to_points(values)[order]
            mean = np.nanmean(y) if np.isfinite(y).any() else float("nan")
            leg = f"{label} (mean {mean:.1f}%)" if math.isfinite(mean) else label
            err = to_points(errors[label])[order] if errors and errors.get(label) else None
            if bars:
                xs = x - 0.4 + bw * (i + 0.5)
                ax.bar(xs, y, width=bw * 0.92, color=color(i), label=leg, yerr=err,
                       error_kw={"elinewidth": 0.9, "capsize": 2, "ecolor": "#333333"})  # NaN: no bar
                for xi in xs[~np.isfinite(y)]:  # a class without test images (or no value)
                    ax.text(xi, 1, "n/a", rotation=90, ha="center", va="bottom", fontsize=7, color=color(i))
            else:  # many classes: faint per-class line under a moving average over ~5% of them
                ax.plot(x, y, color=color(i), linewidth=0.7, alpha=0.35)
                ax.plot(x, moving_average(y, max(3, n // 20)), color=color(i), linewidth=2.2, label=leg)
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
    return save_png(fig, path)


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
    fig = new_figure(max(7.0, 1.2 + g * (0.35 * k + 0.6)), 4.6)
    with matplotlib.rc_context(STYLE):
        ax = fig.subplots()
        x = np.arange(g)
        bw = 0.8 / k
        for i, (label, values) in enumerate(groups.items()):
            y = to_points(list(values) + [None] * (g - len(values)))
            err = errors.get(label) if errors else None
            err = to_points(list(err) + [None] * (g - len(err))) if err else None
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
    return save_png(fig, path)


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
    order = frequency_order(counts, n)
    names = [str(class_names[i]) if class_names else str(i) for i in order]
    fig = new_figure(min(16.0, max(7.5, 0.55 * n + 3.0)), 4.8)
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
                err = to_points(errs[label])[order] if errs and errs.get(label) else None
                ax.errorbar(x + off, to_points(values)[order], yerr=err, color=color(i), linestyle=style,
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
    return save_png(fig, path)


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
    order = frequency_order(counts, n)
    cm = cm[np.ix_(order, order)]
    rows = cm.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(rows > 0, 100.0 * cm / rows, np.nan)
    names = [str(class_names[i]) if class_names else str(i) for i in order]
    ylabels = [f"{s} ({int(counts[i]):,})" for s, i in zip(names, order)] if counts is not None else names
    side = min(11.0, max(5.5, 0.5 * n + 3.0))
    fig = new_figure(side + 1.2, side)
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
    return save_png(fig, path)
