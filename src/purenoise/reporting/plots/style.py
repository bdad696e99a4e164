"""The look shared by every purenoise figure: palette, markers, rc style, figure and PNG helpers.

Figures use :class:`matplotlib.figure.Figure` directly rather than ``pyplot``: rendering is
headless (Agg) without switching the global backend of the calling process (a notebook keeps its
own), and no figure is left open. Colours follow the Okabe-Ito palette, which stays
distinguishable with the common forms of colour blindness; the same position in a mapping gets the
same colour in every figure, so a run keeps its colour throughout a report.
"""
from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from purenoise.fileio import atomic_write

__all__ = ["PALETTE", "MARKERS", "STYLE", "color", "new_figure", "save_png", "to_points", "frequency_order",
           "moving_average"]

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
    """The palette colour of the ``i``-th series (cycling)."""
    return PALETTE[i % len(PALETTE)]


def new_figure(width: float, height: float) -> Figure:
    """A constrained-layout figure in the shared style, on its own Agg canvas."""
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_png(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as PNG atomically (temporary file in the target folder, fsync, rename)."""
    buf = io.BytesIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buf, format="png", dpi=DPI, facecolor="white")
    return atomic_write(path, buf.getbuffer())


def to_points(values: Sequence[float | None]) -> np.ndarray:
    """Fractions as points (%), ``None`` as NaN (drawn as a gap)."""
    return np.array([np.nan if v is None else 100.0 * float(v) for v in values], dtype=float)


def frequency_order(counts: Sequence[int] | None, n: int) -> np.ndarray:
    """Class indices from the most to the least frequent (stable: ties keep index order)."""
    if counts is None:
        return np.arange(n)
    return np.argsort(-np.asarray(counts, dtype=float), kind="stable")


def moving_average(y: np.ndarray, w: int) -> np.ndarray:
    """Centred moving average that ignores NaN and shrinks its window at the ends."""
    ok = np.isfinite(y)
    kern = np.ones(w)
    num = np.convolve(np.where(ok, y, 0.0), kern, mode="same")
    den = np.convolve(ok.astype(float), kern, mode="same")
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)

