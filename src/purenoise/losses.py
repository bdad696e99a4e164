"""Losses for long-tailed classification, built by name from the training class counts.

Every loss is an ``nn.Module`` called as ``loss(logits, labels) -> scalar`` (mean over the batch;
computed in float32 whatever the logits' dtype) with a ``set_epoch(epoch)`` method the trainer
calls at the start of every epoch, which switches the deferred weights of ``drw`` and of
``ldam`` with ``drw_epoch`` and does nothing for the others. Class weights are buffers, so
``loss.to(device)`` moves them (they are also moved to the logits' device on the fly).

====================  ======================================================================
name                  loss
====================  ======================================================================
``ce``                cross-entropy, optional ``label_smoothing``
``cb``                class-balanced cross-entropy, effective-number weights (``beta``)
``drw``               deferred re-weighting: ``ce`` before ``drw_epoch``, ``cb`` weights after
``ldam``              LDAM (``max_m``, ``s``), optional DRW with ``drw_epoch``
``balanced_softmax``  cross-entropy on ``logits + log(prior)``
``logit_adjust``      cross-entropy on ``logits + tau * log(prior)``
====================  ======================================================================

Weighted losses (``cb``, ``drw``, ``ldam`` with DRW) take PyTorch's weighted mean,
``sum_i w[y_i] * l_i / sum_i w[y_i]``, as LDAM-DRW's code does (``nn.CrossEntropyLoss(weight=)``).
"""
from __future__ import annotations

import inspect
import math
import numbers
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from purenoise.errors import ConfigError

__all__ = [
    "create_loss",
    "list_losses",
    "class_balanced_weights",
    "LongTailLoss",
    "CrossEntropy",
    "ClassBalancedCE",
    "DRWLoss",
    "LDAMLoss",
    "LogitAdjustedCE",
]


def _check_counts(class_counts) -> torch.Tensor:
    if isinstance(class_counts, torch.Tensor):
        values = class_counts.detach().cpu().tolist()
    else:
        try:
            values = list(class_counts)
        except TypeError:
            raise ConfigError(
                f"class_counts must be a list of positive numbers, got {class_counts!r}"
            ) from None
    if not values:
        raise ConfigError("class_counts is empty: need one training count per class")
    bad = [(i, v) for i, v in enumerate(values)
           if isinstance(v, bool) or not isinstance(v, numbers.Real) or not v > 0
           or not math.isfinite(v)]
    if bad:
        i, v = bad[0]
        raise ConfigError(f"class_counts must all be positive (> 0); class {i} has {v!r}")
    return torch.tensor([float(v) for v in values], dtype=torch.float64)


def _check_range(key: str, value, lo: float, hi: float, *, lo_open: bool = False,
                 hi_open: bool = False) -> float:
    """Check ``value`` is a real number in the interval; the message names key and range."""
    interval = f"{'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or math.isnan(value):
        raise ConfigError(f"loss option {key} must be a number in {interval}, got {value!r}")
    ok = (value > lo if lo_open else value >= lo) and (value < hi if hi_open else value <= hi)
    if not ok:
        raise ConfigError(f"loss option {key} must be in {interval}, got {value!r}")
    return float(value)


def _check_epoch(key: str, value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ConfigError(f"loss option {key} must be an integer >= 0 (or null), got {value!r}")
    return int(value)


def class_balanced_weights(
    class_counts: Sequence[float] | torch.Tensor, beta: float
) -> torch.Tensor:
    """Class-balanced weights of Cui et al. (2019): ``(1 - beta) / (1 - beta ** n_c)``.

    Normalized to sum to the number of classes C. ``beta = 0`` gives all ones; as ``beta -> 1``
    the weights approach inverse class frequency.

    Args:
        class_counts: training images per class, all positive.
        beta: in [0, 1).

    Returns:
        float32 tensor ``[C]``.
    """
    counts = _check_counts(class_counts)
    beta = _check_range("beta", beta, 0.0, 1.0, hi_open=True)
    effective_num = 1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), counts)
    weights = (1.0 - beta) / effective_num
    return (weights / weights.sum() * len(counts)).float()


class LongTailLoss(nn.Module):
    """Base class: holds the class counts, checks logits, and a no-op ``set_epoch``."""

    def __init__(self, class_counts) -> None:
        super().__init__()
        counts = _check_counts(class_counts)
        self.num_classes = len(counts)
        self.register_buffer("class_counts", counts.float(), persistent=False)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Tell the loss which epoch starts (0-based). Only deferred re-weighting uses it."""
        self.epoch = int(epoch)

    def _check(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if logits.ndim != 2 or logits.shape[1] != self.num_classes:
            raise ConfigError(
                f"the loss was built for {self.num_classes} classes (len(class_counts)) but got "
                f"logits of shape {tuple(logits.shape)}; model num_classes and the dataset differ"
            )
        return logits.float()

    def _weight(self, w: torch.Tensor | None, logits: torch.Tensor) -> torch.Tensor | None:
        return None if w is None else w.to(logits.device)


class CrossEntropy(LongTailLoss):
    """Plain cross-entropy, with optional label smoothing in [0, 1)."""

    def __init__(self, class_counts, label_smoothing: float = 0.0) -> None:
        super().__init__(class_counts)
        self.label_smoothing = _check_range("label_smoothing", label_smoothing, 0.0, 1.0,
                                            hi_open=True)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self._check(logits, labels), labels,
                               label_smoothing=self.label_smoothing)

    def extra_repr(self) -> str:
        return f"label_smoothing={self.label_smoothing}"


class ClassBalancedCE(LongTailLoss):
    """Cross-entropy re-weighted by effective number of samples (Cui et al., 2019).

    Args:
        class_counts: training images per class.
        beta: in [0, 1); 0.9999 by default (the paper's CIFAR value).
    """

    def __init__(self, class_counts, beta: float = 0.9999) -> None:
        super().__init__(class_counts)
        self.beta = beta
        self.register_buffer("weight", class_balanced_weights(class_counts, beta), persistent=False)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = self._check(logits, labels)
        return F.cross_entropy(logits, labels, weight=self._weight(self.weight, logits))

    def extra_repr(self) -> str:
        return f"beta={self.beta}"


class _Deferred(LongTailLoss):
    """Shared DRW schedule: weights with ``betas[0]`` before ``drw_epoch``, ``betas[1]`` after."""

    def __init__(self, class_counts, drw_epoch: int | None, beta: float) -> None:
        super().__init__(class_counts)
        self.drw_epoch = _check_epoch("drw_epoch", drw_epoch)
        self.beta = beta
        self.register_buffer("drw_weight", class_balanced_weights(class_counts, beta),
                             persistent=False)

    @property
    def weight(self) -> torch.Tensor | None:
        """Current class weights, or None while unweighted (before ``drw_epoch``)."""
        if self.drw_epoch is None or self.epoch < self.drw_epoch:
            return None
        return self.drw_weight

    def extra_repr(self) -> str:
        extra = f", max_m={self.max_m}, s={self.s}" if isinstance(self, LDAMLoss) else ""
        return f"drw_epoch={self.drw_epoch}, beta={self.beta}{extra}"


class DRWLoss(_Deferred):
    """Deferred re-weighting (Cao et al., 2019): cross-entropy, class-balanced from ``drw_epoch``.

    As LDAM-DRW's ``betas = [0, 0.9999]``: weights are all ones (plain CE) for epochs
    ``< drw_epoch`` and class-balanced with ``beta`` from ``drw_epoch`` on.

    Args:
        class_counts: training images per class.
        drw_epoch: first re-weighted epoch (0-based), 160 by default as in the CIFAR recipe.
        beta: in [0, 1).
    """

    def __init__(self, class_counts, drw_epoch: int = 160, beta: float = 0.9999) -> None:
        if drw_epoch is None:
            raise ConfigError("loss option drw_epoch must be an integer >= 0 for the drw loss")
        super().__init__(class_counts, drw_epoch, beta)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = self._check(logits, labels)
        return F.cross_entropy(logits, labels, weight=self._weight(self.weight, logits))


class LDAMLoss(_Deferred):
    """Label-distribution-aware margin loss (Cao et al., 2019).

    The true-class logit is lowered by ``m_c = max_m * n_c^(-1/4) / max_c' n_c'^(-1/4)`` and all
    logits are scaled by ``s`` before cross-entropy. Meant for a cosine classifier (logits in
    [-1, 1]): build the model with ``use_norm=True``. With ``drw_epoch``, class-balanced weights
    (``beta``) apply from that epoch on (LDAM-DRW).

    Args:
        class_counts: training images per class.
        max_m: largest margin (of the rarest class), > 0; 0.5 by default.
        s: logit scale, > 0; 30 by default.
        drw_epoch: first re-weighted epoch, or None (default) for no re-weighting.
        beta: in [0, 1), for the deferred weights.
    """

    #: The trainer should build the model with a cosine classifier (``use_norm=True``).
    wants_normed_classifier = True

    def __init__(self, class_counts, max_m: float = 0.5, s: float = 30.0,
                 drw_epoch: int | None = None, beta: float = 0.9999) -> None:
        super().__init__(class_counts, drw_epoch, beta)
        self.max_m = _check_range("max_m", max_m, 0.0, math.inf, lo_open=True)
        self.s = _check_range("s", s, 0.0, math.inf, lo_open=True)
        m = self.class_counts.double().pow(-0.25)
        self.register_buffer("margins", (m * (self.max_m / m.max())).float(), persistent=False)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = self._check(logits, labels)
        margin = self.margins.to(logits.device)[labels]
        # Subtract the margin from the true-class logit only.
        adjusted = logits.scatter_add(1, labels[:, None], -margin[:, None])
        return F.cross_entropy(self.s * adjusted, labels,
                               weight=self._weight(self.weight, logits))


class LogitAdjustedCE(LongTailLoss):
    """Logit-adjusted cross-entropy (Menon et al., 2021): CE on ``logits + tau * log(prior)``.

    ``tau = 1`` is Balanced Softmax (Ren et al., 2020). The prior is the training class
    frequency ``n_c / sum(n)``. Predict with the raw logits (the adjustment is training-only).

    Args:
        class_counts: training images per class.
        tau: finite number; 1.0 by default.
    """

    def __init__(self, class_counts, tau: float = 1.0) -> None:
        super().__init__(class_counts)
        self.tau = _check_range("tau", tau, -math.inf, math.inf, lo_open=True, hi_open=True)
        log_prior = (self.class_counts.double() / self.class_counts.double().sum()).log()
        self.register_buffer("log_prior", log_prior.float(), persistent=False)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = self._check(logits, labels)
        return F.cross_entropy(logits + self.tau * self.log_prior.to(logits.device), labels)

    def extra_repr(self) -> str:
        return f"tau={self.tau}"


def _balanced_softmax(class_counts) -> LogitAdjustedCE:
    return LogitAdjustedCE(class_counts, tau=1.0)


_LOSSES = {
    "ce": CrossEntropy,
    "cb": ClassBalancedCE,
    "drw": DRWLoss,
    "ldam": LDAMLoss,
    "balanced_softmax": _balanced_softmax,
    "logit_adjust": LogitAdjustedCE,
}


def list_losses() -> list[str]:
    """Names accepted by :func:`create_loss`, sorted."""
    return sorted(_LOSSES)


def _options(factory) -> list[str]:
    return [n for n in inspect.signature(factory).parameters if n != "class_counts"]


def create_loss(name: str, class_counts, **kwargs) -> LongTailLoss:
    """Build a loss by name.

    Args:
        name: one of :func:`list_losses`: ``ce``, ``cb``, ``drw``, ``ldam``,
            ``balanced_softmax``, ``logit_adjust``.
        class_counts: training images per class (list, array or tensor of positive numbers);
            its length is the number of classes.
        **kwargs: the loss's options: ``ce``: label_smoothing; ``cb``: beta; ``drw``:
            drw_epoch, beta; ``ldam``: max_m, s, drw_epoch, beta; ``logit_adjust``: tau.

    Returns:
        A :class:`LongTailLoss`: ``loss(logits, labels) -> scalar``, ``loss.set_epoch(epoch)``.

    Raises:
        ConfigError: unknown name or option, or an option or count out of its valid range.
    """
    if name not in _LOSSES:
        raise ConfigError(f"unknown loss {name!r}; valid: {', '.join(list_losses())}")
    factory = _LOSSES[name]
    valid = _options(factory)
    bad = sorted(set(kwargs) - set(valid))
    if bad:
        raise ConfigError(f"loss {name!r} got unknown option(s) {', '.join(bad)}; "
                          f"valid options: {', '.join(valid) or '(none)'}")
    return factory(class_counts, **kwargs)
