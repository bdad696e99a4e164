"""Figures for run reports, drawn with matplotlib's object API on the Agg canvas.

Each function takes plain data (lists, dicts, tensors) and a file path, writes one PNG atomically
and returns the path, or ``None`` when there is nothing to draw. ``style`` holds the look they
share (palette, rc style, the atomic PNG writer); one module per kind of figure.
"""
from purenoise.reporting.plots.classes import plot_confusion, plot_groups, plot_per_class, plot_train_test
from purenoise.reporting.plots.curves import plot_curves
from purenoise.reporting.plots.images import plot_samples
from purenoise.reporting.plots.intervals import plot_intervals
from purenoise.reporting.plots.style import PALETTE

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
