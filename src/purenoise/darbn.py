"""DAR-BN: Distribution-Aware Routing Batch Normalization (SPEC section 2).

In training, the rows of a batch that are pure noise are normalized with their own batch
statistics, while the natural rows get an ordinary BatchNorm that alone updates the running
statistics; both share gamma and beta, which only natural rows train. OPeN puts the noise rows
last, so every layer splits its input at one index into two views: no boolean gather or scatter.

The split point reaches the layers through :func:`noise_routing`, a context manager, so a model's
forward signature never changes:

    model = convert_darbn(torchvision.models.resnet18(num_classes=10))
    images, labels, k = open_(images, labels)
    with noise_routing(model, k):
        logits = model(images)

Gradient flow (``noise_grad``): the paper's appendix code computes the noise branch under
``torch.no_grad()``, so a noise image's loss trains only the layers after the last BN (the
classifier): ``noise_grad="classifier"`` (default). ``noise_grad="features"`` lets noise
gradients flow back through their own normalization into earlier layers; gamma and beta still
get no gradient from noise rows in either mode.

A noise sub-batch with one value per channel (one noise row at 1x1, e.g. in the last stage of a
ResNet on 32x32 images) is normalized with its own batch statistics like any other: the single
value minus its mean is 0, so the layer outputs beta for it. Only a single *natural* value per
channel is refused, since it would put an infinite variance into the running statistics.
"""
from __future__ import annotations

import contextlib
import functools
import operator
import sys
import warnings
from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from purenoise.errors import ModelError

__all__ = [
    "DARBatchNorm2d",
    "AuxBatchNorm2d",
    "convert_darbn",
    "revert_darbn",
    "noise_routing",
    "routed_forward",
    "split_blockers",
    "routed_layers",
    "batch_norm_base",
    "NOISE_GRAD_MODES",
    "BN_MODES",
    "NOISE_PASSES",
]

NOISE_GRAD_MODES = ("classifier", "features")
BN_MODES = ("darbn", "aux", "standard")
_aten = torch.ops.aten
_bn_backward = _aten.native_batch_norm_backward.default


def _check_noise_grad(noise_grad: str) -> str:
    if noise_grad not in NOISE_GRAD_MODES:
        raise ValueError(f"noise_grad must be one of {NOISE_GRAD_MODES}, got {noise_grad!r}")
    return noise_grad


@functools.lru_cache(maxsize=None)
def _stats_dtype(device_type: str, x_dtype: torch.dtype, w_dtype: torch.dtype) -> torch.dtype:
    """The dtype native batch norm uses for its saved mean/invstd (differs by device and dtypes).

    Asking the kernel once per combination is more robust than restating its rules here.
    """
    x = torch.ones(2, 1, 1, 1, dtype=x_dtype, device=device_type)
    w = torch.ones(1, dtype=w_dtype, device=device_type)
    return _aten.native_batch_norm(x, w, torch.zeros_like(w), None, None, True, 0.0, 1e-5)[1].dtype


class _DARBatchNormFn(torch.autograd.Function):
    """Both DAR-BN branches on the two slices of one output buffer, forward and backward.

    Writing each branch into a view of a single preallocated tensor avoids the concatenation
    in forward and the zero-filled full-size gradients that slicing costs in backward, so DAR-BN
    costs what one BatchNorm costs. On the small activations of small models the cost that is
    left is per call, not per element, so both passes make as few tensor calls as they can:
    the row slices backward needs are saved in forward, and torch.* bindings are used rather
    than torch.ops calls.
    """

    @staticmethod
    def forward(ctx, x, weight, bias, running_mean, running_var, n_nat, momentum, eps, features):
        y = torch.empty_like(x)
        mean0, invstd0, mean1, invstd1 = x.new_empty(
            (4, x.shape[1]), dtype=_stats_dtype(x.device.type, x.dtype, weight.dtype)).unbind(0)
        x0, x1 = x[:n_nat], x[n_nat:]
        if n_nat > 0:
            torch.native_batch_norm(x0, weight, bias, running_mean, running_var, True, momentum, eps,
                                    out=(y[:n_nat], mean0, invstd0))
        if x1.shape[0] > 0:
            torch.native_batch_norm(x1, weight, bias, None, None, True, 0.0, eps,
                                    out=(y[n_nat:], mean1, invstd1))
        if features:
            ctx.save_for_backward(x0, weight, mean0, invstd0, x1, mean1, invstd1)
        else:
            ctx.save_for_backward(x0, weight, mean0, invstd0)
        ctx.eps = eps
        return y

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y):
        saved = ctx.saved_tensors
        x0, weight, mean0, invstd0 = saved[:4]
        n = x0.shape[0]
        if n > 0:
            gx0, grad_w, grad_b = _bn_backward(grad_y[:n], x0, weight, None, None, mean0, invstd0, True,
                                               ctx.eps, [True, True, True])
        else:
            gx0, grad_w, grad_b = None, torch.zeros_like(weight), torch.zeros_like(weight)
        if len(saved) > 4:
            # Noise rows back-propagate into x only: their gamma/beta gradients are not computed.
            x1, mean1, invstd1 = saved[4:]
            gx1 = _bn_backward(grad_y[n:], x1, weight, None, None, mean1, invstd1, True, ctx.eps,
                               [True, False, False])[0]
            grad_x = gx1 if gx0 is None else torch.cat((gx0, gx1))
        elif gx0 is None:
            grad_x = torch.zeros_like(grad_y)
        else:
            grad_x = torch.empty_like(grad_y)  # each element written once: copied or zeroed
            grad_x[:n].copy_(gx0)
            grad_x[n:].zero_()
        return grad_x, grad_w, grad_b, None, None, None, None, None, None


def _noise_batch_norm(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None,
                      eps: float) -> torch.Tensor:
    """Batch norm of noise rows with their own batch statistics and no running statistics.

    The call ``F.batch_norm`` makes, without its refusal of one value per channel: that refusal
    protects running statistics, which noise rows never update, and a single value normalizes
    to 0 (the output is ``bias``), which is what the fused path gives too.
    """
    return torch.batch_norm(x, weight, bias, None, None, True, 0.0, eps, torch.backends.cudnn.enabled)


def _zero_grad_link(y: torch.Tensor, *inputs: torch.Tensor | None) -> torch.Tensor:
    """``y`` (same values) in a graph that gives each of ``inputs`` an exact zero gradient.

    Sums of empty slices are exact zeros whose gradient is zero everywhere, so the layers that
    produced ``inputs`` still take part in backward (what DistributedDataParallel expects of
    every parameter on every process) without receiving anything.
    """
    link = sum(t[:0].sum() for t in inputs if t is not None)
    return y + link.to(y.dtype)


def _noise_rows(n: int) -> torch.Tensor:
    """A tensor of ``n`` rows whose length carries the noise count into ``torch.compile`` graphs.

    Marked dynamic from 2 rows on, so the first compiled OPeN batch already gets a graph for
    every count (0 and 1 are always specialized by dynamo: at most two more graphs). Eager
    code never reads it; nor is dynamo imported for it (1-2 s) unless compiling is under way.
    """
    rows = torch.empty(n, dtype=torch.uint8)
    if n >= 2 and "torch._dynamo" in sys.modules:
        sys.modules["torch._dynamo"].maybe_mark_dynamic(rows, 0)
    return rows


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

    def _check_natural_values(self, n_nat: int, height: int, width: int) -> None:
        """Refuse natural rows that give one value per channel, as BatchNorm refuses.

        One value has no variance, and its unbiased variance (infinite) would go into the
        running statistics. ``n_nat`` counts the natural rows the statistics come from (over
        all processes for a synchronized layer).
        """
        if n_nat * height * width == 1:
            raise ValueError(
                f"{type(self).__name__}: the batch has 1 natural row at {height}x{width}, one "
                "value per channel, which has no variance; use larger batches (drop_last=True)"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k = self.n_noise
        if k == 0 or not self.training:
            return super().forward(x)
        self._check_input_dim(x)
        self._check_noise_rows(x, k)
        n_nat = x.shape[0] - k
        if not torch.compiler.is_compiling():
            self._check_natural_values(n_nat, x.shape[2], x.shape[3])
        y = self._routed(x, n_nat)
        for name in self._post_ops:
            y = getattr(self, name)(y)
        return y

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
    normalized value is 0); one natural value per channel raises ``ValueError``, as BatchNorm
    does. An all-noise batch in ``"classifier"`` mode gives gamma, beta and every earlier layer
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
        w = None if self.weight is None else self.weight.detach()
        b = None if self.bias is None else self.bias.detach()
        with torch.set_grad_enabled(features and torch.is_grad_enabled()):
            parts.append(_noise_batch_norm(x[n_nat:], w, b, self.eps))
        if len(parts) > 1:
            return torch.cat(parts)
        if n_nat == 0 and not features and not detached and torch.is_grad_enabled():
            return _zero_grad_link(parts[0], x, self.weight, self.bias)
        return parts[0]

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
    backward the zero-filled full-size gradients of both slices): about 1.3x a compiled
    BatchNorm network step on CPU, against about 1.1x for this form. Noise rows use detached
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
        noise = x[n_nat:]
        if self.noise_grad == "classifier":
            noise = noise.detach()
        if noise.shape[0] * noise.shape[2] * noise.shape[3] == 1:
            parts.append(_noise_batch_norm(noise, self.aux_bn.weight, self.aux_bn.bias, self.aux_bn.eps))
        else:
            parts.append(self.aux_bn(noise))
        return torch.cat(parts) if len(parts) > 1 else parts[0]


def _is_timm_bn_act(module: nn.Module) -> bool:
    # timm's BatchNormAct2d subclasses BatchNorm2d and applies dropout and activation after
    # normalization in its own forward; the routed path must apply them too.
    return type(module).__name__ == "BatchNormAct2d" and hasattr(module, "act") and hasattr(module, "drop")


@functools.lru_cache(maxsize=None)
def _routed_class(kind: type[_RoutedBatchNorm], base: type[nn.BatchNorm2d]) -> type[_RoutedBatchNorm]:
    """The routed layer class for a given BatchNorm class (a subclass for timm's norm+act)."""
    if base is nn.BatchNorm2d:
        return kind
    prefix = "DAR" if kind is DARBatchNorm2d else "Aux"
    cls = type(f"{prefix}{base.__name__}", (kind, base), {
        "_base_cls": base, "_post_ops": ("drop", "act"), "__module__": __name__,
    })
    globals()[cls.__name__] = cls  # lets pickle find the class by name
    return cls


def batch_norm_base(module: nn.Module) -> type:
    """The class a routing layer was converted from (``type(module)`` for any other module)."""
    return module._base_cls if isinstance(module, _RoutedBatchNorm) else type(module)



def routed_layers(model: nn.Module) -> list[nn.Module]:
    """The DAR-BN and auxiliary-BN layers of ``model`` (what :func:`noise_routing` reaches)."""
    return [m for m in model.modules() if isinstance(m, _RoutedBatchNorm)]


def _unconvertible(model: nn.Module) -> list[str]:
    bad = []
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            base = batch_norm_base(m)
            if base is not nn.BatchNorm2d and not _is_timm_bn_act(m):
                bad.append(f"{name or '<model>'} ({base.__module__}.{base.__qualname__})")
    return bad


def convert_darbn(
    model: nn.Module, noise_grad: str = "classifier", bn_mode: str = "darbn"
) -> nn.Module:
    """Turn every ``nn.BatchNorm2d`` of ``model`` into a routing layer, in place.

    Layers keep their parameter and buffer objects (an optimizer built before the conversion
    still holds the right tensors), their running statistics, device, dtype, hooks and
    state_dict keys. timm's ``BatchNormAct2d`` is supported (its dropout and activation are
    kept). Converting an already converted model switches its mode.

    Args:
        model: Any module (a torchvision or timm model, or a bare BatchNorm2d).
        noise_grad: ``"classifier"`` (default, the paper's code) or ``"features"``.
        bn_mode: ``"darbn"`` (default), ``"aux"`` (auxiliary BN for noise, adds ``aux_bn``
            parameters: build the optimizer after converting) or ``"standard"`` (noise shares
            the ordinary BN: layers are reverted to plain BatchNorm2d).

    Returns:
        The same model object.

    Raises:
        ModelError: When a BatchNorm2d subclass with custom behaviour cannot be converted
            safely (its name and class are listed).
    """
    _check_noise_grad(noise_grad)
    if bn_mode not in BN_MODES:
        raise ValueError(f"bn_mode must be one of {BN_MODES}, got {bn_mode!r}")
    if bn_mode == "standard":
        return revert_darbn(model)
    bad = _unconvertible(model)
    if bad:
        raise ModelError(
            "convert_darbn cannot convert these BatchNorm2d subclasses, whose forward does more "
            f"than batch norm: {', '.join(bad)}. Replace them with nn.BatchNorm2d (plus the extra "
            "operation as its own module) before converting."
        )
    others = [
        name for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, nn.BatchNorm2d)
    ]
    if others:
        warnings.warn(
            f"convert_darbn converts BatchNorm2d only; these normalization layers will see noise "
            f"rows mixed with natural rows: {', '.join(others)}",
            stacklevel=2,
        )
    kind = DARBatchNorm2d if bn_mode == "darbn" else AuxBatchNorm2d
    # The noise branches of auxiliary layers are plain BatchNorms that must stay plain.
    aux_branches = {id(m.aux_bn) for m in model.modules() if isinstance(m, AuxBatchNorm2d)}
    layers = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and id(m) not in aux_branches]
    for m in layers:
        m.__class__ = _routed_class(kind, batch_norm_base(m))
        m.noise_grad = noise_grad
        m.n_noise = 0
        if kind is AuxBatchNorm2d and "aux_bn" not in m._modules:
            # The noise branch starts as a copy of the layer, then trains on its own.
            ref = m.weight if m.weight is not None else m.running_mean
            aux = nn.BatchNorm2d(
                m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats,
                device=None if ref is None else ref.device, dtype=None if ref is None else ref.dtype,
            )
            aux.load_state_dict(
                {k: v for k, v in m.state_dict().items() if "." not in k}, strict=False
            )
            m.aux_bn = aux.train(m.training)
        elif kind is DARBatchNorm2d and "aux_bn" in m._modules:
            del m._modules["aux_bn"]
    return model


def revert_darbn(model: nn.Module) -> nn.Module:
    """Turn routing layers back into the plain BatchNorm classes they came from, in place.

    The auxiliary branch of ``AuxBatchNorm2d`` is dropped; weights and running statistics of
    the natural branch are kept, so the state_dict matches the original model's exactly.
    """
    for m in model.modules():
        if isinstance(m, _RoutedBatchNorm):
            base = m._base_cls
            m._modules.pop("aux_bn", None)
            for attr in ("noise_grad", "_n_noise", "_noise_rows", "_noise_only"):
                m.__dict__.pop(attr, None)
            m.__class__ = base
    return model


NOISE_PASSES = ("auto", "split", "joint")


def split_blockers(model: nn.Module) -> list[str]:
    """Why the noise rows of a batch cannot take their own forward pass through ``model``.

    :func:`routed_forward` may forward natural and noise rows separately only where that gives
    exactly what one routed pass gives. An empty list means it can.
    """
    reasons = []
    if isinstance(getattr(model, "_orig_mod", model), nn.parallel.DistributedDataParallel):
        reasons.append("it is wrapped in DistributedDataParallel, which expects one forward per backward")
    layers = routed_layers(model)
    if not layers:
        reasons.append("it has no DAR-BN or auxiliary-BN layers (bn_mode standard: noise shares the "
                       "BatchNorm statistics of natural rows)")
    if any(m.noise_grad == "features" for m in layers):
        reasons.append("noise_grad='features' back-propagates noise through the whole network, so a "
                       "separate pass saves nothing")
    aux = {id(m.aux_bn) for m in layers if isinstance(m, AuxBatchNorm2d)}
    if aux:
        # One pass gives the noise branches before the last one zero gradients; two passes give
        # them none, and optimizers treat the two differently (weight decay, momentum).
        reasons.append("it has auxiliary-BN layers (bn_mode aux), whose early noise branches would get "
                       "no gradient instead of a zero one")
    mixed = [name for name, m in model.named_modules()
             if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training
             and not isinstance(m, _RoutedBatchNorm) and id(m) not in aux]
    if mixed:
        reasons.append(f"these normalization layers see natural and noise rows together: {', '.join(mixed)}")
    # Any other layer that updates running statistics in training (InstanceNorm with
    # track_running_stats=True, custom norms) would update them once per pass: twice a step.
    tracking = [name for name, m in model.named_modules()
                if m.training and _keeps_running_stats(m) and not isinstance(m, _RoutedBatchNorm)
                and id(m) not in aux and not isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if tracking:
        reasons.append("these layers keep running statistics, which two passes would update twice a step: "
                       + ", ".join(tracking))
    return reasons


def _keeps_running_stats(module: nn.Module) -> bool:
    """Whether ``module`` itself updates running statistics in training mode."""
    if getattr(module, "track_running_stats", False) is True:
        return True
    return any(name.startswith("running_") and buf is not None
               for name, buf in module.named_buffers(recurse=False))


def routed_forward(model: nn.Module, images: torch.Tensor, n_noise: int, *,
                   noise_pass: str = "auto", blockers: list[str] | None = None) -> torch.Tensor:
    """The model's output for a batch whose last ``n_noise`` rows are noise (OPeN's output).

    ``"joint"`` runs one forward under :func:`noise_routing`. ``"split"`` runs the natural rows,
    then the noise rows as an all-noise batch, and concatenates the outputs: the same values,
    running statistics and gradients (to float rounding; in a model with dropout the two passes
    may draw other masks, from the same distribution), for less work. In ``"classifier"``
    mode noise rows train only the layers after the last DAR-BN, so the joint pass's backward
    spends a quarter of its work on zeros, which the split pass never computes, and the noise
    rows' activations are freed as soon as their pass ends (``benchmarks/SPEED.md``).
    ``"auto"`` splits where :func:`split_blockers` finds no reason not to, except for a
    ``torch.compile``'d model: its single-pass graph is the configuration measured on GPUs, so
    ``"auto"`` keeps it (ask for ``"split"`` to compile the two passes instead).

    Args:
        model: A model converted with :func:`convert_darbn` (or not, for ``"joint"``).
        images: The batch, natural rows first.
        n_noise: Number of noise rows at the end of ``images``.
        noise_pass: ``"auto"``, ``"split"`` or ``"joint"``.
        blockers: ``split_blockers(model)``, when the caller has it: it depends only on the
            model's layers and modes, so a training loop computes it once, not every step.

    Raises:
        ValueError: For an unknown ``noise_pass``, or ``"split"`` where it would not be exact.
    """
    if noise_pass not in NOISE_PASSES:
        raise ValueError(f"noise_pass must be one of {NOISE_PASSES}, got {noise_pass!r}")
    n_nat = images.shape[0] - n_noise
    split = noise_pass == "split"
    # Nothing to split without noise rows; one natural row is left to the joint pass, whose
    # DAR-BN layers explain the error it gives. A compiled model keeps one pass unless asked.
    if n_noise > 0 and n_nat > 1 and (split or (noise_pass == "auto" and not hasattr(model, "_orig_mod"))):
        if blockers is None:
            blockers = split_blockers(model)
        if split and blockers:
            raise ValueError("noise_pass='split' would change what this model computes: " + "; ".join(blockers))
        split = not blockers
    else:
        split = False
    if not split:
        with noise_routing(model, n_noise):
            return model(images)
    with noise_routing(model, 0):
        natural = model(images[:n_nat])
    with _routing(model, n_noise, noise_only=True):
        noise = model(images[n_nat:])
    if not isinstance(natural, torch.Tensor):
        raise TypeError(
            f"noise_pass='split' joins the outputs of two passes, but {type(model).__name__} returned "
            f"{type(natural).__name__}, not a tensor; use noise_pass='joint' for this model"
        )
    return torch.cat((natural, noise))


@contextlib.contextmanager
def noise_routing(model: nn.Module, n_noise: int) -> Iterator[nn.Module]:
    """Within the block, routing layers of ``model`` treat the last ``n_noise`` rows as noise.

    Args:
        model: A model converted with :func:`convert_darbn` (plain models are left alone, so
            the same loop serves the standard-BN ablation and ERM).
        n_noise: Number of noise rows at the end of each batch (OPeN's third output).

    Yields:
        The model. The previous setting is restored on exit, also after an exception. Run the
        whole forward inside the block; backward may run after it.
    """
    with _routing(model, n_noise) as routed:
        yield routed


@contextlib.contextmanager
def _routing(model: nn.Module, n_noise: int, noise_only: bool = False) -> Iterator[nn.Module]:
    """:func:`noise_routing`, also telling the layers whether this is a split's noise-only pass."""
    try:
        n = operator.index(n_noise)
    except TypeError:
        raise TypeError(f"n_noise must be an int, got {type(n_noise).__name__}") from None
    if n < 0:
        raise ValueError(f"n_noise must be >= 0, got {n}")
    layers = routed_layers(model)
    previous = [(m.n_noise, m.__dict__.get("_noise_rows"), m.noise_only_pass) for m in layers]
    rows = _noise_rows(n)  # one tensor for all layers: one symbolic size in a compiled graph
    for m in layers:
        m._set_noise(n, rows, noise_only)
    try:
        yield model
    finally:
        for m, (p, p_rows, p_only) in zip(layers, previous):
            m._set_noise(p, p_rows if p_rows is not None else _noise_rows(p), p_only)
