"""What a received checkpoint's config may decide: which images and model, never what is
downloaded, unpickled, fetched from a model hub or read from where.

A checkpoint may come from someone else, and its config names a dataset, a data folder, dataset
and model options. Some of these reach outside the run: ``download: true``, CIFAR's
``verify: false`` (unpickling whatever the folder holds), a ``split_dir`` or ``data_root``
elsewhere, a Hugging Face Hub model id, options that load weights from a file or URL.
:func:`checkpoint_settings` lists them; :func:`safe_config` gives the config without them (what
``eval`` uses); ``train --resume PATH`` refuses them unless the command line says them again;
:func:`check_model_source` refuses a model that would be fetched (``predict``, ``eval``).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from purenoise.config import saved_value
from purenoise.data import default_root
from purenoise.engine.checkpoint import MAX_IMAGE_SIDE
from purenoise.errors import ModelError
from purenoise.models import is_registered, timm_models, torchvision_models

__all__ = ["SAFE_DATASET_OPTIONS", "check_model_source", "checkpoint_settings", "safe_config"]

#: Dataset options a checkpoint's config may set: which images, in which order and shape. The
#: others (``verify``, ``split_dir``, ``stats``) and the top-level ``download`` and ``data_root``
#: decide what is unpickled, downloaded or read from where: only the user says that.
SAFE_DATASET_OPTIONS = frozenset({
    "ratio", "profile", "seed", "class_order", "n_max", "test_split", "val_fraction", "image_size", "mode",
    "skip_corrupt", "num_classes", "test_per_class", "center_crop", "mean", "std", "stats_max_images",
})
# Model options that fetch or read weights from elsewhere (torchvision's and timm's).
_REMOTE_MODEL_OPTIONS = frozenset({
    "pretrained", "download", "weights", "weights_backbone", "checkpoint_path", "pretrained_cfg",
    "pretrained_cfg_overlay", "cache_dir",
})


def _offline_model(name: Any) -> bool:
    """Whether purenoise builds model ``name`` without the network: one of its own, a torchvision
    model, or a timm architecture timm itself defines (not a Hugging Face Hub id or a URL)."""
    if not isinstance(name, str) or not name or ":" in name:
        return False
    if is_registered(name) or name.removeprefix("torchvision/") in torchvision_models.names():
        return True
    if name.startswith("timm/"):
        try:
            return bool(timm_models.import_timm().is_model(name[len("timm/"):]))
        except ModelError:  # timm is not installed: nothing to build it with anyway
            return False
    return False


def _remote_options(options: Any) -> list[str]:
    return sorted(k for k in options if k in _REMOTE_MODEL_OPTIONS) if isinstance(options, dict) else []


def check_model_source(name: Any, options: Any, path: Any) -> None:
    """Refuse a checkpoint whose model would be fetched: a hub name, a URL, an unknown name, or
    options that load weights from elsewhere. ``predict`` and ``eval`` read only the files named."""
    if not _offline_model(name):
        raise ModelError(
            f"checkpoint {path} names the model {name!r}, which purenoise does not build from its own "
            "code: a model hub id or URL would be fetched from the network, which a checkpoint may not "
            "decide. Use a checkpoint of a purenoise, torchvision or timm architecture"
        )
    remote = _remote_options(options)
    if remote:
        raise ModelError(f"checkpoint {path} sets the model option(s) {', '.join(remote)}, which fetch or read "
                         "weights from elsewhere; a checkpoint's own weights are the only ones it may load")


def _inside(root: Any, folder: str) -> bool:
    try:
        return Path(root).expanduser().resolve().is_relative_to(Path(folder).expanduser().resolve())
    except (OSError, RuntimeError, TypeError, ValueError):
        return False


def _small(size: Any) -> bool:
    return all(type(x) is not int or x <= MAX_IMAGE_SIDE for x in (size if isinstance(size, (list, tuple)) else [size]))


def checkpoint_settings(received: Mapping[str, Any]) -> list[tuple[str, Any, str]]:
    """``(key, value, why)`` of each setting of a checkpoint's config that reaches outside the run.

    ``received`` is the config saved in the checkpoint, read as it is (not validated: a key may
    be absent). A data folder is one unless it lies in the default data folder
    (``$PURENOISE_DATA`` or ``./data``); a run name is one if it is a path (``runs/<name>`` is
    the default output).
    """
    found = []
    for key, why in (("download", "downloads data"), ("pretrained", "fetches pretrained weights")):
        if value := saved_value(received, key):
            found.append((key, value, why))
    root = saved_value(received, "data_root")
    if root is not None and not _inside(root, default_root()):
        found.append(("data_root", root, f"reads data outside the default data folder ({default_root()})"))
    options = saved_value(received, "dataset_options")
    for key in sorted(options) if isinstance(options, dict) else []:
        if key not in SAFE_DATASET_OPTIONS:
            found.append((f"dataset_options.{key}", options[key], "decides what files are read or unpickled"))
        elif key == "image_size" and not _small(options[key]):
            found.append((f"dataset_options.{key}", options[key], f"is over {MAX_IMAGE_SIDE} pixels a side"))
    model = saved_value(received, "model")
    if "model" in received and not _offline_model(model):
        found.append(("model", model, "is not a model purenoise builds without the network"))
    model_opts = saved_value(received, "model_options")
    for key in _remote_options(model_opts):
        found.append((f"model_options.{key}", model_opts[key], "fetches or reads weights"))
    name = saved_value(received, "name")
    if isinstance(name, str) and (Path(name).name != name or name in ("", ".", "..")):
        found.append(("name", name, "is a path, and the default output folder is runs/<name>"))
    return found


def safe_config(received: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a checkpoint's config whose :func:`checkpoint_settings` take their safe defaults.

    ``download`` and ``pretrained`` are off, a data folder outside the default one is dropped
    (the dataset's default location is used), dataset options are reduced to
    :data:`SAFE_DATASET_OPTIONS` and model options to those that fetch nothing. The model name
    is kept: there is no safe default for it (:func:`check_model_source` refuses it). The copy is
    a plain config mapping, not yet validated: the caller validates it (after its own changes).
    """
    safe = dict(received)
    for key, _, _ in checkpoint_settings(received):
        group, _, sub = key.partition(".")
        if sub:
            safe[group] = {k: v for k, v in safe[group].items() if k != sub}
        elif key in ("download", "pretrained"):
            safe[key] = False
        elif key in ("data_root", "name"):
            safe[key] = None
    return safe
