"""DAR-BN's arithmetic: the fused autograd function, the noise branch, and their small helpers.

:class:`_DARBatchNormFn` runs both branches of a DAR-BN layer in one autograd node: the natural
rows through ATen's native batch norm (which updates the running statistics), the noise rows
with their own batch statistics. Its backward is the natural branch's native backward plus, in
``noise_grad="features"`` mode, the noise branch's; gamma and beta get gradients from natural rows
only. With ``create_graph=True`` the backward is a graph of differentiable ops instead, so the
layer can be differentiated twice (gradient penalties, MAML). The layers in
:mod:`purenoise.darbn.layers` choose between it and plain views.
"""
from __future__ import annotations

import functools
import sys

import torch

from purenoise.schemes import NOISE_GRAD_MODES

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
        # x and bias are kept for a differentiable backward (create_graph=True) only: x0 and x1,
        # views made in forward, are constants to a second differentiation.
        if features:
            ctx.save_for_backward(x0, weight, mean0, invstd0, x, bias, x1, mean1, invstd1)
        else:
            ctx.save_for_backward(x0, weight, mean0, invstd0, x, bias)
        ctx.eps = eps
        return y

    @staticmethod
    def backward(ctx, grad_y):
        saved = ctx.saved_tensors
        if torch.is_grad_enabled():  # create_graph=True: gradients that can be differentiated again
            return _differentiable_backward(grad_y, saved, ctx.eps)
        x0, weight, mean0, invstd0 = saved[:4]
        n = x0.shape[0]
        if n > 0:
            gx0, grad_w, grad_b = _bn_backward(grad_y[:n], x0, weight, None, None, mean0, invstd0, True,
                                               ctx.eps, [True, True, True])
        else:
            gx0, grad_w, grad_b = None, torch.zeros_like(weight), torch.zeros_like(weight)
        if len(saved) > 6 and saved[6].shape[0] > 0:
            # Noise rows back-propagate into x only: their gamma/beta gradients are not computed.
            x1, mean1, invstd1 = saved[6:]
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


def _differentiable_backward(grad_y: torch.Tensor, saved: tuple[torch.Tensor, ...], eps: float) -> tuple:
    """:class:`_DARBatchNormFn`'s gradients as a graph of differentiable ops, for ``create_graph=True``.

    Gradient penalties and MAML-style code differentiate gradients again. The fused backward
    writes into buffers that autograd cannot trace, so this one recomputes the layer's
    normalization from the saved input with batch norms autograd can differentiate twice (no
    running statistics: forward has updated them) and differentiates it with ``create_graph``.
    Only this rarely used path pays the recomputation; first-order gradients are the fused ones.
    """
    x0, weight, x, bias = saved[0], saved[1], saved[4], saved[5]
    n, features = x0.shape[0], len(saved) > 6
    cudnn = torch.backends.cudnn.enabled
    with torch.enable_grad():
        inputs = [t for t in (x, weight, bias) if t.requires_grad]
        outputs, grads = [], []
        if n > 0:
            outputs.append(torch.batch_norm(x[:n], weight, bias, None, None, True, 0.0, eps, cudnn))
            grads.append(grad_y[:n])
        if features and n < x.shape[0]:
            outputs.append(torch.batch_norm(x[n:], weight.detach(), bias.detach(), None, None, True, 0.0,
                                            eps, cudnn))
            grads.append(grad_y[n:])
        found = iter(torch.autograd.grad(outputs, inputs, grads, create_graph=True, allow_unused=True)
                     if outputs and inputs else ())
    result = [next(found, None) if t.requires_grad else None for t in (x, weight, bias)]
    zeros = (torch.zeros_like(grad_y), torch.zeros_like(weight), torch.zeros_like(weight))
    result = [z if g is None else g for g, z in zip(result, zeros)]
    return (*result, None, None, None, None, None, None)


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
    code never reads it; nor is dynamo imported for it (a slow import) unless compiling is under way.
    """
    rows = torch.empty(n, dtype=torch.uint8)
    if n >= 2 and "torch._dynamo" in sys.modules:
        sys.modules["torch._dynamo"].maybe_mark_dynamic(rows, 0)
    return rows
