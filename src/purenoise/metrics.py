"""Evaluation metrics for long-tailed classification, as JSON-ready Python values.

All accuracies are **fractions in [0, 1]** (not percentages). Per-class quantities are recalls:
the fraction of a class's test images predicted as that class. A class with no test images
has no recall: its entry in ``per_class_acc`` is ``None``, and it is left out of every mean
(``balanced_acc``, shot groups, frequency groups, ``gmean``). The returned values contain no NaN
or infinity, so ``json.dumps(metrics, allow_nan=False)`` works.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from purenoise.errors import DataError

__all__ = ["compute_metrics", "shot_groups", "frequency_groups", "MANY_SHOT", "FEW_SHOT"]

#: Classes with more than this many training images are "many-shot".
MANY_SHOT = 100
#: Classes with fewer than this many training images are "few-shot"; the rest are "medium".
FEW_SHOT = 20


def _counts_list(class_counts) -> list[int]:
    if isinstance(class_counts, torch.Tensor):
        class_counts = class_counts.tolist()
    counts = [int(c) for c in np.asarray(class_counts).reshape(-1).tolist()]
    if any(c < 0 for c in counts):
        raise DataError(f"class_counts must be non-negative, got {counts}")
    return counts


def shot_groups(class_counts: Sequence[int]) -> dict[str, list[int]]:
    """Split classes by training count: ``many`` (> 100), ``medium`` (20..100), ``few`` (< 20).

    Returns:
        ``{"many": [...], "medium": [...], "few": [...]}``, class indices in increasing order.
    """
    counts = _counts_list(class_counts)
    return {
        "many": [c for c, n in enumerate(counts) if n > MANY_SHOT],
        "medium": [c for c, n in enumerate(counts) if FEW_SHOT <= n <= MANY_SHOT],
        "few": [c for c, n in enumerate(counts) if n < FEW_SHOT],
    }


def frequency_groups(class_counts: Sequence[int], num_groups: int = 5) -> list[list[int]]:
    """Classes sorted by training count (most frequent first), cut into equal groups.

    Ties keep class-index order. When C is not a multiple of ``num_groups`` the first groups get
    one class more (``numpy.array_split``); with C < ``num_groups`` the last groups are empty.
    """
    counts = _counts_list(class_counts)
    order = sorted(range(len(counts)), key=lambda c: (-counts[c], c))
    return [g.tolist() for g in np.array_split(np.asarray(order, dtype=np.int64), num_groups)]


def _mean_or_none(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return float(sum(present) / len(present)) if present else None


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        x = x.double() if x.is_floating_point() else x
        return x.numpy()
    return np.asarray(x)


def _looks_like_probs(scores: np.ndarray) -> bool:
    return bool(scores.min() >= 0.0 and scores.max() <= 1.0
                and np.allclose(scores.sum(axis=1), 1.0, atol=1e-4))


def _ece(confidence: np.ndarray, correct: np.ndarray, num_bins: int) -> float:
    """Expected calibration error: ``sum_b |B_b| / N * |acc(B_b) - conf(B_b)|``.

    Equal-width bins ``(k/K, (k+1)/K]`` on the confidence (Guo et al., 2017).
    """
    edges = np.linspace(0.0, 1.0, num_bins + 1)
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, num_bins - 1)
    total = 0.0
    for b in range(num_bins):
        in_bin = bins == b
        if in_bin.any():
            total += in_bin.mean() * abs(correct[in_bin].mean() - confidence[in_bin].mean())
    return float(total)


def _row_stats(scores: np.ndarray, y: np.ndarray, is_probs: bool, chunk: int = 4096):
    """Per test image: prediction, log-probability of the true class, confidence, top-5 hit.

    Works on row chunks so that a 50k x 1000 evaluation needs no N x C temporaries.
    """
    n, num_classes = scores.shape
    pred = np.empty(n, dtype=np.int64)
    true_lp = np.empty(n)
    conf = np.empty(n)
    top5 = np.zeros(n, dtype=bool)
    for lo in range(0, n, chunk):
        s = scores[lo:lo + chunk]
        t = y[lo:lo + chunk]
        rows = np.arange(len(s))
        if is_probs:
            # Clamp so that a zero probability of the true class gives a large finite NLL.
            lp = np.log(np.clip(s, 1e-12, None))
        else:
            shifted = s - s.max(axis=1, keepdims=True)
            lp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        pred[lo:lo + chunk] = s.argmax(axis=1)
        true_lp[lo:lo + chunk] = lp[rows, t]
        conf[lo:lo + chunk] = np.exp(lp.max(axis=1))
        if num_classes > 5:
            # A true class is in the top 5 when fewer than 5 classes score strictly higher.
            top5[lo:lo + chunk] = (s > s[rows, t][:, None]).sum(axis=1) < 5
    return pred, true_lp, conf, top5


def compute_metrics(
    logits,
    labels,
    class_counts: Sequence[int],
    *,
    num_bins: int = 15,
    class_names: Sequence[str] | None = None,
    is_probs: bool | None = None,
) -> dict:
    """Every evaluation metric of a test set, JSON-serializable.

    Args:
        logits: ``[N, C]`` float scores, logits or probabilities (tensor or array).
        labels: ``[N]`` integer true classes in ``[0, C)``.
        class_counts: the **training** images per class (length C); they define the shot
            groups and the frequency groups.
        num_bins: equal-width confidence bins of the ECE.
        class_names: optional names, returned as ``class_names``.
        is_probs: whether ``logits`` are probabilities; ``None`` guesses (all rows non-negative,
            at most 1 and summing to 1).

    Returns:
        A dict with (accuracies are fractions in [0, 1]):

        - ``num_samples``, ``num_classes``
        - ``top1``; ``top5`` (``None`` when C <= 5)
        - ``balanced_acc``: mean per-class recall over classes present in the test set
        - ``per_class_acc``: list of C recalls, ``None`` for classes without test images
        - ``per_class_count``: test images per class
        - ``many``, ``medium``, ``few``: mean recall over classes with > 100, 20..100, < 20
          training images (``None`` when the group has no class with test images)
        - ``groups5``: mean recall of 5 equal groups of classes ordered by training count, most
          frequent first (``groups5_classes`` holds their class indices)
        - ``gmean``: geometric mean of the recalls (0 when any recall is 0)
        - ``ece``: expected calibration error of the max softmax probability
        - ``nll``: mean negative log-likelihood of the true class
        - ``confusion``: C x C counts, rows = true class, columns = predicted class
        - ``class_counts``: the training counts given (so a report can plot against them)
        - ``class_names``: only when given
    """
    scores = _to_numpy(logits)
    y = _to_numpy(labels)
    counts = _counts_list(class_counts)
    if scores.ndim != 2:
        raise DataError(f"logits must be [N, C], got shape {scores.shape}")
    n, num_classes = scores.shape
    if n == 0:
        raise DataError("cannot compute metrics of an empty test set")
    if y.shape != (n,):
        raise DataError(f"labels must have shape ({n},) to match logits, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise DataError(f"labels must be integers, got dtype {y.dtype}")
    if len(counts) != num_classes:
        raise DataError(f"class_counts has {len(counts)} entries but logits have {num_classes} "
                        "columns; they must describe the same classes")
    if y.min() < 0 or y.max() >= num_classes:
        raise DataError(
            f"labels must be in [0, {num_classes}), found {int(y.min())}..{int(y.max())}"
        )
    if class_names is not None and len(class_names) != num_classes:
        raise DataError(f"class_names has {len(class_names)} names for {num_classes} classes")
    if num_bins < 1:
        raise DataError(f"num_bins must be >= 1, got {num_bins}")
    scores = scores.astype(np.float64, copy=False)
    if not np.isfinite(scores).all():
        raise DataError("logits contain NaN or infinite values")
    y = y.astype(np.int64)

    if is_probs is None:
        is_probs = _looks_like_probs(scores)
    pred, true_log_prob, confidence, in_top5 = _row_stats(scores, y, bool(is_probs))
    correct = pred == y

    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (y, pred), 1)
    per_class_count = confusion.sum(axis=1)
    per_class_acc: list[float | None] = [
        float(confusion[c, c] / per_class_count[c]) if per_class_count[c] else None
        for c in range(num_classes)
    ]
    present = [a for a in per_class_acc if a is not None]

    top5 = float(in_top5.mean()) if num_classes > 5 else None

    if any(a == 0.0 for a in present):
        gmean = 0.0
    else:
        gmean = float(math.exp(sum(math.log(a) for a in present) / len(present)))

    groups = shot_groups(counts)
    freq = frequency_groups(counts, 5)

    metrics = {
        "num_samples": int(n),
        "num_classes": int(num_classes),
        "top1": float(correct.mean()),
        "top5": top5,
        "balanced_acc": _mean_or_none(per_class_acc),
        "per_class_acc": per_class_acc,
        "per_class_count": per_class_count.tolist(),
        "many": _mean_or_none([per_class_acc[c] for c in groups["many"]]),
        "medium": _mean_or_none([per_class_acc[c] for c in groups["medium"]]),
        "few": _mean_or_none([per_class_acc[c] for c in groups["few"]]),
        "groups5": [_mean_or_none([per_class_acc[c] for c in g]) for g in freq],
        "groups5_classes": freq,
        "gmean": gmean,
        "ece": _ece(confidence, correct.astype(np.float64), num_bins),
        "nll": float(-true_log_prob.mean()),
        "confusion": confusion.tolist(),
        "class_counts": counts,
    }
    if class_names is not None:
        metrics["class_names"] = [str(c) for c in class_names]
    return metrics
