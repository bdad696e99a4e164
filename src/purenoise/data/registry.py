"""Dataset registry and the single entry point :func:`create_dataset`.

Builders register under a name (timm-style) when their module is imported; ``purenoise.data``
imports the built-in ones (as ``purenoise.models`` does for models). Builders and take ``root`` plus keyword-only options with
defaults; the defaults are read from the builder's signature, so unknown option names are caught
before any file is touched and the error lists the valid ones. A builder returns a
:class:`DatasetBundle` whose ``info`` has no statistics yet; :func:`create_dataset` fills in the
per-channel mean/std of the long-tailed training set (cached, see :mod:`purenoise.data.stats`) and
sets the transforms.
"""
from __future__ import annotations

import dataclasses
import difflib
import inspect
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from purenoise.data.bundle import COMMON_OPTIONS, DatasetBundle
from purenoise.data.stats import resolve_stats
from purenoise.errors import ConfigError

__all__ = ["register_dataset", "list_datasets", "dataset_options", "create_dataset"]


@dataclass(frozen=True)
class _Entry:
    name: str
    builder: Callable[..., DatasetBundle]
    defaults: dict[str, Any]
    summary: str
    common: dict[str, Any]


_REGISTRY: dict[str, _Entry] = {}


def _normalize(name: str) -> str:
    return name.strip().lower().replace("-", "_")


def register_dataset(name: str | Callable[..., DatasetBundle] | None = None, *, common: dict[str, Any] | None = None):
    """Register a dataset builder, as ``@register_dataset`` or ``@register_dataset("name")``.

    The builder is called as ``builder(root, *, download, **options)``; every option must be a
    keyword-only parameter with a default. Without a name, the function's name is used.
    ``common`` overrides the defaults of :data:`COMMON_OPTIONS` for this dataset (e.g. estimate
    the statistics of a huge set on a subset).
    """
    unknown = set(common or {}) - set(COMMON_OPTIONS)
    if unknown:
        raise TypeError(f"register_dataset: unknown common options {sorted(unknown)}")
    common_defaults = {**COMMON_OPTIONS, **(common or {})}

    def decorate(fn: Callable[..., DatasetBundle], key: str | None) -> Callable[..., DatasetBundle]:
        key = _normalize(key or fn.__name__)
        defaults = {}
        for pname, param in inspect.signature(fn).parameters.items():
            if param.kind is inspect.Parameter.KEYWORD_ONLY and pname != "download":
                if param.default is inspect.Parameter.empty:
                    raise TypeError(f"dataset builder {key!r}: option {pname!r} needs a default")
                defaults[pname] = param.default
        doc = inspect.getdoc(fn) or ""
        _REGISTRY[key] = _Entry(key, fn, defaults, doc.splitlines()[0] if doc else "", common_defaults)
        return fn

    if callable(name):
        return decorate(name, None)
    return lambda fn: decorate(fn, name)


def list_datasets() -> list[str]:
    """Names of the registered datasets, sorted."""
    return sorted(_REGISTRY)


def _entry(name: str) -> _Entry:
    if not isinstance(name, str):
        raise ConfigError(f"dataset name must be a string, got {name!r}")
    key = _normalize(name)
    if key not in _REGISTRY:
        close = difflib.get_close_matches(key, list(_REGISTRY), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(f"unknown dataset {name!r}{hint or '.'} Known datasets: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[key]


def dataset_options(name: str) -> dict[str, Any]:
    """The options a dataset accepts with their defaults (common options included)."""
    entry = _entry(name)
    return {**entry.defaults, **entry.common}


def create_dataset(
    name: str,
    root: str | os.PathLike | None = None,
    *,
    transform: Callable | None = None,
    test_transform: Callable | None = None,
    download: bool = False,
    **options: Any,
) -> DatasetBundle:
    """Build a registered dataset: long-tailed train set, test set, class counts and metadata.

    Args:
        name: Registry name (see :func:`list_datasets`); ``-`` and ``_`` are interchangeable.
        root: Data folder (default: see each dataset; most use :func:`default_root`).
        transform: Transform for training images (``dataset.transform``); ``None`` gives PIL images.
        test_transform: Transform for test images.
        download: Allow torchvision to download the data into ``root`` (CIFAR, Fashion-MNIST).
        **options: Dataset options (``ratio``, ``profile``, ``seed``, ...; see
            :func:`dataset_options`) plus ``mean``/``std`` (explicit statistics), ``stats``
            (``False`` to skip them) and ``stats_max_images``.

    Returns:
        ``DatasetBundle(train, test, class_counts, info)``.

    Raises:
        ConfigError: Unknown dataset or option, bad option value.
        DataNotFoundError: Files missing (the message says where and how to get them).
        DataError: Files present but malformed.
    """
    entry = _entry(name)
    valid = {**entry.defaults, **entry.common}
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ConfigError(
            f"dataset {entry.name!r} has no option {', '.join(map(repr, unknown))}; valid options: "
            f"{', '.join(sorted(valid))}"
        )
    common = {k: options.pop(k, v) for k, v in entry.common.items()}
    resolved = {**entry.defaults, **options}
    if root is not None:
        root = str(Path(root).expanduser())
    bundle = entry.builder(root, download=bool(download), **resolved)
    info = bundle.info
    info.options = {**info.options, **common}

    mean, std = resolve_stats(bundle, common)
    info = dataclasses.replace(info, mean=mean, std=std)
    if transform is not None:
        bundle.train.transform = transform  # type: ignore[attr-defined]
    if test_transform is not None and bundle.test is not None:
        bundle.test.transform = test_transform  # type: ignore[attr-defined]
    return DatasetBundle(bundle.train, bundle.test, list(bundle.class_counts), info)
