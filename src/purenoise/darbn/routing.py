"""Routing a batch through the DAR-BN layers: where the noise rows start, and one pass or two.

:func:`noise_routing` tells every routed layer of a model how many of the batch's last rows are
noise, for the duration of a forward. :func:`routed_forward` is the forward of an OPeN batch: where
it is exact (:func:`split_blockers` finds nothing against it), the noise rows take a pass of their
own, which skips the backward work their zero feature gradients would cost in one joint pass.
"""
from __future__ import annotations

import contextlib
import operator
from collections.abc import Iterator

import torch
from torch import nn

from purenoise.darbn.convert import routed_layers
from purenoise.darbn.functional import _noise_rows
from purenoise.darbn.layers import AuxBatchNorm2d, _RoutedBatchNorm
from purenoise.schemes import NOISE_PASSES

__all__ = ["noise_routing", "routed_forward", "split_blockers"]


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
    spends part of its work on zeros, which the split pass never computes, and the noise
    rows' activations are freed as soon as their pass ends (see ``benchmarks/SPEED.md``).
    ``"auto"`` splits where :func:`split_blockers` finds no reason not to, except for a
    ``torch.compile``'d model: ``"auto"`` keeps its single-pass graph, the configuration the GPU
    benchmarks cover (ask for ``"split"`` to compile the two passes instead).

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
    # DAR-BN layers normalize it with their running statistics where it is one value per
    # channel. A compiled model keeps one pass unless asked.
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
