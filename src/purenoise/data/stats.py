"""Per-channel pixel statistics of the long-tailed training set, cached on disk.

The mean and std serve twice: input normalization, and the Gaussian pure-noise generator, so
they must be those of the long-tailed training set the model trains on. They are computed once
with :func:`purenoise.channel_stats` and stored as a small JSON file keyed by the dataset name,
its resolved options, its root, its size, its class counts and a digest of the content the
statistics summarize: the pixels themselves for sets held in memory (CIFAR, Fashion-MNIST), the
path, size and modification time of every image used for image-file sets. A changed subset or an
image replaced on disk therefore never reuses stale numbers.

Where: the user's own cache, ``$PURENOISE_CACHE_DIR`` or ``$XDG_CACHE_HOME/purenoise``
(``~/.cache/purenoise``) under ``stats/``, never the data folder: whoever can write there would
otherwise set the normalization and the noise of every later run. Each entry stores a digest of
its key and values; an entry that does not match it (edited or damaged) is recomputed with a
warning. Writes are atomic (:mod:`purenoise.fileio`), so concurrent processes (DDP ranks)
never read a half-written file.
"""
from __future__ import annotations

import hashlib
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Subset
from torchvision.datasets import CIFAR10, MNIST, DatasetFolder

from purenoise.data.bundle import DatasetBundle
from purenoise.data.tensors import as_uint8_tensor
from purenoise.errors import ConfigError
from purenoise.fileio import atomic_write_json
from purenoise.noise import channel_stats

__all__ = ["resolve_stats", "cached_channel_stats", "compute_channel_stats", "stats_cache_dir", "user_cache_dir"]

Stats = tuple[tuple[float, ...], tuple[float, ...]]

_VERSION = 2
# Options that do not change which pixels are in the training set.
_NOT_IN_KEY = {"mean", "std", "stats", "verify"}


def user_cache_dir() -> Path:
    """``$PURENOISE_CACHE_DIR``, else ``$XDG_CACHE_HOME/purenoise``, else ``~/.cache/purenoise``."""
    if os.environ.get("PURENOISE_CACHE_DIR"):
        return Path(os.environ["PURENOISE_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "purenoise"


def stats_cache_dir() -> Path:
    """Folder of the statistics cache: ``stats/`` in :func:`user_cache_dir`."""
    return user_cache_dir() / "stats"


def _stat_indices(n: int, max_images: int | None, seed: int = 0) -> list[int] | None:
    """Indices of the images the statistics are computed on (``None``: all ``n``)."""
    if max_images is not None and max_images < n:
        rng = np.random.default_rng(seed)
        return sorted(rng.choice(n, size=max_images, replace=False).tolist())
    return None


def _content_digest(dataset: Dataset, indices: list[int] | None) -> str | None:
    """Digest of what the statistics of ``dataset`` (at ``indices``) are computed from.

    The pixels for sets held in memory; path, size and modification time of each image file for
    image-file sets; ``None`` for other datasets, which are keyed by their description only.
    """
    inner = dataset.dataset if isinstance(dataset, Subset) else dataset
    digest = hashlib.sha256()
    if isinstance(inner, (CIFAR10, MNIST)):
        images, _ = as_uint8_tensor(dataset)
        if indices is not None:
            images = images[torch.as_tensor(indices)]
        digest.update(str(tuple(images.shape)).encode())
        digest.update(np.ascontiguousarray(images.numpy()))
        return digest.hexdigest()
    if isinstance(dataset, DatasetFolder) and hasattr(dataset, "samples"):
        for i in indices if indices is not None else range(len(dataset.samples)):
            path = dataset.samples[i][0]
            try:
                st = os.stat(path)
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:
                size = mtime = -1
            digest.update(f"{path}\0{size}\0{mtime}\n".encode())
        return digest.hexdigest()
    return None


def _key(bundle: DatasetBundle, max_images: int | None) -> tuple[str, dict[str, Any]]:
    info = bundle.info
    material = {
        "version": _VERSION,
        "name": info.name,
        "options": {k: v for k, v in sorted(info.options.items()) if k not in _NOT_IN_KEY},
        "root": info.root,
        "num_images": len(bundle.train),
        "class_counts": [int(c) for c in bundle.class_counts],
        "max_images": max_images,
        "content": _content_digest(bundle.train, _stat_indices(len(bundle.train), max_images)),
    }
    text = json.dumps(material, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20], material


def _entry_digest(material: dict[str, Any], mean: list[float], std: list[float]) -> str:
    text = json.dumps({"material": material, "mean": mean, "std": std}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _read(path: Path, channels: int, material: dict[str, Any]) -> tuple[Stats | None, str | None]:
    """``(stats, None)`` from a valid entry, ``(None, None)`` when there is none, else ``(None, why)``."""
    try:
        with open(path, encoding="utf-8") as f:
            entry = json.load(f)
    except FileNotFoundError:
        return None, None
    except (OSError, ValueError) as e:
        return None, f"cannot be read ({e})"
    try:
        mean, std = tuple(float(v) for v in entry["mean"]), tuple(float(v) for v in entry["std"])
        stored = entry["digest"]
    except (KeyError, TypeError, ValueError):
        return None, "is not a statistics entry"
    if stored != _entry_digest(material, entry["mean"], entry["std"]):
        return None, "does not match its digest (edited, damaged or for other data)"
    if len(mean) != channels or len(std) != channels:
        return None, f"holds {len(mean)} channel(s), the data has {channels}"
    return (mean, std), None


def _batches(dataset: Dataset, indices: list[int] | None, batch: int = 256) -> Iterator[torch.Tensor]:
    """uint8 NCHW batches of the dataset (decoded a batch at a time for image-file sets)."""
    inner = dataset.dataset if isinstance(dataset, Subset) else dataset
    if isinstance(inner, (CIFAR10, MNIST)):
        images, _ = as_uint8_tensor(dataset)
        if indices is not None:
            images = images[torch.as_tensor(indices)]
        yield images
        return
    if isinstance(dataset, DatasetFolder) and hasattr(dataset, "subset"):
        order = indices if indices is not None else list(range(len(dataset)))
        for start in range(0, len(order), batch):
            images, _ = as_uint8_tensor(dataset.subset(order[start:start + batch]))  # type: ignore[attr-defined]
            yield images
        return
    order = indices if indices is not None else range(len(dataset))
    for i in order:  # any other dataset: its items, untransformed as the builders return them
        yield dataset[i]


def compute_channel_stats(dataset: Dataset, max_images: int | None = None, seed: int = 0) -> Stats:
    """Per-channel mean/std of a dataset's pixels in ``[0, 1]``, optionally on a seeded random subset."""
    return channel_stats(_batches(dataset, _stat_indices(len(dataset), max_images, seed)))


def cached_channel_stats(bundle: DatasetBundle, max_images: int | None = None) -> Stats:
    """Statistics of ``bundle.train`` from the cache, computing and storing them on a miss.

    An entry that exists but cannot be used (edited, damaged) is recomputed with a warning.
    """
    key, material = _key(bundle, max_images)
    path = stats_cache_dir() / f"{bundle.info.name}-{key}.json"
    hit, problem = _read(path, bundle.info.channels, material)
    if hit is not None:
        return hit
    if problem is not None:
        warnings.warn(f"statistics cache entry {path} {problem}; computing the statistics of "
                      f"{bundle.info.name} again", stacklevel=3)
    mean, std = compute_channel_stats(bundle.train, max_images)
    values = {"mean": list(mean), "std": list(std)}
    payload = {**material, **values, "digest": _entry_digest(material, values["mean"], values["std"])}
    try:
        atomic_write_json(path, payload, indent=1, default=str)
    except OSError as e:
        warnings.warn(
            f"could not cache the statistics of {bundle.info.name} ({path.parent}: {e}); they will be "
            f"computed again next time. Set PURENOISE_CACHE_DIR to a writable folder.",
            stacklevel=3,
        )
    return mean, std


def _as_stat(key: str, value: Any, channels: int, dataset: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in (value if isinstance(value, (list, tuple)) else [value]))
    except (TypeError, ValueError):
        raise ConfigError(f"{dataset}: option {key} must be a list of {channels} numbers, got {value!r}") from None
    if len(values) == 1 and channels > 1:
        values = values * channels
    if len(values) != channels or not all(np.isfinite(values)):
        raise ConfigError(
            f"{dataset}: option {key} must have {channels} finite value(s) (one per channel), got {value!r}"
        )
    if key == "std" and min(values) <= 0:
        raise ConfigError(f"{dataset}: option std must be positive, got {value!r}")
    return values


def resolve_stats(
    bundle: DatasetBundle, common: dict[str, Any]
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """Statistics for a new bundle: explicit options, else the cache, else computed.

    ``(None, None)`` with ``stats=False``.
    """
    info = bundle.info
    mean, std = common.get("mean"), common.get("std")
    if (mean is None) != (std is None):
        raise ConfigError(f"{info.name}: give both mean and std, or neither (to compute them)")
    if mean is not None:
        return _as_stat("mean", mean, info.channels, info.name), _as_stat("std", std, info.channels, info.name)
    if not isinstance(common.get("stats", True), bool):
        raise ConfigError(f"{info.name}: option stats must be true or false, got {common['stats']!r}")
    if not common.get("stats", True):
        return None, None
    max_images = common.get("stats_max_images")
    if max_images is not None and (isinstance(max_images, bool) or not isinstance(max_images, int) or max_images < 1):
        raise ConfigError(
            f"{info.name}: option stats_max_images must be a positive integer or null, got {max_images!r}"
        )
    return cached_channel_stats(bundle, max_images)
