"""The vocabulary of training schemes, and what a scheme implies in each epoch. Torch-free.

A **scheme** is what the config key ``method`` names: how a run samples its batches and whether
it trains on pure noise. Every module that needs one of these lists or rules imports it from
here, so that config validation, the trainer, the samplers, DAR-BN and the reports cannot drift
apart.

========== ============================================ ==============================
scheme     sampling                                     pure noise
========== ============================================ ==============================
erm        instance throughout                          never
rs         class-balanced throughout                    never
drs        instance, class-balanced from defer_epoch    never
open       instance, class-balanced from defer_epoch    OPeN, from defer_epoch
noise_aug  instance throughout                          a fixed share per batch, always
========== ============================================ ==============================

"Class-balanced" is the config's ``sampling`` choice among :data:`CLASS_AWARE_SAMPLINGS`
(``balanced``: every class equally likely, the paper's; ``sqrt``: proportional to the square root
of the class size).
"""
from __future__ import annotations

from purenoise.errors import ConfigError

__all__ = [
    "SCHEMES",
    "DEFERRED_SCHEMES",
    "NOISE_SCHEMES",
    "SAMPLING_KINDS",
    "CLASS_AWARE_SAMPLINGS",
    "BN_MODES",
    "NOISE_GRAD_MODES",
    "NOISE_PASSES",
    "sampling_for_epoch",
    "noise_for_epoch",
]

SCHEMES = ("erm", "rs", "drs", "open", "noise_aug")
#: Schemes that train like ERM until ``defer_epoch``, then switch (they can branch from ERM there).
DEFERRED_SCHEMES = ("drs", "open")
#: Schemes that train on pure-noise images (and so route BatchNorm by origin).
NOISE_SCHEMES = ("open", "noise_aug")
#: How a sampler draws an epoch: one pass in random order, or class-aware with replacement.
SAMPLING_KINDS = ("instance", "balanced", "sqrt")
CLASS_AWARE_SAMPLINGS = ("balanced", "sqrt")
#: How BatchNorm treats noise rows: DAR-BN, an auxiliary BN, or the ordinary shared BN.
BN_MODES = ("darbn", "aux", "standard")
#: Where the gradients of noise rows reach: the classifier only (the paper's code), or the features.
NOISE_GRAD_MODES = ("classifier", "features")
#: How an OPeN batch is forwarded: noise rows in their own pass where exact, always, or never.
NOISE_PASSES = ("auto", "split", "joint")


def _check(scheme: str, epoch: int, defer_epoch: int | None) -> int:
    if scheme not in SCHEMES:
        raise ConfigError(f"unknown training scheme {scheme!r}; choose one of {list(SCHEMES)}")
    for name, v in (("epoch", epoch), ("defer_epoch", defer_epoch)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise ConfigError(f"{name} must be a non-negative integer, got {v!r}")
    return defer_epoch or 0


def sampling_for_epoch(scheme: str, epoch: int, defer_epoch: int | None = None,
                       class_aware: str = "balanced") -> str:
    """How to sample in ``epoch`` (0-based) under a training scheme.

    Args:
        scheme: One of :data:`SCHEMES`.
        epoch: The epoch, from 0.
        defer_epoch: Where ``drs`` and ``open`` switch (160 in the CIFAR recipe); ``None`` means 0.
        class_aware: The class-aware sampling to switch to, one of :data:`CLASS_AWARE_SAMPLINGS`.

    Returns:
        One of :data:`SAMPLING_KINDS`: ``"instance"`` for ``erm`` and ``noise_aug``, and for
        ``drs``/``open`` before ``defer_epoch``; ``class_aware`` for ``rs``, and for
        ``drs``/``open`` from ``defer_epoch`` on.
    """
    defer = _check(scheme, epoch, defer_epoch)
    if class_aware not in CLASS_AWARE_SAMPLINGS:
        raise ConfigError(f"unknown class-aware sampling {class_aware!r}; choose one of {list(CLASS_AWARE_SAMPLINGS)}")
    if scheme in ("erm", "noise_aug"):
        return "instance"
    if scheme == "rs":
        return class_aware
    return "instance" if epoch < defer else class_aware


def noise_for_epoch(scheme: str, epoch: int, defer_epoch: int | None = None) -> bool:
    """Whether pure-noise images are used in ``epoch``: ``open`` from ``defer_epoch`` on, ``noise_aug`` always."""
    defer = _check(scheme, epoch, defer_epoch)
    if scheme == "noise_aug":
        return True
    return scheme == "open" and epoch >= defer
