"""Multi-process training with torchrun: process groups and devices.

``torchrun --nproc_per_node=N -m purenoise train ...`` sets ``RANK``/``WORLD_SIZE``/
``LOCAL_RANK``; :func:`init_distributed` joins the group (NCCL on GPUs, gloo on CPUs). Only rank
0 writes files. The synchronized BatchNorm layers (``sync_bn: true``) are part of DAR-BN's
package (:func:`purenoise.darbn.convert_sync_darbn`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from purenoise.errors import ConfigError

__all__ = ["DistEnv", "init_distributed", "resolve_device", "any_rank", "cleanup"]


@dataclass(frozen=True)
class DistEnv:
    """Where this process stands: its rank, the world size and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def resolve_device(pref: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` means this process's local GPU."""
    if pref == "auto":
        pref = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(pref)
    except RuntimeError:
        raise ConfigError(f"config key 'device' is {pref!r}; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {pref!r} was asked for but CUDA is not available here; use device: cpu")
        if device.index is None:
            device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def init_distributed(device_pref: str = "auto", timeout_s: float = 1800) -> DistEnv:
    """Join the torchrun process group when ``WORLD_SIZE > 1``; otherwise a single process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_pref, local_rank)
    if world > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s),
                                **({"device_id": device} if device.type == "cuda" else {}))
    return DistEnv(rank, world, local_rank, device)


def any_rank(flag: bool, env: DistEnv) -> bool:
    """True when ``flag`` is true on any process (a collective: every rank must call it)."""
    if not env.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=env.device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
