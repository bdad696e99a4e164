"""Turning a model's BatchNorm layers into routed ones and back (torchvision, timm, our own nets).

:func:`convert_darbn` swaps the class of every ``BatchNorm2d`` (and timm's ``BatchNormAct2d``) in
place, so parameter objects, state_dict keys and an existing optimizer stay valid;
:func:`revert_darbn` gives plain BatchNorm layers back for export.
"""
from __future__ import annotations

import functools
import warnings

import torch
from torch import nn

from purenoise.darbn.functional import _check_noise_grad
from purenoise.darbn.layers import AuxBatchNorm2d, DARBatchNorm2d, _RoutedBatchNorm
from purenoise.errors import ModelError
from purenoise.marks import marked_noise_rows
from purenoise.schemes import BN_MODES

__all__ = ["convert_darbn", "revert_darbn", "routed_layers", "batch_norm_base"]


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
        The same model object. It warns once if it is given a batch OPeN marked as holding noise
        rows while no routing is active (``model(images)`` instead of ``routed_forward``).

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
    if not layers:
        norms = sorted({type(m).__name__ for m in model.modules() if "Norm" in type(m).__name__})
        warnings.warn(
            f"convert_darbn converted nothing: {type(model).__name__} has no BatchNorm2d layer"
            + (f" (its normalization layers: {', '.join(norms)})" if norms else " and no normalization layer")
            + ". DAR-BN routes BatchNorm statistics only, so noise rows would pass like natural ones; "
            "use a BatchNorm model for OPeN",
            stacklevel=2,
        )
    _check_routing_on_input(model)
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


def _warn_unrouted(model: nn.Module, args: tuple) -> None:
    """Forward pre-hook: warn once when a batch OPeN marked arrives with no routing active."""
    if torch.compiler.is_compiling() or not args or getattr(model, "_purenoise_warned", False):
        return
    n_noise = marked_noise_rows(args[0])
    if n_noise and model.training and not any(m.n_noise for m in routed_layers(model)):
        model._purenoise_warned = True
        warnings.warn(
            f"{type(model).__name__} received an OPeN batch with {n_noise} noise rows but no routing: "
            "its DAR-BN layers normalize them together with the natural rows (standard BN). Forward "
            "OPeN batches with routed_forward(model, images, n_noise) or inside noise_routing(model, n_noise)",
            stacklevel=3,
        )


def _check_routing_on_input(model: nn.Module) -> None:
    """Give a converted model the pre-hook of :func:`_warn_unrouted` (once)."""
    if getattr(model, "_purenoise_routing_hook", None) is None:
        model._purenoise_routing_hook = model.register_forward_pre_hook(_warn_unrouted)


def revert_darbn(model: nn.Module) -> nn.Module:
    """Turn routing layers back into the plain BatchNorm classes they came from, in place.

    The auxiliary branch of ``AuxBatchNorm2d`` is dropped; weights and running statistics of
    the natural branch are kept, so the state_dict matches the original model's exactly.
    """
    hook = getattr(model, "_purenoise_routing_hook", None)
    if hook is not None:
        hook.remove()
        model._purenoise_routing_hook = None
    for m in model.modules():
        if isinstance(m, _RoutedBatchNorm):
            base = m._base_cls
            m._modules.pop("aux_bn", None)
            for attr in ("noise_grad", "_n_noise", "_noise_rows", "_noise_only", "_warned_lone"):
                m.__dict__.pop(attr, None)
            m.__class__ = base
    return model
