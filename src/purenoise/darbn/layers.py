"""The DAR-BN layers: :class:`DARBatchNorm2d` and the auxiliary-BN ablation :class:`AuxBatchNorm2d`.

In training, the rows of a batch that are pure noise are normalized with their own batch
statistics, while the natural rows get an ordinary BatchNorm that alone updates the running
statistics; both share gamma and beta, which only natural rows train (docs/method.md, section 2).
OPeN puts the noise rows last, so every layer splits its input at one index into two views: no
boolean gather or scatter. The split point reaches the layers through
:func:`purenoise.darbn.noise_routing`, so a model's forward signature never changes.

Gradient flow (``noise_grad``): the paper's appendix code computes the noise branch under
``torch.no_grad()``, so a noise image's loss trains only the layers after the last BN (the
classifier): ``noise_grad="classifier"`` (default). ``noise_grad="features"`` lets noise
gradients flow back through their own normalization into earlier layers; gamma and beta still
get no gradient from noise rows in either mode.

A noise sub-batch with one value per channel (one noise row at 1x1, e.g. in the last stage of a
ResNet on 32x32 images) is normalized with its own batch statistics like any other: the single
value minus its mean is 0, so the layer outputs beta for it. A *natural* group with one value per
channel (OPeN can leave a small batch a single natural row; BatchNorm refuses it) is treated the
same way: normalized with its own statistics, it comes out as beta, and it leaves the running
statistics as they are, since one value has no variance to record (a warning says so, once per
layer). The test is on shapes, so eager and compiled code take the same path (dynamo guards on
it). The running statistics are not used for that row instead: at 1x1 maps they lag behind the
activations of a network in early training, and normalizing with them can make a small-batch run
diverge, where normalizing with the row's own statistics keeps it training.
"""
from __future__ import annotations

from typing import Any

import warnings

import torch
import torch.nn.functional as F
from torch import nn

from purenoise.darbn.functional import (
    _check_noise_grad,
    _DARBatchNormFn,
    _noise_batch_norm,
    _noise_rows,
    _zero_grad_link,
)

__all__ = ["DARBatchNorm2d", "AuxBatchNorm2d"]


class _RoutedBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d that treats the last ``n_noise`` rows of a training batch as noise.

    ``n_noise`` is set by :func:`noise_routing`; with ``n_noise == 0`` or in eval mode the layer
    is exactly the BatchNorm2d it derives from. Subclasses implement :meth:`_routed`.
    """

    # The BatchNorm class this layer was converted from, restored by revert_darbn.
    _base_cls: type[nn.BatchNorm2d] = nn.BatchNorm2d
    # Submodules applied after normalization by the base class's own forward (timm's
    # BatchNormAct2d applies drop and act), repeated on the routed path.
    _post_ops: tuple[str, ...] = ()
    noise_grad: str = "classifier"

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        noise_grad: str = "classifier",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.noise_grad = _check_noise_grad(noise_grad)
        self.n_noise = 0

    @property
    def noise_only_pass(self) -> bool:
        """Whether this forward is the noise-only pass of :func:`routed_forward`'s split.

        In that pass an all-noise batch in ``"classifier"`` mode leaves the layers before this
        one out of backward entirely (the natural pass already gave them their gradients); in a
        single pass they get exact zero gradients from an all-noise batch instead.
        """
        return self.__dict__.get("_noise_only", False)

    @property
    def n_noise(self) -> int:
        """Number of noise rows at the end of the current training batch (0: none).

        Under ``torch.compile`` this is the length of a small tensor set alongside the int
        (:func:`_noise_rows`), so dynamo sees a symbolic size instead of a Python int: an int
        attribute of a module is specialized, one graph per value, and the noise count of OPeN
        changes every batch.
        """
        if torch.compiler.is_compiling():
            rows = self.__dict__.get("_noise_rows")
            return 0 if rows is None else rows.shape[0]
        return self.__dict__.get("_n_noise", 0)

    @n_noise.setter
    def n_noise(self, value: int) -> None:
        self._set_noise(int(value), _noise_rows(int(value)))

    def _set_noise(self, n: int, rows: torch.Tensor, noise_only: bool = False) -> None:
        self.__dict__["_n_noise"] = n
        self.__dict__["_noise_rows"] = rows
        self.__dict__["_noise_only"] = noise_only

    def _check_noise_rows(self, x: torch.Tensor, k: int) -> None:
        """Refuse a noise count larger than the batch this layer sees."""
        if k > x.shape[0]:
            raise ValueError(
                f"noise_routing says {k} noise rows but this batch has {x.shape[0]} rows; "
                "pass the n_noise that OPeN returned for this batch"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.n_noise
        if not self.training:
            return super().forward(x)
        self._check_input_dim(x)
        n_nat = x.shape[0] - k
        # A shape test: static (or guarded) under torch.compile, so eager and compiled code agree.
        lone = n_nat * x.shape[2] * x.shape[3] == 1
        if k == 0 and not lone:
            return super().forward(x)
        self._check_noise_rows(x, k)
        y = self._routed_lone(x, n_nat) if lone else self._routed(x, n_nat)
        for name in self._post_ops:
            y = getattr(self, name)(y)
        return y

    def _routed_lone(self, x: torch.Tensor, n_nat: int) -> torch.Tensor:
        """The batch when its natural rows give one value per channel (one row at 1x1).

        One value has no variance: BatchNorm refuses it, and its unbiased variance (infinite,
        or 0 where the refusal is skipped) would spoil the running statistics. The natural row
        is normalized with its own statistics (the value minus itself: 0, so the output is beta,
        which trains) and the running statistics and ``num_batches_tracked`` are left as they
        are; the noise rows are normalized as usual.
        """
        self._warn_lone()
        natural = _noise_batch_norm(x[:n_nat], self.weight, self.bias, self.eps)
        if n_nat == x.shape[0]:
            return natural
        return torch.cat((natural, self._noise_branch(x[n_nat:])))

    def _warn_lone(self) -> None:
        """Say once per layer that a group of one value per channel was left out of the statistics.

        Not under torch.compile, where a warning would break the graph; the numbers are the same.
        """
        if torch.compiler.is_compiling() or self.__dict__.get("_warned_lone", False):
            return
        self.__dict__["_warned_lone"] = True
        warnings.warn(
            f"{type(self).__name__}: a batch had one natural row at a 1x1 map, "
            "one value per channel, which BatchNorm cannot normalize; it came out as beta and left "
            "the running statistics unchanged. Larger batches, or fewer noise rows (OPeN's delta), "
            "make this rarer.",
            stacklevel=3,
        )

    def _noise_branch(self, x: torch.Tensor) -> torch.Tensor:
        """The noise rows ``x`` normalized (all rows of ``x`` are noise)."""
        raise NotImplementedError

    def _natural_momentum(self, n_nat: int) -> float:
        """Momentum for the natural rows, advancing num_batches_tracked as BatchNorm does."""
        momentum = 0.0 if self.momentum is None else self.momentum
        if n_nat > 0 and self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        return momentum

    def _natural_bn(self, x: torch.Tensor, momentum: float) -> torch.Tensor:
        track = self.track_running_stats
        return F.batch_norm(
            x, self.running_mean if track else None, self.running_var if track else None,
            self.weight, self.bias, True, momentum, self.eps,
        )

    def _routed(self, x: torch.Tensor, n_nat: int) -> torch.Tensor:
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, noise_grad={self.noise_grad}"


class DARBatchNorm2d(_RoutedBatchNorm):
    """Distribution-Aware Routing BatchNorm: a drop-in for ``nn.BatchNorm2d``.

    Same parameters, buffers and state_dict keys as ``nn.BatchNorm2d``. In training, inside
    ``noise_routing(model, k)``, the last ``k`` rows of the input are noise images:

    - natural rows: ordinary batch norm with their own batch statistics; only they update the
      running mean and variance;
    - noise rows: normalized with their own per-channel batch mean and biased variance (same
      ``eps``), then scaled and shifted by the same gamma and beta, which they do not train.

    Outputs keep the row order. In eval mode, or with ``k == 0``, the layer is exactly
    ``nn.BatchNorm2d``. Noise rows that give one value per channel come out as beta (their
    normalized value is 0); so does one natural value per channel (also a training batch of one
    row at 1x1 without noise), which leaves the running statistics unchanged, where BatchNorm
    raises ``ValueError``. An all-noise batch in ``"classifier"`` mode gives gamma, beta and every earlier layer
    exact zero gradients, so all parameters take part in backward as they do for a mixed batch
    (DistributedDataParallel needs that on a process whose share of the batch is all noise);
    only the noise-only pass of :func:`routed_forward`'s split leaves them out of backward.

    Args:
        num_features: Number of channels.
        eps: Added to the variance for stability.
        momentum: Running-statistics momentum (``None``: cumulative average).
        affine: Learnable gamma and beta.
        track_running_stats: Keep running statistics for eval mode.
        noise_grad: ``"classifier"`` (the paper's appendix code: noise rows pass no gradient
            back through this layer) or ``"features"`` (noise rows back-propagate through their
            own normalization; gamma and beta still get no gradient from them).
    """

    def _routed(self, x: torch.Tensor, n_nat: int) -> torch.Tensor:
        momentum = self._natural_momentum(n_nat)
        features = self.noise_grad == "features"
        # The noise-only pass of routed_forward's split has no gradient path through this layer
        # in "classifier" mode: the view path gives a tensor without history, so the backward
        # pass never visits the layers before it. In a single pass an all-noise batch keeps the
        # path, with zero gradients (the fused backward gives zeros for it).
        detached = n_nat == 0 and not features and self.noise_only_pass
        if not detached and self._fast_path_ok(x):
            track = self.track_running_stats
            return _DARBatchNormFn.apply(
                x, self.weight, self.bias, self.running_mean if track else None,
                self.running_var if track else None, n_nat, momentum, self.eps, features,
            )
        if torch.compiler.is_compiling() and n_nat > 0 and self.weight is not None:
            return _compiled_routed(self, x, n_nat, momentum, features)
        # Reference path on views (for layouts or options the fused path does not cover).
        parts = [self._natural_bn(x[:n_nat], momentum)] if n_nat > 0 else []
        parts.append(self._noise_branch(x[n_nat:]))
        if len(parts) > 1:
            return torch.cat(parts)
        if n_nat == 0 and not features and not detached and torch.is_grad_enabled():
            return _zero_grad_link(parts[0], x, self.weight, self.bias)
        return parts[0]

    def _noise_branch(self, x: torch.Tensor) -> torch.Tensor:
        """Noise rows with their own batch statistics and detached gamma and beta."""
        w = None if self.weight is None else self.weight.detach()
        b = None if self.bias is None else self.bias.detach()
        with torch.set_grad_enabled(self.noise_grad == "features" and torch.is_grad_enabled()):
            return _noise_batch_norm(x, w, b, self.eps)

    def _fast_path_ok(self, x: torch.Tensor) -> bool:
        if torch.compiler.is_compiling() or self.weight is None:
            return False
        if not torch.is_grad_enabled():
            return False  # nothing to save for backward; the view path is as fast
        return x.is_contiguous() or x.is_contiguous(memory_format=torch.channels_last)


def _compiled_routed(layer: _RoutedBatchNorm, x: torch.Tensor, n_nat: int, momentum: float,
                     features: bool) -> torch.Tensor:
    """DAR-BN in the form torch.compile turns into BatchNorm-sized kernels.

    Each group's statistics come from a view of its rows; then one expression normalizes the
    whole batch with per-row coefficients (``where(row is noise, ...)``). The reference path's
    two batch norms and concatenation compile to extra copies (the concatenation, and in
    backward the zero-filled full-size gradients of both slices), which this form avoids
    (see benchmarks/SPEED.md). Noise rows use detached
    gamma and beta, and in ``"classifier"`` mode a detached input, so they train nothing
    before the classifier. ``n_nat`` may be symbolic (see :func:`_noise_rows`).
    """
    b, c = x.shape[0], x.shape[1]
    xf = x.float()
    var_nat, mean_nat = torch.var_mean(xf[:n_nat], dim=(0, 2, 3), correction=0)
    src = xf if features else xf.detach()
    var_no, mean_no = torch.var_mean(src[n_nat:], dim=(0, 2, 3), correction=0)
    if layer.track_running_stats and layer.running_mean is not None:
        count = n_nat * x.shape[2] * x.shape[3]
        with torch.no_grad():  # what F.batch_norm does: the unbiased variance goes to running_var
            layer.running_mean.mul_(1 - momentum).add_(mean_nat.to(layer.running_mean.dtype), alpha=momentum)
            unbiased = var_nat * (count / (count - 1)) if count > 1 else var_nat
            layer.running_var.mul_(1 - momentum).add_(unbiased.to(layer.running_var.dtype), alpha=momentum)
    weight, bias = layer.weight.float(), layer.bias.float()
    scale_nat = torch.rsqrt(var_nat + layer.eps) * weight
    shift_nat = bias - mean_nat * scale_nat
    scale_no = torch.rsqrt(var_no + layer.eps) * weight.detach()
    shift_no = bias.detach() - mean_no * scale_no
    noise = (torch.arange(b, device=x.device) >= n_nat).view(b, 1, 1, 1)
    y = torch.where(noise, src * scale_no.view(1, c, 1, 1) + shift_no.view(1, c, 1, 1),
                    xf * scale_nat.view(1, c, 1, 1) + shift_nat.view(1, c, 1, 1))
    return y.to(x.dtype)


class AuxBatchNorm2d(_RoutedBatchNorm):
    """Auxiliary BatchNorm (AdvProp-style ablation of the paper, Table 4).

    Natural rows use this layer's own statistics and affine parameters; noise rows go through a
    second BatchNorm (``aux_bn``) with its own running statistics and its own gamma and beta,
    which noise rows do train. ``noise_grad`` decides, as for DAR-BN, whether noise gradients
    also flow back into earlier layers (``"features"``) or stop at this layer's input
    (``"classifier"``). Eval mode uses the main (natural) branch only, so ``revert_darbn``
    yields the plain BatchNorm2d a deployed model needs. A noise sub-batch with one value per
    channel comes out as the auxiliary beta (its normalized value is 0), as in DAR-BN, and
    leaves the auxiliary running statistics unchanged (one value has no variance to record).
    """

    def __init__(self, num_features: int, *args: Any, **kwargs: Any) -> None:
        super().__init__(num_features, *args, **kwargs)
        ref = self.weight if self.weight is not None else self.running_mean
        self.aux_bn = nn.BatchNorm2d(
            num_features, self.eps, self.momentum, self.affine, self.track_running_stats,
            device=None if ref is None else ref.device, dtype=None if ref is None else ref.dtype,
        )

    def _routed(self, x: torch.Tensor, n_nat: int) -> torch.Tensor:
        momentum = self._natural_momentum(n_nat)
        parts = [self._natural_bn(x[:n_nat], momentum)] if n_nat > 0 else []
        parts.append(self._noise_branch(x[n_nat:]))
        return torch.cat(parts) if len(parts) > 1 else parts[0]

    def _noise_branch(self, x: torch.Tensor) -> torch.Tensor:
        """Noise rows through the auxiliary BatchNorm (one value per channel: its beta)."""
        if self.noise_grad == "classifier":
            x = x.detach()
        if x.shape[0] * x.shape[2] * x.shape[3] == 1:
            return _noise_batch_norm(x, self.aux_bn.weight, self.aux_bn.bias, self.aux_bn.eps)
        return self.aux_bn(x)
