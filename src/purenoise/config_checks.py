"""Checks of a config between its keys, and against the options purenoise passes itself.

:func:`~purenoise.config.validate_config` calls :func:`check_options` and :func:`cross_checks` once
every key has its own type and range, on the plain dict of ``values`` it is building (before it
becomes a :class:`~purenoise.settings.Settings`); :func:`~purenoise.config.load_config` calls
:func:`scale_milestones` when ``--set epochs=N`` shortens a file's run.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from purenoise.config_io import shown
from purenoise.errors import ConfigError
from purenoise.schemes import DEFERRED_SCHEMES

__all__ = ["check_options", "cross_checks", "scale_milestones", "where_text"]


def where_text(source: str | None) -> str:
    """`` in FILE`` for a message about a config read from FILE, else nothing."""
    return f" in {source}" if source else ""


_SET_BY_PURENOISE = {
    "dataset_options": {
        "name": "set the top-level key 'dataset' instead", "root": "set the top-level key 'data_root' instead",
        "download": "set the top-level key 'download' instead, or fetch the data once with `purenoise data info "
                    "NAME --download`",
        "transform": "set the top-level key 'augment' instead",
        "test_transform": "set the top-level key 'test_transform' instead"},
    "model_options": {
        "name": "set the top-level key 'model' instead", "pretrained": "set the top-level key 'pretrained' instead",
        "num_classes": "it is the dataset's number of classes; remove it",
        "in_chans": "it is the dataset's number of image channels; remove it"},
    "loss_options": {
        "name": "set the top-level key 'loss' instead",
        "class_counts": "it is the training set's number of images per class; remove it"},
}


def check_options(values: dict[str, Any], source: str | None) -> None:
    """Refuse ``*_options`` keys that are no option names or that purenoise sets itself."""
    where = where_text(source)
    for group, taken in _SET_BY_PURENOISE.items():
        for k in values[group]:
            if not (isinstance(k, str) and k.isidentifier()):
                raise ConfigError(f"config key '{group}'{where} has the option {shown(k)}, which is not an option "
                                  "name (letters, digits and _, e.g. model_options.depth)")
            if k in taken:
                raise ConfigError(f"config key '{group}.{k}'{where} cannot be set: purenoise passes it itself; "
                                  f"{taken[k]}")
    options = values["dataset_options"]
    if options.get("stats") is False and options.get("mean") is None:
        raise ConfigError(
            f"config key 'dataset_options.stats'{where} is false, which leaves the dataset without the "
            "per-channel mean and std that training normalizes images and noise with; remove it (purenoise "
            "computes and caches them) or give dataset_options.mean and dataset_options.std")


def cross_checks(values: dict[str, Any], source: str | None, explicit: Mapping[str, bool] | None = None) -> None:
    """Checks between keys. ``explicit[key]`` says whether the config set ``key`` (not its default)."""
    where = where_text(source)
    explicit = explicit or {}
    if values["method"] in DEFERRED_SCHEMES:
        if values["defer_epoch"] is None:
            raise ConfigError(
                f"method '{values['method']}'{where} needs 'defer_epoch', the epoch at which it switches "
                f"to class-balanced sampling (the paper: 160 of 200)"
            )
    if values["defer_epoch"] is not None and values["defer_epoch"] > values["epochs"]:
        raise ConfigError(
            f"config key 'defer_epoch'{where} is {values['defer_epoch']}, beyond the last epoch "
            f"(epochs = {values['epochs']}); it must be between 0 and {values['epochs']}"
        )
    late = [m for m in values["milestones"] if m >= values["epochs"]]
    if values["schedule"] == "step" and late and not explicit.get("milestones", True):
        # The default (the paper's 160 and 180 of 200) on a shorter run: the same shape, said aloud.
        e = values["epochs"]
        values["milestones"] = sorted({m for m in (int(0.8 * e), int(0.9 * e)) if 0 < m < e})
        print(f"note: milestones not set{where}: the default {late} lies beyond epochs = {e}, so the lr decays "
              f"at {values['milestones']} instead (80% and 90% of the run)")
        late = []
    if values["schedule"] == "step" and late:
        e = values["epochs"]
        raise ConfigError(
            f"config key 'milestones'{where} is {values['milestones']}, but {late} fall at or beyond the last "
            f"epoch (epochs = {e}), so the learning rate would never decay there; for the paper's shape "
            f"at this length use --set milestones=[{int(0.8 * e)},{int(0.9 * e)}] (and defer_epoch={int(0.8 * e)})"
        )
    if values["warmup_epochs"] > values["epochs"]:
        raise ConfigError(
            f"config key 'warmup_epochs'{where} is {values['warmup_epochs']}, longer than the run "
            f"(epochs = {values['epochs']})"
        )
    if values["amp"] == "fp16" and values["device"] == "cpu":
        raise ConfigError(f"amp 'fp16'{where} needs a CUDA device; use amp 'bf16' on the CPU")


def scale_milestones(before: dict[str, Any], after: dict[str, Any], source: str | None,
                     milestones_set: bool = False) -> dict[str, Any]:
    """``--set epochs=N`` on a file whose milestones then lie beyond the run: scale them, and say so.

    The file's milestones keep their place in the run (160 and 180 of 200 become 9 and 10 of 12),
    so a shortened run still decays its learning rate. Milestones set on the command line are the
    user's own and are only checked (:func:`cross_checks` refuses those beyond the run).
    """
    old, new, ms = before.get("epochs"), after.get("epochs"), before.get("milestones")
    if (milestones_set or old == new or not isinstance(ms, list) or not ms
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in (old, new, *ms))
            or old <= 0 or new <= 0 or max(ms) < new):
        return after
    scaled = sorted({m * new // old for m in ms if 0 < m * new // old < new})
    print(f"note: epochs = {new} instead of {old}{where_text(source)}: milestones {ms} scaled to {scaled}")
    return {**after, "milestones": scaled}
