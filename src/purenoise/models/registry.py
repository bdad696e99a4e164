"""Model registry: ``create_model`` and ``list_models`` for purenoise, torchvision and timm models.

Names are resolved in this order:

1. ``timm/<name>``: a timm model (needs the optional ``timm`` extra).
2. A model registered with :func:`register_model` (purenoise's own CIFAR / small networks).
3. ``<name>`` or ``torchvision/<name>``: a torchvision classification model.

An unknown name raises :class:`~purenoise.errors.ModelError` with the closest known names.
"""
from __future__ import annotations

import difflib
import fnmatch
import inspect
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from purenoise.errors import ModelError
from purenoise.models import timm_models, torchvision_models

__all__ = ["register_model", "create_model", "list_models", "is_registered", "TIMM_PREFIX"]

TIMM_PREFIX = "timm/"
TORCHVISION_PREFIX = "torchvision/"
_SOURCES = ("purenoise", "torchvision", "timm")


@dataclass(frozen=True)
class _Entry:
    name: str
    fn: Callable[..., nn.Module]


_REGISTRY: dict[str, _Entry] = {}


def register_model(fn: Callable[..., nn.Module] | None = None, *, name: str | None = None):
    """Register a model factory under its function name (or ``name``), as timm does.

    The factory is called as ``fn(num_classes=..., in_chans=..., **kwargs)`` and returns an
    ``nn.Module`` whose forward maps images to logits. Use as ``@register_model`` or
    ``@register_model(name="other_name")``.

    Raises:
        ValueError: if the name is already registered (two models must not share a name).
    """

    def wrap(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        key = name or f.__name__
        if key in _REGISTRY and _REGISTRY[key].fn is not f:
            raise ValueError(f"a model named {key!r} is already registered")
        _REGISTRY[key] = _Entry(key, f)
        return f

    return wrap(fn) if fn is not None else wrap


def is_registered(name: str) -> bool:
    """Whether ``name`` is a purenoise-registered model (not torchvision or timm)."""
    return name in _REGISTRY


def _torchvision_names() -> list[str]:
    return torchvision_models.names()


def list_models(pattern: str | None = None, *, source: str | None = None) -> list[str]:
    """Names accepted by :func:`create_model`, sorted.

    Args:
        pattern: shell-style wildcard filter, e.g. ``"wrn*"`` or ``"resnet*"``. timm models are
            listed only when asked for, because there are over a thousand of them: with a pattern
            starting with ``"timm/"`` (e.g. ``"timm/convnext*"``) or with ``source="timm"``.
        source: restrict to ``"purenoise"``, ``"torchvision"`` or ``"timm"``.

    Returns:
        Model names; timm names carry the ``timm/`` prefix that :func:`create_model` expects.
    """
    if source is not None and source not in _SOURCES:
        raise ModelError(f"unknown model source {source!r}; valid: {', '.join(_SOURCES)}")
    want_timm = source == "timm" or (source is None and pattern is not None
                                     and pattern.startswith(TIMM_PREFIX))
    names: list[str] = []
    if want_timm:
        timm = timm_models.import_timm()
        sub = pattern[len(TIMM_PREFIX):] if pattern and pattern.startswith(TIMM_PREFIX) else pattern
        names = [TIMM_PREFIX + n for n in timm.list_models(sub or "*")]
        return sorted(names)
    if source in (None, "purenoise"):
        names += list(_REGISTRY)
    if source in (None, "torchvision"):
        names += [n for n in _torchvision_names() if n not in _REGISTRY]
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return sorted(set(names))


def _check_kwargs(entry: _Entry, kwargs: dict) -> None:
    """Reject keyword arguments the factory does not take, naming the ones it does."""
    params = inspect.signature(entry.fn).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n in params if n not in ("num_classes", "in_chans")]
    bad = sorted(set(kwargs) - set(valid))
    if bad:
        raise ModelError(
            f"model {entry.name!r} got unknown option(s) {', '.join(bad)}; "
            f"valid options: {', '.join(valid) or '(none)'}"
        )


def _check_int(key: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ModelError(f"{key} must be an integer >= {minimum}, got {value!r}")
    return value


def create_model(
    name: str,
    num_classes: int,
    *,
    in_chans: int = 3,
    pretrained: bool = False,
    download: bool = True,
    **kwargs,
) -> nn.Module:
    """Build a classification model by name.

    Args:
        name: a purenoise model (``wrn28_10``, ``resnet32``, ``resnet_small``, ... see
            :func:`list_models`), a torchvision classification model (``resnet18``,
            ``resnext50_32x4d``, ...; optionally prefixed ``torchvision/``), or
            ``timm/<name>`` for a timm model.
        num_classes: number of output logits.
        in_chans: number of input image channels (1 for Fashion-MNIST). torchvision models get
            their stem convolution replaced when this is not 3.
        pretrained: load pretrained weights (torchvision's ``DEFAULT`` weights, or timm's), then
            replace the classifier by a freshly initialized one with ``num_classes`` outputs.
            purenoise's own models have no pretrained weights.
        download: allow downloading torchvision weights that are not in the torch hub cache. With
            ``False``, missing weights raise :class:`ModelError` saying where to put the file.
        **kwargs: passed to the model's factory (e.g. ``dropout=0.3``, ``use_norm=True``).
            torchvision ResNets take ``small_input=True``: the small-image stem (3x3 stride-1
            convolution, no max-pool) for 28-64 px inputs such as CIFAR or Fashion-MNIST.

    Returns:
        The model, in training mode, on the CPU.

    Raises:
        ModelError: unknown name (with the closest matches), unknown option, unavailable
            pretrained weights, or an ``in_chans`` the model family cannot take.
    """
    if not isinstance(name, str) or not name:
        raise ModelError(f"model name must be a non-empty string, got {name!r}")
    num_classes = _check_int("num_classes", num_classes, 1)
    in_chans = _check_int("in_chans", in_chans, 1)

    if name.startswith(TIMM_PREFIX):
        return timm_models.create(name[len(TIMM_PREFIX):], num_classes, in_chans=in_chans,
                                  pretrained=pretrained, **kwargs)

    if name in _REGISTRY:
        entry = _REGISTRY[name]
        if pretrained:
            raise ModelError(
                f"purenoise model {name!r} has no pretrained weights; train it from scratch, or "
                "start from a run's checkpoint (purenoise train --init-from RUN_DIR)"
            )
        _check_kwargs(entry, kwargs)
        return entry.fn(num_classes=num_classes, in_chans=in_chans, **kwargs)

    tv_name = name[len(TORCHVISION_PREFIX):] if name.startswith(TORCHVISION_PREFIX) else name
    if tv_name in _torchvision_names():
        return torchvision_models.create(tv_name, num_classes, in_chans=in_chans,
                                         pretrained=pretrained, download=download, **kwargs)

    raise ModelError(_unknown_name_message(name))


def _unknown_name_message(name: str) -> str:
    known = list_models()
    # Names extending what was typed ("resnext50" -> "resnext50_32x4d") first, then look-alikes.
    close = [k for k in known if k.startswith(name)][:5]
    close += [k for k in difflib.get_close_matches(name, known, n=5, cutoff=0.5) if k not in close]
    msg = f"unknown model {name!r}."
    if close:
        msg += f" Did you mean: {', '.join(close)}?"
    msg += (f" purenoise models: {', '.join(sorted(_REGISTRY))}; also every torchvision classification "
            f"model by name ({len(known) - len(_REGISTRY)} of them, e.g. resnet50, resnext50_32x4d) and timm "
            "models as 'timm/<name>'. List all with purenoise.models.list_models() (timm models: "
            "list_models('timm/*')).")
    try:
        import timm  # optional: only to suggest its model of the same name

        if timm.is_model(name):
            msg += f" timm has a model of this name: use 'timm/{name}'."
    except ImportError:
        pass
    return msg
