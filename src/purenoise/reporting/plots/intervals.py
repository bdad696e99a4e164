"""An effect with its confidence interval against a property of each setting: the study's headline."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

from purenoise.reporting.plots.style import MARKERS, STYLE, color, new_figure, save_png

__all__ = ["plot_intervals"]


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
    fig = new_figure(7.5, 4.8)
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
    return save_png(fig, path)
