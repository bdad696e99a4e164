"""Training curves of runs: loss, accuracy and noise fraction per epoch, with the defer epoch marked."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from purenoise.reporting.plots.style import MARKERS, STYLE, color, new_figure, save_png

__all__ = ["plot_curves"]


def plot_curves(
    curves: Mapping[str, Sequence[Mapping[str, Any]]],
    path: str | os.PathLike,
    defer: Mapping[str, int | None] | None = None,
    title: str | None = None,
) -> Path | None:
    """Training curves per run: loss, accuracy (train, and test when logged), noise fraction.

    ``curves`` maps a run label to its metrics records (one per epoch); ``defer`` maps a label to
    the 0-based epoch from which sampling was class-balanced, drawn as a dashed vertical line at
    the boundary before that epoch. The x axis counts completed epochs (record ``epoch`` + 1).
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
    fig = new_figure(4.6 * n_panels + 0.6, 4.4)
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
    return save_png(fig, path)
