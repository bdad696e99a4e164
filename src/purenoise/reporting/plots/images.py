"""Grids of the images a run trained on: natural rows and the pure-noise images that replaced them."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

from purenoise.reporting.plots.style import STYLE, new_figure, save_png

__all__ = ["plot_samples"]


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
    fig = new_figure(max(6.0, 1.25 * m + 1.4), 1.45 * len(rows) + 0.6)
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
    return save_png(fig, path)
