"""Optimizers and per-iteration learning-rate schedules of the recipes.

The factories take explicit keyword arguments; :func:`optimizer_kwargs` and
:func:`schedule_kwargs` turn a run's :class:`~purenoise.settings.Settings` into them.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from purenoise.settings import Settings

__all__ = ["create_optimizer", "optimizer_kwargs", "lr_factor", "create_scheduler", "schedule_kwargs"]


def optimizer_kwargs(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of :func:`create_optimizer` for a run's settings."""
    return {"name": settings.optimizer, "lr": settings.lr, "momentum": settings.momentum,
            "nesterov": settings.nesterov, "weight_decay": settings.weight_decay, "betas": settings.betas}


def create_optimizer(model_or_params: nn.Module | Iterable[nn.Parameter], *, name: str, lr: float,
                     momentum: float, nesterov: bool, weight_decay: float,
                     betas: Sequence[float]) -> torch.optim.Optimizer:
    """SGD (``name="sgd"``: momentum, weight decay, Nesterov) or ``"adam"``/``"adamw"`` (betas).

    Every parameter that requires a gradient is optimized, and weight decay applies to all of
    them, as in the paper's and LDAM-DRW's code. ``momentum`` and ``nesterov`` apply to SGD only,
    ``betas`` to Adam and AdamW only.
    """
    source = model_or_params.parameters() if isinstance(model_or_params, nn.Module) else model_or_params
    params = [p for p in source if p.requires_grad]
    # On GPUs the fused kernels update every parameter in one launch, with the same arithmetic as
    # the default (foreach) implementation (see benchmarks/SPEED.md).
    fused = {"fused": True} if params and all(p.is_cuda and p.is_floating_point() for p in params) else {}
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov,
                               **fused)
    if name not in ("adam", "adamw"):
        raise ValueError(f"unknown optimizer {name!r}; choose sgd, adam or adamw")
    opt_cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return opt_cls(params, lr=lr, betas=tuple(betas), weight_decay=weight_decay, **fused)


def schedule_kwargs(settings: Settings) -> dict[str, Any]:
    """The keyword arguments of :func:`create_scheduler` and :func:`lr_factor` for a run's settings."""
    return {"schedule": settings.schedule, "warmup_epochs": settings.warmup_epochs,
            "milestones": settings.milestones, "lr_decay": settings.lr_decay, "epochs": settings.epochs}


def lr_factor(step: int, steps_per_epoch: int, *, schedule: str, warmup_epochs: float, milestones: Sequence[int],
              lr_decay: float, epochs: int) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based).

    Linear warm-up over ``warmup_epochs`` (per iteration, reaching the peak at the end of the
    warm-up), then ``schedule``: ``"step"`` multiplies by ``lr_decay`` at each of the
    ``milestones`` (epochs), ``"cosine"`` decays to zero at the last of ``epochs``, ``"constant"``
    keeps the peak.
    """
    epoch = step / steps_per_epoch
    warm = warmup_epochs
    if warm > 0 and epoch < warm:
        return (step + 1) / (warm * steps_per_epoch)
    if schedule == "step":
        passed = sum(1 for m in milestones if step >= m * steps_per_epoch)
        return lr_decay ** passed
    if schedule == "cosine":
        span = max(epochs - warm, 1e-12)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (epoch - warm) / span)))
    return 1.0


def create_scheduler(optimizer: torch.optim.Optimizer, steps_per_epoch: int, *, schedule: str,
                     warmup_epochs: float, milestones: Sequence[int], lr_decay: float,
                     epochs: int) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` stepped once per iteration (see :func:`lr_factor`); its state_dict holds the position."""
    shape = {"schedule": schedule, "warmup_epochs": warmup_epochs, "milestones": list(milestones),
             "lr_decay": lr_decay, "epochs": epochs}
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps_per_epoch, **shape)
    )
