"""Shared step of the in-memory builders: pick the long-tailed subset of a balanced set."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from purenoise.data._checks import check_choice, check_int, check_ratio
from purenoise.data.longtail import PROFILES, longtail_counts, longtail_indices, ordered_counts, resolve_class_order
from purenoise.errors import ConfigError

__all__ = ["longtail_subset"]


def longtail_subset(
    dataset: str,
    targets: Sequence[int] | np.ndarray,
    class_names: Sequence[str],
    *,
    ratio: Any,
    profile: Any,
    seed: Any,
    class_order: Any = None,
    n_max: Any = None,
) -> tuple[np.ndarray, list[int], dict[str, Any]]:
    """Indices of the long-tailed subset, class counts by label, and the resolved options.

    ``n_max`` defaults to the size of the smallest class of the full set (5000 for CIFAR-10,
    500 for CIFAR-100, 6000 for Fashion-MNIST), so every class can supply its quota.
    """
    ratio = check_ratio(dataset, ratio)
    profile = check_choice(dataset, "profile", profile, PROFILES)
    seed = check_int(dataset, "seed", seed)
    t = np.asarray(targets, dtype=np.int64)
    num_classes = len(class_names)
    available = np.bincount(t, minlength=num_classes)
    n_max = check_int(dataset, "n_max", n_max, minimum=1, allow_none=True)
    if n_max is None:
        n_max = int(available.min())
    order = resolve_class_order(class_order, class_names, seed=seed)
    counts = ordered_counts(longtail_counts(n_max, num_classes, ratio, profile), order)
    short = [(class_names[c], counts[c], int(available[c])) for c in range(num_classes) if counts[c] > available[c]]
    if short:
        raise ConfigError(
            f"{dataset}: n_max={n_max} asks for more images than some classes have "
            f"(class, wanted, available): {short}; lower n_max"
        )
    indices = longtail_indices(t, counts, seed=seed)
    resolved = {"ratio": ratio, "profile": profile, "seed": seed, "n_max": n_max,
                "class_order": None if class_order is None else [int(i) for i in order]}
    return indices, counts, resolved
