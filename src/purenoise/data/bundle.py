"""What a dataset builder returns, and the options every dataset shares.

:class:`DatasetBundle` (train set, test set, class counts, :class:`DatasetInfo`) is the contract
between the builders (one module per dataset family), the registry that calls them, and the
statistics that fill in ``info.mean``/``info.std``; it lives here so that none of them imports
another for it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from torch.utils.data import Dataset

__all__ = ["DatasetInfo", "DatasetBundle", "COMMON_OPTIONS", "default_root"]

# Options every dataset accepts; create_dataset handles them itself.
COMMON_OPTIONS: dict[str, Any] = {
    "mean": None,  # explicit per-channel mean: skips computing the statistics
    "std": None,
    "stats": True,  # False: leave info.mean/std as None (nothing is computed)
    "stats_max_images": None,  # estimate the statistics on a seeded random subset of this size
}


@dataclass
class DatasetInfo:
    """What the rest of purenoise needs to know about a dataset.

    Attributes:
        name: Registry name, e.g. ``"cifar10_lt"``.
        num_classes: Number of classes.
        class_names: Class names, indexed by label.
        image_size: ``(H, W)`` of the images the model sees: the natural size for fixed-size sets
            (CIFAR 32x32, Fashion-MNIST 28x28, CelebA-5 64x64), the size the presets produce for
            variable-size sets (224x224 for ImageNet-LT / Places-LT).
        channels: 1 (grayscale) or 3 (RGB).
        mean: Per-channel pixel mean in ``[0, 1]`` of the long-tailed *training* set.
        std: Per-channel pixel standard deviation of the same set.
        options: The resolved options (defaults filled in) that built the dataset.
        root: Folder the data was read from.
        notes: Human-readable remarks made while building (skipped files, converted modes).
    """

    name: str
    num_classes: int
    class_names: list[str]
    image_size: tuple[int, int]
    channels: int
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    root: str | None = None
    notes: list[str] = field(default_factory=list)


class DatasetBundle(NamedTuple):
    """Result of :func:`create_dataset`."""

    train: Dataset
    test: Dataset | None
    class_counts: list[int]
    info: DatasetInfo


def default_root() -> str:
    """Default data folder: ``$PURENOISE_DATA`` if set, else ``./data``."""
    return os.environ.get("PURENOISE_DATA") or "data"
