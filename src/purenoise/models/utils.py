"""Model helpers the trainer needs: BatchNorm count, and finding or replacing the classifier."""
from __future__ import annotations

from torch import nn

from purenoise.errors import ModelError
from purenoise.models.layers import NormedLinear

__all__ = ["count_batchnorm", "get_classifier", "classifier_name", "replace_classifier"]


def count_batchnorm(model: nn.Module) -> int:
    """Number of 2-d batch-norm layers (``nn.BatchNorm2d``, subclasses, ``nn.SyncBatchNorm``).

    OPeN's DAR-BN works by replacing these layers; a model with none (a ViT, for instance) cannot
    route noise images through separate statistics.
    """
    return sum(isinstance(m, (nn.BatchNorm2d, nn.SyncBatchNorm)) for m in model.modules())


def _is_head(m: nn.Module) -> bool:
    # SqueezeNet's classifier is a 1x1 convolution.
    return isinstance(m, (nn.Linear, NormedLinear)) or (
        isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1
    )


def classifier_name(model: nn.Module) -> str:
    """Dotted name of the layer producing the logits (as in ``model.named_modules()``).

    purenoise models: ``fc``. timm models: the module returned by ``get_classifier()``.
    torchvision models: the last ``Linear`` (or 1x1 ``Conv2d`` for SqueezeNet) in module order
    that is not part of an auxiliary head (GoogLeNet / Inception ``aux*``).

    Raises:
        ModelError: if no such layer exists.
    """
    target = None
    if hasattr(model, "get_classifier") and callable(model.get_classifier):
        target = model.get_classifier()
    elif isinstance(getattr(model, "fc", None), (nn.Linear, NormedLinear)):
        target = model.fc
    named = list(model.named_modules())
    if target is not None:
        for name, m in named:
            if m is target and name:
                return name
    for name, m in reversed(named):
        if name and _is_head(m) and "aux" not in name.lower():
            return name
    raise ModelError(f"cannot find the classifier layer of {type(model).__name__}")


def get_classifier(model: nn.Module) -> nn.Module:
    """The layer producing the logits (``model.fc`` for purenoise models).

    See :func:`classifier_name` for how it is found.
    """
    return model.get_submodule(classifier_name(model))


def _set_submodule(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, module)


def _new_head(old: nn.Module, num_classes: int, use_norm: bool) -> nn.Module:
    if isinstance(old, nn.Conv2d):
        if use_norm:
            raise ModelError("use_norm needs a linear classifier; this model's is a convolution")
        new = nn.Conv2d(old.in_channels, num_classes, 1)
        # torchvision's SqueezeNet initialization of its final convolution.
        nn.init.normal_(new.weight, 0.0, 0.01)
        nn.init.zeros_(new.bias)
        return new
    in_features = old.in_features
    if use_norm:
        return NormedLinear(in_features, num_classes)
    return nn.Linear(in_features, num_classes, bias=getattr(old, "bias", None) is not None)


def replace_classifier(model: nn.Module, num_classes: int, *, use_norm: bool = False) -> nn.Module:
    """Replace the classifier (and any auxiliary heads) by fresh ones with ``num_classes`` outputs.

    Used for pretrained models and for the cosine classifier of LDAM (``use_norm=True``).
    Auxiliary heads (GoogLeNet, Inception) whose output size equals the old classifier's are
    replaced too. Returns the model, modified in place.
    """
    name = classifier_name(model)
    old = model.get_submodule(name)
    old_out = old.out_channels if isinstance(old, nn.Conv2d) else old.out_features
    _set_submodule(model, name, _new_head(old, num_classes, use_norm))
    for aux_name, m in list(model.named_modules()):
        if ("aux" in aux_name.lower() and isinstance(m, nn.Linear)
                and m.out_features == old_out):
            _set_submodule(model, aux_name, nn.Linear(m.in_features, num_classes))
    if hasattr(model, "num_classes"):
        model.num_classes = num_classes
    return model
