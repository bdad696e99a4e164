"""Which batches hold noise rows: OPeN marks its outputs so a model can tell it was not routed.

An OPeN batch must go through the model with DAR-BN's routing (``routed_forward`` or
``noise_routing``); ``model(images)`` runs it silently as standard BatchNorm, the paper's weakest
ablation. :class:`~purenoise.open.OPeN` marks each batch it returns with noise rows, and the model
:func:`~purenoise.darbn.convert_darbn` converted checks its input against the marks. A mark is
held by a weak reference: it goes away with the tensor, and costs nothing to a loop that routes.
"""
from __future__ import annotations

import weakref

import torch

__all__ = ["mark_noise_rows", "marked_noise_rows"]

_MARKS: weakref.WeakValueDictionary[int, torch.Tensor] = weakref.WeakValueDictionary()
_ROWS: dict[int, int] = {}


def _forget(key: int) -> None:
    _ROWS.pop(key, None)


def mark_noise_rows(batch: torch.Tensor, n_noise: int) -> None:
    """Record that the last ``n_noise`` rows of ``batch`` (this very tensor) are noise."""
    key = id(batch)
    _MARKS[key] = batch
    _ROWS[key] = int(n_noise)
    weakref.finalize(batch, _forget, key)


def marked_noise_rows(batch: object) -> int:
    """The noise rows :func:`mark_noise_rows` recorded for ``batch`` (0 for any other object)."""
    key = id(batch)
    return _ROWS.get(key, 0) if _MARKS.get(key) is batch else 0
