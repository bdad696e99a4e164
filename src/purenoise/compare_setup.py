"""The settings of ``purenoise compare``: a user's config or image folder, with defaults that fit it.

A folder of images says nothing about the model or the schedule, so ``compare`` fills what the
user did not set: a model sized to the images (:func:`model_for_size`) and the paper's schedule
shape scaled to the number of epochs (:func:`scaled_schedule`). Every filled value is said in
words, printed and written to the runs' config, so a user can see it and override it with
``--set``. Keys the user's config or ``--set`` gave are never changed.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from purenoise.config import SCHEMA, apply_overrides, settings, validate_config
from purenoise.config_io import load_config_file
from purenoise.settings import Settings

__all__ = ["SMALL_MODEL_MAX", "SMALL_STEM_MAX", "scaled_schedule", "model_for_size", "user_config",
           "fill_defaults", "base_config"]

#: Largest image side (px) for ``resnet_small``; above it torchvision's ``resnet18``.
SMALL_MODEL_MAX = 64
#: Below this side (px) ``resnet18`` gets the small-image stem (3x3 stride-1 conv, no max-pool).
SMALL_STEM_MAX = 128
#: Keys each run of a comparison sets itself.
PER_RUN_KEYS = ("method", "seed", "name")


def scaled_schedule(epochs: int) -> dict[str, Any]:
    """The paper's schedule shape (200 epochs: warm-up 5, lr x0.01 at 160 and 180, switch at 160)
    scaled to ``epochs``.

    Warm-up is 2.5% of the epochs (at least one when there are 10 or more, none below that), the
    learning rate drops x0.01 at 80% and again at 90% of the epochs, and DRS/OPeN switch at 80%.
    Fractions are rounded down, so the switch comes before the last epoch from two epochs on.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    warmup = max(1, (epochs + 20) // 40) if epochs >= 10 else 0  # 2.5%, rounded half up
    milestones = sorted({epochs * 8 // 10, epochs * 9 // 10} - {0})
    return {"warmup_epochs": warmup, "schedule": "step", "milestones": milestones, "lr_decay": 0.01,
            "defer_epoch": epochs * 8 // 10}


def model_for_size(image_size: Sequence[int]) -> tuple[str, dict[str, Any]]:
    """The model for images of ``image_size`` (H, W): ``resnet_small`` up to 64 px, else
    ``resnet18``, with the small-image stem below 128 px."""
    side = max(int(s) for s in image_size)
    if side <= SMALL_MODEL_MAX:
        return "resnet_small", {}
    if side < SMALL_STEM_MAX:
        return "resnet18", {"small_input": True}
    return "resnet18", {}


def user_config(config: str | Path | None, data: str | Path | None, sets: Sequence[str],
                epochs: int | None) -> dict[str, Any]:
    """What the user said: the config file (bases merged) or an image folder, then ``--set`` and
    ``--epochs``. Not validated and not filled: the keys present are the user's."""
    raw = load_config_file(Path(config)) if config is not None else {}
    if data is not None:
        raw.update(dataset="folder", data_root=str(Path(data).expanduser().resolve()))
    raw = apply_overrides(raw, sets)
    if epochs is not None:
        raw["epochs"] = epochs
    return raw


def _image_size(raw: Mapping[str, Any]) -> tuple[int, int]:
    """The size the dataset's images are trained at (a folder: the most common size)."""
    from purenoise.data import create_dataset, dataset_options

    name = raw["dataset"]
    valid = dataset_options(name)
    options = dict(raw.get("dataset_options") or {})
    for key, cfg_key in (("ratio", "ratio"), ("profile", "profile"), ("seed", "subset_seed"),
                         ("skip_corrupt", "skip_corrupt")):
        if key in valid and raw.get(cfg_key) is not None:
            options.setdefault(key, raw[cfg_key])
    options["stats"] = False  # only the size is needed here: each run computes (or reads) the statistics
    info = create_dataset(name, raw.get("data_root"), download=False, **options).info
    return tuple(info.image_size)  # type: ignore[return-value]


def fill_defaults(raw: Mapping[str, Any], image_size: Sequence[int] | None = None) -> tuple[dict[str, Any], list[str]]:
    """``raw`` with the model and the scaled schedule filled where the user did not set them.

    Returns the filled config (a draft, not validated) and one line per filled value, in words. The
    image size is read from the dataset only when the model must be chosen and ``image_size`` is
    not given.
    """
    draft = {k: v for k, v in raw.items() if k not in PER_RUN_KEYS}
    given = [f"{k}: {raw[k]!r}" for k in PER_RUN_KEYS if raw.get(k) is not None]
    notes = [f"not used: {', '.join(given)} (compare sets the method, seed and name of each run)"] if given else []
    if "model" not in draft:
        if "dataset" not in draft:
            validate_config(draft)  # names the missing key
        size = tuple(image_size) if image_size is not None else _image_size(draft)
        model, options = model_for_size(size)
        draft["model"] = model
        user_options = dict(draft.get("model_options") or {})
        draft["model_options"] = {**options, **user_options}
        shown = f"{model}" + "".join(f" with {k}: {str(v).lower()}" for k, v in options.items() if k not in user_options)
        notes.append(f"default model: {shown} (images {size[0]}x{size[1]} px; --set model=NAME to choose another)")
    epochs = draft.get("epochs", SCHEMA["epochs"].default)
    schedule = scaled_schedule(epochs) if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs >= 1 else {}
    filled = {k: v for k, v in schedule.items() if k not in draft}
    draft.update(filled)
    if filled:
        words = {"warmup_epochs": "warm-up {} epochs", "schedule": "{} schedule", "milestones": "lr x0.01 at epochs {}",
                 "lr_decay": "decay x{}", "defer_epoch": "DRS/OPeN switch at epoch {}"}
        said = ", ".join(words[k].format(", ".join(map(str, v)) if isinstance(v, list) else v)
                         for k, v in filled.items() if k != "lr_decay")
        notes.append(f"default schedule for {epochs} epochs, the paper's shape scaled: {said} "
                     f"({', '.join(sorted(filled))} filled; --set KEY=VALUE to choose)")
    return draft, notes


def base_config(raw: Mapping[str, Any], image_size: Sequence[int] | None = None) -> tuple[Settings, list[str]]:
    """The settings every run of the comparison starts from (method ERM, seed 0), validated, and
    the lines that say which defaults were filled."""
    draft, notes = fill_defaults(raw, image_size)
    return settings(validate_config(draft)), notes
