"""torchvision classification models by name, with pretrained weights and any input channels."""
from __future__ import annotations

import functools
import math
import os
import urllib.parse
from pathlib import Path

import torch
import torchvision
from torch import nn
from torchvision.models import get_model_builder, get_model_weights

from purenoise.errors import ModelError
from purenoise.models.utils import replace_classifier

__all__ = ["names", "create", "weights_path"]

# These two build auxiliary heads by default and then return a tuple in training mode; the
# trainer expects a tensor of logits, so their auxiliary heads are off unless asked for.
_AUX_MODELS = ("googlenet", "inception_v3")


@functools.lru_cache(maxsize=1)
def _names() -> tuple[str, ...]:
    return tuple(torchvision.models.list_models(module=torchvision.models))


def names() -> list[str]:
    """Every torchvision classification model name (``torchvision.models.list_models``)."""
    return list(_names())


def weights_path(weights) -> Path:
    """Where torch hub caches a torchvision weights file: ``$TORCH_HOME/hub/checkpoints/<file>``."""
    filename = os.path.basename(urllib.parse.urlparse(weights.url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _missing_weights_message(name: str, weights, reason: str) -> str:
    path = weights_path(weights)
    return (
        f"pretrained weights for torchvision model {name!r} ({weights}) {reason}. "
        f"Put the file at {path} (the torch hub cache; set TORCH_HOME to use another directory). "
        f"To get it, on a machine with internet run: curl -L -o {path.name} {weights.url} "
        f"(or python -c \"import torchvision; torchvision.models.get_model('{name}', "
        f"weights='DEFAULT')\", which fills that machine's cache) and copy the file over."
    )


def _adapt_stem(model: nn.Module, name: str, in_chans: int, pretrained: bool) -> None:
    """Replace the first 3-channel convolution by one taking ``in_chans`` channels.

    Pretrained RGB filters are folded as timm does: summed for one channel, otherwise tiled over
    the new channels and rescaled by 3 / in_chans so that activations keep their scale.
    """
    stem_name, stem = next(
        ((n, m) for n, m in model.named_modules()
         if isinstance(m, nn.Conv2d) and m.in_channels == 3 and m.groups == 1),
        (None, None),
    )
    if stem is None:
        raise ModelError(
            f"cannot adapt torchvision model {name!r} to in_chans={in_chans}: no 3-channel stem "
            "convolution found; use in_chans=3 (e.g. repeat a gray channel) or another model"
        )
    new = nn.Conv2d(in_chans, stem.out_channels, stem.kernel_size, stem.stride, stem.padding,
                    stem.dilation, 1, stem.bias is not None, stem.padding_mode)
    with torch.no_grad():
        if pretrained:
            w = stem.weight
            if in_chans == 1:
                new.weight.copy_(w.sum(dim=1, keepdim=True))
            else:
                reps = math.ceil(in_chans / 3)
                new.weight.copy_(w.repeat(1, reps, 1, 1)[:, :in_chans] * (3.0 / in_chans))
            if stem.bias is not None:
                new.bias.copy_(stem.bias)
        else:
            # Keep the family's own initialization scheme, at the new fan-in.
            nn.init.kaiming_normal_(new.weight, mode="fan_out", nonlinearity="relu")
            if new.bias is not None:
                nn.init.zeros_(new.bias)
    parent_name, _, attr = stem_name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)
    if hasattr(model, "transform_input"):
        # GoogLeNet / Inception re-normalize 3 RGB channels inside forward when this is set.
        model.transform_input = False


def _small_input_stem(model: nn.Module, name: str, in_chans: int) -> None:
    """Give a ResNet-style model the small-image stem: a 3x3 stride-1 convolution and no max-pool.

    ImageNet's stem (7x7 stride 2, then a stride-2 max-pool) shrinks a 28-32 px image to 7-8 px
    before the first block; CIFAR ResNets and the paper's networks keep the full resolution. The
    new convolution is freshly initialized (pretrained 7x7 filters do not fit it).
    """
    conv, pool = getattr(model, "conv1", None), getattr(model, "maxpool", None)
    if not isinstance(conv, nn.Conv2d) or not isinstance(pool, nn.MaxPool2d):
        raise ModelError(f"small_input applies to torchvision ResNet-style models (a conv1 and maxpool stem); "
                         f"{name!r} has none: use a resnet*/resnext*/wide_resnet* model or drop small_input")
    model.conv1 = nn.Conv2d(in_chans, conv.out_channels, 3, 1, 1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()


def create(name: str, num_classes: int, *, in_chans: int = 3, pretrained: bool = False,
           download: bool = True, small_input: bool = False, **kwargs) -> nn.Module:
    """Build torchvision model ``name``; see :func:`purenoise.models.create_model`.

    With ``pretrained``, the ``DEFAULT`` weights are loaded from the torch hub cache (downloaded
    first when missing and ``download`` is true) and the classifier is replaced unless
    ``num_classes`` equals the number of classes the weights were trained on. ``small_input``
    rebuilds a ResNet's stem for 28-64 px images (:func:`_small_input_stem`).
    """
    builder = get_model_builder(name)
    use_norm = bool(kwargs.pop("use_norm", False))
    user_aux = "aux_logits" in kwargs
    if name in _AUX_MODELS and not pretrained:
        kwargs.setdefault("aux_logits", False)
        kwargs.setdefault("init_weights", True)  # silences torchvision's FutureWarning
    weights = None
    if pretrained:
        weights = get_model_weights(name).DEFAULT
        if not weights_path(weights).is_file() and not download:
            raise ModelError(_missing_weights_message(name, weights, "are not in the cache"))
    else:
        kwargs["num_classes"] = num_classes
    try:
        model = builder(weights=weights, **kwargs)
    except TypeError as e:
        raise ModelError(f"torchvision model {name!r} does not accept these options "
                         f"{sorted(kwargs)}: {e}") from e
    except Exception as e:  # noqa: BLE001
        # A failed download (URLError, an OSError), a truncated or corrupt file (RuntimeError,
        # UnpicklingError, EOFError): all mean the weights file is not usable.
        if weights is None:
            raise
        raise ModelError(_missing_weights_message(
            name, weights, f"could not be loaded ({type(e).__name__}: {e})")) from e
    if name in _AUX_MODELS and not user_aux and getattr(model, "aux_logits", False):
        # torchvision keeps Inception's auxiliary head when loading its weights; drop it.
        model.aux_logits = False
        for attr in ("AuxLogits", "aux1", "aux2"):
            if hasattr(model, attr):
                setattr(model, attr, None)
    if weights is not None and (num_classes != len(weights.meta["categories"]) or use_norm):
        replace_classifier(model, num_classes, use_norm=use_norm)
    elif use_norm:
        replace_classifier(model, num_classes, use_norm=True)
    if small_input:
        _small_input_stem(model, name, in_chans)
    elif in_chans != 3:
        _adapt_stem(model, name, in_chans, pretrained)
    return model
