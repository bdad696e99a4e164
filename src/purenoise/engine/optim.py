"""Optimizers and per-iteration learning-rate schedules of the recipes."""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

__all__ = ["create_optimizer", "lr_factor", "create_scheduler"]


def create_optimizer(model: nn.Module, cfg: Mapping[str, Any]) -> torch.optim.Optimizer:
    """SGD (momentum, weight decay, Nesterov) or Adam/AdamW from the config.

    Weight decay applies to every parameter, as in the paper's and LDAM-DRW's code.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    # On GPUs the fused kernels update every parameter in one launch, with the same arithmetic as
    # the default (foreach) SGD; the gain is measured in benchmarks/SPEED.md.
    fused = {"fused": True} if params and all(p.is_cuda and p.is_floating_point() for p in params) else {}
    name = cfg["optimizer"]
    if name == "sgd":
        return torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"],
                               weight_decay=cfg["weight_decay"], nesterov=cfg["nesterov"], **fused)
    opt_cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
    return opt_cls(params, lr=cfg["lr"], betas=tuple(cfg["betas"]), weight_decay=cfg["weight_decay"], **fused)


def lr_factor(step: int, steps_per_epoch: int, cfg: Mapping[str, Any]) -> float:
    """Multiplier of the peak lr at optimizer step ``step`` (0-based).

    Linear warm-up over ``warmup_epochs`` (per iteration, reaching the peak at the end of the
    warm-up), then ``step`` decay by ``lr_decay`` at each milestone epoch, ``cosine`` to zero at
    the last epoch, or ``constant``.
    """
    epoch = step / steps_per_epoch
    warm = cfg["warmup_epochs"]
    if warm > 0 and epoch < warm:
        return (step + 1) / (warm * steps_per_epoch)
    schedule = cfg["schedule"]
    if schedule == "step":
        passed = sum(1 for m in cfg["milestones"] if step >= m * steps_per_epoch)
        return cfg["lr_decay"] ** passed
    if schedule == "cosine":
        span = max(cfg["epochs"] - warm, 1e-12)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (epoch - warm) / span)))
    return 1.0


def create_scheduler(optimizer: torch.optim.Optimizer, steps_per_epoch: int, cfg: Mapping[str, Any]):
    """A ``LambdaLR`` stepped once per iteration; its state_dict holds the position."""
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, steps_per_epoch, cfg)
    )
