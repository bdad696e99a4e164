"""Long-tail profiles and the field's standard subset selection.

Two pure functions make a balanced dataset long-tailed exactly as LDAM-DRW (Cao et al., 2019)
does, so that our CIFAR-10-LT / CIFAR-100-LT are the same images as in LDAM-DRW and in every
paper that copied its data code (docs/method.md, section 3):

- :func:`longtail_counts`: how many images each class keeps.
- :func:`longtail_indices`: which images: with numpy's legacy RNG seeded once, for each class in
  label order, that class's indices (ascending) are shuffled with ``shuffle`` and the first ``n``
  are kept.

:func:`longtail_subset` is the step the in-memory builders (CIFAR, Fashion-MNIST) share: it checks
their options and applies the two functions to a balanced set's labels.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from purenoise.data._checks import check_choice, check_int, check_ratio
from purenoise.errors import ConfigError, DataError

__all__ = ["PROFILES", "longtail_counts", "longtail_indices", "resolve_class_order", "ordered_counts",
           "longtail_subset"]

PROFILES = ("exp", "step")


def _check_ratio(ratio: Any) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)):
        raise ConfigError(f"imbalance ratio must be a number >= 1 (n_max / n_min), got {ratio!r}")
    if not np.isfinite(ratio) or ratio < 1:
        raise ConfigError(
            f"imbalance ratio must be >= 1 (n_max / n_min; 1 means balanced), got ratio={ratio!r}"
        )
    return float(ratio)


def longtail_counts(n_max: int, num_classes: int, ratio: float, profile: str = "exp") -> list[int]:
    """Number of images each class keeps under a long-tail profile.

    ``"exp"``: class ``i`` keeps ``int(n_max * (1/ratio) ** (i / (C - 1)))``.
    ``"step"``: the first ``C // 2`` classes keep ``n_max``, the others ``int(n_max * (1/ratio))``.
    The float expressions are the ones LDAM-DRW evaluates, so the counts match it to the image
    (CIFAR-10-LT ratio 100: 5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50; 12,406 in all).

    Args:
        n_max: Images of the most frequent (first) class.
        num_classes: Number of classes ``C``.
        ratio: Imbalance ratio ``n_max / n_min`` (``>= 1``; ``1`` gives a balanced set).
        profile: ``"exp"`` or ``"step"``.

    Returns:
        One count per class position, most frequent first.

    Raises:
        ConfigError: For a bad argument, or a ratio so large that a class would keep no image.
    """
    ratio = _check_ratio(ratio)
    if isinstance(n_max, bool) or not isinstance(n_max, (int, np.integer)) or n_max < 1:
        raise ConfigError(f"n_max must be a positive integer, got {n_max!r}")
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise ConfigError(f"num_classes must be a positive integer, got {num_classes!r}")
    if profile not in PROFILES:
        raise ConfigError(f"unknown long-tail profile {profile!r}; choose one of {PROFILES}")
    factor = 1.0 / ratio
    if num_classes == 1:
        counts = [int(n_max)]
    elif profile == "exp":
        counts = [int(n_max * factor ** (i / (num_classes - 1.0))) for i in range(num_classes)]
    else:
        half = num_classes // 2
        counts = [int(n_max)] * half + [int(n_max * factor)] * (num_classes - half)
    if min(counts) < 1:
        raise ConfigError(
            f"ratio={ratio:g} with n_max={n_max} leaves {counts.count(0)} class(es) with no image "
            f"(counts {counts}); use a ratio of at most {n_max}"
        )
    return counts


def longtail_indices(targets: Sequence[int] | np.ndarray, counts: Sequence[int], seed: int = 0) -> np.ndarray:
    """Indices of the long-tailed subset, selected as LDAM-DRW selects them.

    Equivalent to ``np.random.seed(seed)`` once, then for each class ``c = 0, 1, ...``:
    ``idx = np.where(targets == c)[0]; np.random.shuffle(idx); keep idx[:counts[c]]``. A private
    ``np.random.RandomState(seed)`` replays the same stream as the global one, so the caller's
    global numpy state is neither read nor changed (and threads do not race on it).

    Args:
        targets: Label of every image of the full (balanced) set, integers in ``[0, C)``.
        counts: Images to keep for each class label ``0..C-1`` (``len(counts) == C``).
        seed: The seed LDAM-DRW passes as ``rand_number`` (0 in every published recipe).

    Returns:
        ``int64`` indices into ``targets``, grouped by class in label order (class 0 first),
        in the shuffled order within each class.

    Raises:
        DataError: If a class has fewer images than it should keep, or a label is out of range.
    """
    t = np.asarray(targets)
    if t.ndim != 1:
        raise DataError(f"targets must be one label per image, got an array of shape {t.shape}")
    t = t.astype(np.int64, copy=False)
    counts = [int(c) for c in counts]
    num_classes = len(counts)
    if t.size and (t.min() < 0 or t.max() >= num_classes):
        raise DataError(
            f"labels range over [{t.min()}, {t.max()}] but counts were given for {num_classes} classes"
        )
    rng = np.random.RandomState(seed)
    chosen = []
    for c, n in enumerate(counts):
        idx = np.where(t == c)[0]
        if n > idx.size:
            raise DataError(
                f"class {c} should keep {n} images but the data has only {idx.size}; lower n_max or "
                f"the ratio, or check the data"
            )
        if n < 0:
            raise ConfigError(f"count for class {c} must be >= 0, got {n}")
        rng.shuffle(idx)
        chosen.append(idx[:n])
    if not chosen:
        return np.zeros(0, dtype=np.int64)
    return np.concatenate(chosen).astype(np.int64, copy=False)


def resolve_class_order(class_order: Any, class_names: Sequence[str], *, seed: int = 0) -> list[int]:
    """Turn a ``class_order`` option into a permutation of class labels, head class first.

    Args:
        class_order: ``None`` (label order, the field's convention), ``"random"`` (a permutation
            drawn from ``seed``), ``"reverse"``, or a list of class labels or class names.
        class_names: The dataset's class names, indexed by label.
        seed: Seed for ``"random"``.

    Returns:
        ``order`` such that ``order[k]`` is the label of the class at profile position ``k``.
    """
    num_classes = len(class_names)
    if class_order is None or class_order == "natural":
        return list(range(num_classes))
    if class_order == "reverse":
        return list(range(num_classes - 1, -1, -1))
    if class_order == "random":
        return [int(i) for i in np.random.default_rng(seed).permutation(num_classes)]
    if isinstance(class_order, str) or not isinstance(class_order, Sequence):
        raise ConfigError(
            f"class_order={class_order!r} is not valid; use null, 'natural', 'reverse', 'random' or "
            f"a list of all {num_classes} class labels or names, head class first"
        )
    name_to_label = {n: i for i, n in enumerate(class_names)}
    order = []
    for item in class_order:
        if isinstance(item, str) and item in name_to_label:
            order.append(name_to_label[item])
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool) and 0 <= item < num_classes:
            order.append(int(item))
        else:
            raise ConfigError(
                f"class_order entry {item!r} is neither a label in [0, {num_classes}) nor a class "
                f"name; class names are {list(class_names)}"
            )
    if sorted(order) != list(range(num_classes)):
        raise ConfigError(
            f"class_order must list every one of the {num_classes} classes exactly once, got {list(class_order)}"
        )
    return order


def ordered_counts(profile_counts: Sequence[int], order: Sequence[int]) -> list[int]:
    """Counts per class label, given counts per profile position and a class order."""
    by_label = [0] * len(order)
    for position, label in enumerate(order):
        by_label[label] = int(profile_counts[position])
    return by_label


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
