"""Building a run's parts from its settings: data, transforms, model; checkpoint compatibility.

The functions here read a run's :class:`~purenoise.settings.Settings` and call the factories
(:func:`~purenoise.data.create_dataset`, :func:`~purenoise.models.create_model`, the transform
presets) with explicit arguments.
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from purenoise.config import FREE, SCHEMA, SHARED, keys_in_scope, saved_value, settings, validate_config
from purenoise.darbn import convert_darbn, revert_darbn
from purenoise.data import create_dataset, create_transform, dataset_options, get_targets
from purenoise.engine.checkpoint import check_weights, load_checkpoint, validate_checkpoint
from purenoise.engine.trust import check_model_source
from purenoise.errors import ConfigError, ModelError, PureNoiseError
from purenoise.models import count_batchnorm, create_model
from purenoise.run_paths import RunPaths
from purenoise.schemes import NOISE_SCHEMES
from purenoise.settings import Settings

__all__ = ["RunData", "build_data", "dataset_kwargs", "augment_name", "default_transforms", "build_model",
           "model_options", "loss_options", "check_branch_compatible", "load_model_state", "export_state",
           "load_for_inference", "FREE_ON_RESUME"]


# Training preset of each dataset family when the config says augment: auto.
_DEFAULT_AUGMENT = {
    "cifar10_lt": "cifar_simclr", "cifar100_lt": "cifar_simclr", "cifar10": "cifar_simclr",
    "cifar100": "cifar_simclr", "celeba5": "cifar_simclr", "fmnist_lt": "fmnist_basic",
    "fmnist": "fmnist_basic", "imagenet_lt": "imagenet_train", "places_lt": "imagenet_train",
}


@dataclass
class RunData:
    """The datasets of a run: untransformed train set, test set with its transform, labels."""

    train: Any
    test: Any
    targets: list[int]
    class_counts: list[int]
    info: Any


def dataset_kwargs(s: Settings) -> dict[str, Any]:
    """The options of :func:`~purenoise.data.create_dataset` for a run: its ``dataset_options``
    plus the top-level keys that are dataset options (``ratio``, ``profile``, ``subset_seed``,
    ``skip_corrupt``), where the dataset takes them.

    Raises:
        ConfigError: A top-level key set away from its default that the dataset does not take.
    """
    valid = dataset_options(s.dataset)
    opts = dict(s.dataset_options)
    for key, setting, value in (("ratio", "ratio", s.ratio), ("profile", "profile", s.profile),
                                ("seed", "subset_seed", s.subset_seed),
                                ("skip_corrupt", "skip_corrupt", s.skip_corrupt)):
        if key in valid:
            if value is not None:
                opts.setdefault(key, value)
        elif value != SCHEMA[setting].default:
            raise ConfigError(
                f"dataset '{s.dataset}' has no option '{key}' (config key '{setting}'); its options are: "
                f"{', '.join(sorted(valid))}"
            )
    return opts


def augment_name(s: Settings, info: Any) -> str:
    """The run's training preset: ``augment``, or the dataset's default for ``auto``."""
    augment = s.augment
    if augment == "auto":
        augment = _DEFAULT_AUGMENT.get(info.name)
        if augment is None:
            augment = "cifar_basic" if max(info.image_size) <= 64 else "imagenet_train"
    return augment


def default_transforms(s: Settings, info: Any):
    """The training and evaluation transforms of a run (presets resolved for ``auto``)."""

    augment = augment_name(s, info)
    kw = dict(image_size=info.image_size, channels=info.channels)
    # Cutout's hole gets the dataset mean: the value the original code (Cutout after
    # normalization, filling 0) gave it.
    train_tf = create_transform(augment, train=True, cutout_fill=tuple(info.mean), **kw)
    test_name = s.test_transform
    test_tf = create_transform(augment, train=False, **kw) if test_name == "auto" else \
        create_transform(test_name, train=False, **kw)
    return train_tf, test_tf


def build_data(s: Settings) -> RunData:
    """Create the run's dataset (long-tailed train set, test set) from its settings."""

    bundle = create_dataset(s.dataset, s.data_root, download=s.download, **dataset_kwargs(s))
    info = bundle.info
    if any(n <= 0 for n in bundle.class_counts):
        empty = [info.class_names[i] for i, n in enumerate(bundle.class_counts) if n <= 0]
        why = {"open": "OPeN's replacement probabilities use n_c / n_max",
               "rs": "class-balanced sampling draws from every class",
               "drs": "class-balanced sampling draws from every class"}.get(
            s.method, "the losses and shot-group metrics use every class's training count")
        raise ConfigError(
            f"method '{s.method}' needs training images in every class ({why}), but "
            f"{', '.join(empty)} have none in {s.dataset}; add training images for them or leave "
            f"those classes out of the dataset"
        )
    _, test_tf = default_transforms(s, info)
    bundle.train.transform = None  # the trainer applies the training transform per sample
    if bundle.test is not None:
        bundle.test.transform = test_tf
    return RunData(bundle.train, bundle.test, list(get_targets(bundle.train)), list(bundle.class_counts), info)


def model_options(s: Settings) -> dict[str, Any]:
    """Model options; LDAM gets the cosine classifier its margins assume (LDAM-DRW's NormedLinear)."""
    options = dict(s.model_options)
    if s.loss == "ldam":
        options.setdefault("use_norm", True)
    return options


def build_model(s: Settings, info: Any, class_counts: Sequence[int], warn: bool = True) -> nn.Module:
    """Create the model and, for OPeN and noise augmentation, convert its BatchNorm layers."""

    model = create_model(s.model, info.num_classes, in_chans=info.channels, pretrained=s.pretrained,
                         **model_options(s))
    if s.method in NOISE_SCHEMES and s.bn_mode != "standard":
        if count_batchnorm(model) == 0 and warn:
            warnings.warn(
                f"model '{s.model}' has no BatchNorm2d layers, so DAR-BN has nothing to route: noise "
                "images share every layer with natural images and their gradients reach every layer "
                f"(noise_grad: {s.noise_grad} has no effect), as with bn_mode: standard rather than "
                "DAR-BN (docs/method.md, section 4). OPeN still runs; for OPeN as published use a model "
                "with BatchNorm layers",
                stacklevel=2,
            )
        convert_darbn(model, noise_grad=s.noise_grad, bn_mode=s.bn_mode)
    return model


# Keys that shape the training before the defer epoch: a branch must share all of them.
# A resumed run may change only what does not alter its results.
FREE_ON_RESUME = keys_in_scope(FREE)


def check_branch_compatible(parent: Mapping[str, Any], s: Settings, path: Path, *, same_run: bool) -> None:
    """Refuse a resume/branch whose settings would not continue the same computation.

    ``parent`` is the config saved in the checkpoint at ``path``; ``s`` this run's settings.
    """
    if same_run:
        keys = [k for k in SCHEMA if k not in FREE_ON_RESUME]
    else:
        keys = list(keys_in_scope(SHARED))
        if saved_value(parent, "method") == "rs" or s.method == "rs":
            raise ConfigError(f"--init-from {path}: 'rs' samples class-balanced from epoch 0 and shares no "
                              "first phase; branch erm/drs/open runs only")
    here = s.as_dict()
    diff = [k for k in keys if saved_value(parent, k) != here[k]]
    if diff:
        details = "; ".join(f"{k}: {saved_value(parent, k)!r} there, {here[k]!r} here" for k in diff)
        what = "resume" if same_run else "branch from"
        raise ConfigError(f"cannot {what} {path}: the configs differ in {details}")


def load_model_state(model: nn.Module, state: Mapping[str, torch.Tensor], source: Path | str) -> None:
    """Load weights, naming the keys and shapes that differ when a checkpoint does not fit."""
    own = model.state_dict()
    # A plain-BN checkpoint feeding an aux-BN model: the noise branches start as copies.
    for k in list(own):
        if ".aux_bn." in k and k not in state:
            state = {**state, k: state.get(k.replace(".aux_bn.", "."), own[k])}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if shapes:
            parts.append(f"shapes differ (checkpoint vs model): {', '.join(shapes[:5])}")
        if missing:
            parts.append(f"missing in the checkpoint: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
        if unexpected:
            parts.append(f"not in the model: {', '.join(unexpected[:5])}{' ...' if len(unexpected) > 5 else ''}")
        raise ModelError(f"checkpoint {source} does not fit this model ({'; '.join(parts)}); was it trained "
                         "with another model or number of classes?")
    model.load_state_dict(state)


def loss_options(s: Settings) -> dict[str, Any]:
    """Loss options; deferred re-weighting starts at the run's defer epoch unless told otherwise."""
    options = dict(s.loss_options)
    if s.loss == "drw" and s.defer_epoch is not None:
        options.setdefault("drw_epoch", s.defer_epoch)
    return options


def export_state(model: nn.Module, s: Settings, info: Any, class_counts: Sequence[int]) -> dict:
    """What ``predict`` and ``eval`` need: plain-BN weights and how to build and feed the model."""
    return {
        "kind": "model",
        "model": model.state_dict(),
        "config": s.as_dict(),
        "model_name": s.model,
        "model_options": model_options(s),
        "num_classes": info.num_classes,
        "in_chans": info.channels,
        "class_names": list(info.class_names),
        "class_counts": list(class_counts),
        "image_size": list(info.image_size),
        "mean": list(info.mean),
        "std": list(info.std),
    }


def load_for_inference(path: str | Path, device: torch.device, data: Any = None,
                       state: dict[str, Any] | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The model of a checkpoint in eval mode on ``device``, and what is needed to feed it.

    Nothing the file says triggers an action: it is loaded with ``weights_only``, the model is
    built without pretrained weights (so nothing is downloaded) and no dataset is built here.
    ``model.pt`` holds its classes and normalization; a training checkpoint takes them from
    ``data``, the dataset the caller built, and without it is refused.

    Args:
        path: The checkpoint (a run's ``model.pt``, or a training checkpoint with ``data``).
        device: Where the model runs.
        data: The caller's :class:`RunData`, for a training checkpoint.
        state: The file's content, when the caller has loaded it already.

    Returns:
        ``(model, meta)``: meta has ``num_classes``, ``in_chans``, ``class_names``,
        ``class_counts``, ``image_size``, ``mean``, ``std``, ``model_name``, ``model_options``.
    """

    state = load_checkpoint(path) if state is None else state
    validate_checkpoint(state, path)
    if state.get("kind") == "model":
        meta = state
    elif data is None:
        raise PureNoiseError(
            f"{path} is a training checkpoint, which does not record the class names and input "
            f"normalization that predict needs; use the run's exported model "
            f"({RunPaths(Path(path).parent.parent).model} for a run folder's checkpoints/{Path(path).name})"
        )
    else:  # a training checkpoint: the metadata of the dataset it was trained on
        trained = settings(validate_config(state["config"], f"the config of {path}"))
        meta = {"num_classes": data.info.num_classes, "in_chans": data.info.channels,
                "class_names": list(data.info.class_names),
                "class_counts": state.get("class_counts", list(data.class_counts)),
                "image_size": list(data.info.image_size), "mean": list(data.info.mean or ()),
                "std": list(data.info.std or ()), "model_name": trained.model,
                "model_options": model_options(trained)}
        validate_checkpoint({**state, **meta, "kind": "model"}, path)  # the dataset's side of it too
    # Only a model purenoise builds from its own code, and never with weights from elsewhere: the
    # checkpoint's own weights replace them anyway.
    check_model_source(meta["model_name"], meta["model_options"], path)
    options = {**meta["model_options"], "pretrained": False, "download": False}
    model = revert_darbn(create_model(meta["model_name"], meta["num_classes"], in_chans=meta["in_chans"], **options))
    weights = state["model"]
    if state.get("kind") != "model" and any(".aux_bn." in k for k in weights):
        weights = {k: v for k, v in weights.items() if ".aux_bn." not in k}
    check_weights(weights, model.state_dict(), path)
    load_model_state(model, weights, path)
    model.to(device).eval()
    return model, meta
