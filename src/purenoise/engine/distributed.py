"""Multi-process training with torchrun: process groups, devices and synchronized DAR-BN.

``torchrun --nproc_per_node=N -m purenoise train ...`` sets ``RANK``/``WORLD_SIZE``/
``LOCAL_RANK``; :func:`init_distributed` joins the group (NCCL on GPUs, gloo on CPUs). Only rank
0 writes files. With ``sync_bn: true`` every (DAR-)BN layer reduces its batch statistics across
processes, natural and noise rows separately, so each group is normalized with statistics of the
global batch as ``nn.SyncBatchNorm`` does for one group (and it also works with gloo on CPUs).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from purenoise.darbn import AuxBatchNorm2d, DARBatchNorm2d, _RoutedBatchNorm
from purenoise.errors import ConfigError

__all__ = ["DistEnv", "init_distributed", "resolve_device", "SyncDARBatchNorm2d", "convert_sync_darbn",
           "any_rank", "cleanup"]


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


class _AllReduceSum(torch.autograd.Function):
    """Sum over processes whose gradient is the sum of every process's gradient.

    Each process's loss depends on the sum through its own output, so the gradient reaching a
    process's input is the sum of all processes' output gradients: a second all-reduce, the rule
    ``nn.SyncBatchNorm`` follows. Written here because ``torch.distributed.nn.functional`` is
    deprecated (torch 2.14 warns on every use).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class SyncDARBatchNorm2d(DARBatchNorm2d):
    """DAR-BN whose natural and noise statistics are each reduced over all processes.

    One all-reduce per layer carries both groups' sums, sums of squares and counts. Gradients
    flow through the reduction (a second all-reduce in backward), as in ``nn.SyncBatchNorm``. Every
    process runs the same collectives whatever its own number of noise rows, so processes with
    different splits stay in step. Eval mode is plain BatchNorm.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized():
            return super().forward(x)
        self._check_input_dim(x)
        k = self.n_noise
        n_nat = x.shape[0] - k
        features = self.noise_grad == "features"
        xf = x.float()
        nat, noise = xf[:n_nat], xf[n_nat:]
        noise_src = noise if features else noise.detach()
        hw = x.shape[2] * x.shape[3]
        local = torch.cat([
            nat.sum((0, 2, 3)), nat.square().sum((0, 2, 3)),
            noise_src.sum((0, 2, 3)), noise_src.square().sum((0, 2, 3)),
            torch.tensor([n_nat * hw, k * hw], dtype=xf.dtype, device=x.device),
        ])
        total = _AllReduceSum.apply(local)
        c = x.shape[1]
        s_nat, q_nat, s_noise, q_noise = total[:4 * c].view(4, c)
        cnt_nat, cnt_noise = total[4 * c:].detach()  # constants: no gradient, and float() stays quiet
        # Branch on the global counts, which every process shares, so all stay in step.
        has_nat, has_noise = bool(cnt_nat > 0), bool(cnt_noise > 0)
        parts = []
        if has_nat:
            mean = s_nat / cnt_nat.clamp_min(1)
            var = (q_nat / cnt_nat.clamp_min(1) - mean.square()).clamp_min(0)
            if self.track_running_stats:
                self._update_running(mean.detach(), var.detach(), float(cnt_nat))
            parts.append(self._affine(nat, mean, var, self.weight, self.bias))
        if has_noise:
            mean = s_noise / cnt_noise.clamp_min(1)
            var = (q_noise / cnt_noise.clamp_min(1) - mean.square()).clamp_min(0)
            w = None if self.weight is None else self.weight.detach()
            b = None if self.bias is None else self.bias.detach()
            parts.append(self._affine(noise_src, mean, var, w, b))
        out = torch.cat(parts) if len(parts) > 1 else parts[0]
        return out.to(x.dtype)

    def _affine(self, x, mean, var, weight, bias):
        y = (x - mean.view(1, -1, 1, 1)) * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if weight is not None:
            y = y * weight.view(1, -1, 1, 1) + bias.view(1, -1, 1, 1)
        return y

    @torch.no_grad()
    def _update_running(self, mean: torch.Tensor, var: torch.Tensor, count: float) -> None:
        momentum = self._natural_momentum(1)
        unbiased = var * (count / max(count - 1.0, 1.0))
        self.running_mean.mul_(1 - momentum).add_(mean.to(self.running_mean.dtype), alpha=momentum)
        self.running_var.mul_(1 - momentum).add_(unbiased.to(self.running_var.dtype), alpha=momentum)


def convert_sync_darbn(model: nn.Module) -> nn.Module:
    """Make every BatchNorm2d/DAR-BN layer of ``model`` a :class:`SyncDARBatchNorm2d`, in place.

    Plain BatchNorm2d layers become synchronized layers that never see noise (ERM, DRS).
    """
    for name, m in model.named_modules():
        if isinstance(m, AuxBatchNorm2d):
            raise ConfigError("sync_bn is not available with bn_mode 'aux'; use darbn or standard")
        if isinstance(m, nn.BatchNorm2d):
            base = m._base_cls if isinstance(m, _RoutedBatchNorm) else type(m)
            if base is not nn.BatchNorm2d:
                raise ConfigError(f"sync_bn cannot synchronize layer {name} ({base.__name__})")
            noise_grad = getattr(m, "noise_grad", "classifier")
            m.__class__ = SyncDARBatchNorm2d
            m.noise_grad = noise_grad
            m.n_noise = getattr(m, "n_noise", 0)
    return model
