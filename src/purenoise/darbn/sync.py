"""Synchronized BatchNorm layers for DDP (``sync_bn: true``) that keep each ``bn_mode``'s meaning.

Every BatchNorm layer reduces its batch statistics across processes: DAR-BN and auxiliary BN
reduce natural and noise rows separately, so each group is normalized with the statistics of
the global batch, as ``nn.SyncBatchNorm`` does for one group; plain BatchNorm
(``bn_mode: standard``) reduces all rows together, as ``nn.SyncBatchNorm`` does. Each process
contributes its mean and sum of squared deviations, combined with Chan's parallel formula (stable
where E[x^2] - mean^2 is not). Unlike ``nn.SyncBatchNorm``, all of them work with gloo on CPUs.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from purenoise.darbn.convert import batch_norm_base
from purenoise.darbn.layers import AuxBatchNorm2d, DARBatchNorm2d
from purenoise.errors import ConfigError

__all__ = ["SyncBatchNorm2d", "SyncDARBatchNorm2d", "SyncAuxBatchNorm2d", "convert_sync_darbn"]


class _AllGather(torch.autograd.Function):
    """``all_gather`` of one tensor per process, stacked, whose gradient reaches every process.

    Each process's loss depends on every process's contribution, so the gradient of a process's
    contribution is the sum over processes of their output gradients at its row: an all-reduce
    in backward, the rule ``nn.SyncBatchNorm`` follows. Written here because
    ``torch.distributed.nn.functional`` is deprecated (torch 2.14 warns on every use).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.stack(parts)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[dist.get_rank()]


def _global_moments(groups: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor, int]]:
    """Per-channel mean, biased variance and value count of each group over all processes.

    Each process reduces its own rows to a mean and a sum of squared deviations (M2), which are
    exchanged in float64 with one all-gather and combined with Chan's parallel formula,
    ``M2 = sum(M2_r) + sum(n_r * (mean_r - mean)^2)``, as ``nn.SyncBatchNorm`` does: stable
    whatever the ratio of mean to standard deviation (a sum of squares minus the squared mean
    loses about ``(mean/std)^2`` ulps). Gradients flow through the exchange. A group without
    rows on a process contributes a zero that is still connected to its input, so every process
    builds the same graph and runs the same collectives in backward.

    Args:
        groups: Float tensors ``(rows, C, H, W)``; rows may be 0 on some processes.

    Returns:
        ``(mean, var, count)`` per group: statistics in the groups' dtype and the global count
        of values.
    """
    stats, counts = [], []
    for g in groups:
        n = g.shape[0] * g.shape[2] * g.shape[3]
        if n > 0:
            var, mean = torch.var_mean(g, dim=(0, 2, 3), correction=0)
            m2 = var * n
        else:
            mean = m2 = g.sum((0, 2, 3))  # zeros that keep the graph of a non-empty process
        stats += [mean.double(), m2.double()]
        counts.append(n)
    c = groups[0].shape[1]
    local = torch.cat(stats + [torch.tensor(counts, dtype=torch.float64, device=groups[0].device)])
    gathered = _AllGather.apply(local)  # (world, 2 * C * groups + groups)
    n_all = gathered[:, 2 * c * len(groups):].detach()
    totals = n_all.sum(0).tolist()  # the same numbers on every process: branches stay in step
    out = []
    for i, total in enumerate(totals):
        means = gathered[:, 2 * c * i:2 * c * i + c]
        m2s = gathered[:, 2 * c * i + c:2 * c * (i + 1)]
        n_r = n_all[:, i:i + 1]
        mean = (n_r * means).sum(0) / max(total, 1.0)
        m2 = m2s.sum(0) + (n_r * (means - mean).square()).sum(0)
        dtype = groups[i].dtype
        out.append((mean.to(dtype), (m2 / max(total, 1.0)).to(dtype), int(round(total))))
    return out


def _compute_dtype(x: torch.Tensor) -> torch.Tensor:
    """``x`` in the dtype the statistics are computed in: float32, or float64 for float64 inputs."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def _normalize(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, weight: torch.Tensor | None,
               bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    scale = torch.rsqrt(var + eps)
    if weight is not None:
        scale = scale * weight
    y = (x - mean.view(1, -1, 1, 1)) * scale.view(1, -1, 1, 1)
    return y if bias is None else y + bias.view(1, -1, 1, 1)


@torch.no_grad()
def _update_running(layer: nn.BatchNorm2d, mean: torch.Tensor, var: torch.Tensor, count: int) -> None:
    """What BatchNorm does with a batch's statistics: momentum (or cumulative) average, unbiased variance."""
    if not layer.track_running_stats or layer.running_mean is None:
        return
    momentum = 0.0 if layer.momentum is None else layer.momentum
    if layer.num_batches_tracked is not None:
        layer.num_batches_tracked.add_(1)
        if layer.momentum is None:
            momentum = 1.0 / float(layer.num_batches_tracked)
    unbiased = var * (count / (count - 1))
    layer.running_mean.mul_(1 - momentum).add_(mean.to(layer.running_mean.dtype), alpha=momentum)
    layer.running_var.mul_(1 - momentum).add_(unbiased.to(layer.running_var.dtype), alpha=momentum)


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose batch statistics are those of the global batch (``bn_mode: standard``).

    What ``nn.SyncBatchNorm`` computes, natural and noise rows alike (this is the ablation in
    which noise shares the BatchNorm), also with gloo on CPUs, which ``nn.SyncBatchNorm`` does
    not support. Eval mode, or a single process, is plain BatchNorm2d; same state_dict keys.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized():
            return super().forward(x)
        self._check_input_dim(x)
        xf = _compute_dtype(x)
        ((mean, var, count),) = _global_moments([xf])
        if count == 1:
            raise ValueError(
                f"{type(self).__name__}: the global batch has one value per channel "
                f"(1 row at {x.shape[2]}x{x.shape[3]}), which has no variance; use larger batches"
            )
        if count > 0:
            _update_running(self, mean.detach(), var.detach(), count)
        return _normalize(xf, mean, var, self.weight, self.bias, self.eps).to(x.dtype)


def _synced_groups(layer: DARBatchNorm2d | AuxBatchNorm2d, x: torch.Tensor) -> tuple:
    """The checks and global statistics a synchronized routing layer needs for one input."""
    layer._check_input_dim(x)
    k = layer.n_noise
    layer._check_noise_rows(x, k)
    n_nat = x.shape[0] - k
    xf = _compute_dtype(x)
    nat, noise = xf[:n_nat], xf[n_nat:]
    if layer.noise_grad != "features":
        noise = noise.detach()
    (m0, v0, c0), (m1, v1, c1) = _global_moments([nat, noise])
    return nat, noise, (m0, v0, c0), (m1, v1, c1)


def _natural_stats(layer: DARBatchNorm2d | AuxBatchNorm2d, mean: torch.Tensor, var: torch.Tensor,
                   count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The statistics that normalize the natural rows; updates the running statistics.

    A global natural group of one value per channel (``count == 1``) has no variance: as in
    :class:`DARBatchNorm2d`, it is normalized with its own statistics (it comes out as beta) and
    leaves the running statistics as they are. The counts are global, so every process takes
    the same branch.
    """
    if count > 1:
        _update_running(layer, mean.detach(), var.detach(), count)
    elif count == 1:
        layer._warn_lone()
    return mean, var


class SyncDARBatchNorm2d(DARBatchNorm2d):
    """DAR-BN whose natural and noise statistics are each reduced over all processes.

    Each group is normalized with the statistics of its rows in the global batch, as
    ``nn.SyncBatchNorm`` does for one group; one all-gather per layer carries both groups'
    means, squared deviations and counts (see :func:`_global_moments`), and gradients flow
    through it. The same checks as :class:`DARBatchNorm2d` apply, to the global batch, and a
    global natural group of one value per channel comes out as beta, as there.

    Under DistributedDataParallel every process runs the same collectives and reaches the
    same parameters in backward whatever its own split: a process whose rows are all noise
    still normalizes an empty natural group, so in ``"classifier"`` mode gamma, beta and the
    layers before get exact zero gradients from it, and DDP's all-reduce averages them with
    the other processes' (no ``find_unused_parameters`` needed). Eval mode is plain BatchNorm.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized():
            return super().forward(x)
        nat, noise, (m0, v0, c0), (m1, v1, _) = _synced_groups(self, x)
        m0, v0 = _natural_stats(self, m0, v0, c0)
        w = None if self.weight is None else self.weight.detach()
        b = None if self.bias is None else self.bias.detach()
        out = torch.cat([_normalize(nat, m0, v0, self.weight, self.bias, self.eps),
                         _normalize(noise, m1, v1, w, b, self.eps)])
        return out.to(x.dtype)


class SyncAuxBatchNorm2d(AuxBatchNorm2d):
    """Auxiliary BN whose natural and noise statistics are each reduced over all processes.

    Natural rows: this layer's affine parameters and running statistics; noise rows: those of
    ``aux_bn``, each group with the statistics of its rows in the global batch. The auxiliary
    running statistics are left as they are when the global noise group has one value per
    channel, as :class:`AuxBatchNorm2d` leaves them. Every process reaches both branches'
    parameters in backward (zero gradients from an empty group).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized():
            return super().forward(x)
        nat, noise, (m0, v0, c0), (m1, v1, c1) = _synced_groups(self, x)
        m0, v0 = _natural_stats(self, m0, v0, c0)
        if c1 > 1:
            _update_running(self.aux_bn, m1.detach(), v1.detach(), c1)
        aux = self.aux_bn
        out = torch.cat([_normalize(nat, m0, v0, self.weight, self.bias, self.eps),
                         _normalize(noise, m1, v1, aux.weight, aux.bias, aux.eps)])
        return out.to(x.dtype)


_SYNCED = {DARBatchNorm2d: SyncDARBatchNorm2d, SyncDARBatchNorm2d: SyncDARBatchNorm2d,
           AuxBatchNorm2d: SyncAuxBatchNorm2d, SyncAuxBatchNorm2d: SyncAuxBatchNorm2d,
           nn.BatchNorm2d: SyncBatchNorm2d, SyncBatchNorm2d: SyncBatchNorm2d}


def convert_sync_darbn(model: nn.Module) -> nn.Module:
    """Make every BatchNorm2d layer of ``model`` reduce its statistics over all processes, in place.

    Each layer keeps its meaning: DAR-BN layers become :class:`SyncDARBatchNorm2d`, auxiliary-BN
    layers :class:`SyncAuxBatchNorm2d` (their noise branch is synchronized with them), and plain
    BatchNorm2d layers (``bn_mode: standard``, ERM, DRS) :class:`SyncBatchNorm2d`, in which noise
    rows share the statistics as they do without ``sync_bn``. Parameters, buffers and state_dict
    keys are kept.

    Raises:
        ConfigError: For a BatchNorm2d subclass with behaviour of its own (timm's BatchNormAct2d,
            or a DAR-BN layer converted from it), which cannot be synchronized.
    """
    aux_branches = {id(m.aux_bn) for m in model.modules() if isinstance(m, AuxBatchNorm2d)}
    layers = [(name, m) for name, m in model.named_modules()
              if isinstance(m, nn.BatchNorm2d) and id(m) not in aux_branches]
    bad = [f"{name or '<model>'} ({batch_norm_base(m).__name__})" for name, m in layers if type(m) not in _SYNCED]
    if bad:
        raise ConfigError(
            f"config key 'sync_bn' is true, but these BatchNorm layers cannot be synchronized: {', '.join(bad)}; "
            "set sync_bn: false, or use a model with plain BatchNorm2d layers"
        )
    for _, m in layers:
        m.__class__ = _SYNCED[type(m)]
    return model
