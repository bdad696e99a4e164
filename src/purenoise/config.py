"""Training configuration: YAML files with inheritance, ``--set`` overrides and strict validation.

A config is a flat mapping of the keys in :data:`SCHEMA` (plus three ``*_options`` mappings
passed through to the dataset, model and loss factories). A file may start from other files
with ``base: path.yaml`` (or a list of paths, relative to the file); later values win and
``*_options`` mappings merge key by key. Every problem raises :class:`ConfigError` naming the
file, line or key and what would be valid.
"""
from __future__ import annotations

import copy
import difflib
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from purenoise.config_checks import check_options, cross_checks, scale_milestones, where_text
from purenoise.config_io import load_config_file, load_yaml, merge, not_plain, shown
from purenoise.errors import ConfigError
from purenoise.settings import Settings
from purenoise.schemes import (
    BN_MODES,
    CLASS_AWARE_SAMPLINGS,
    NOISE_GRAD_MODES,
    NOISE_PASSES,
    SCHEMES,
)

__all__ = ["SCHEMA", "SCOPES", "Settings", "load_config", "apply_overrides", "validate_config", "dump_config",
           "keys_in_scope", "settings", "saved_value"]

_REQUIRED = object()
#: What a key may do across runs. ``shared``: it shapes the first phase that branched runs share,
#: so a branch must have its parent's value. ``own``: it shapes this run's result only (a branch
#: may differ from its parent, a resumed run may not). ``free``: it changes no number (where
#: files go, how fast, what is logged), so a resumed run may change it and seed replicates may
#: differ in it.
SHARED, OWN, FREE = "shared", "own", "free"
SCOPES = (SHARED, OWN, FREE)


@dataclass(frozen=True)
class Field:
    """One config key: allowed types, default, help, an optional check, and its scope (see SCOPES)."""

    types: tuple[type, ...]
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], str | None] | None = None
    nullable: bool = False
    scope: str = ""

    def __post_init__(self) -> None:
        if self.scope not in SCOPES:
            raise ValueError(f"a config field needs a scope among {SCOPES}, got {self.scope!r}")


def _range(lo: float | None = None, hi: float | None = None, lo_open=False, hi_open=False):
    def check(v):
        if lo is not None and (v < lo or (lo_open and v == lo)):
            return f"must be {'>' if lo_open else '>='} {lo}"
        if hi is not None and (v > hi or (hi_open and v == hi)):
            return f"must be {'<' if hi_open else '<='} {hi}"
        return None
    return check


def _list_of(kind: type, n: int | None = None, check=None):
    def item_ok(x):
        if isinstance(x, bool):
            return False
        return isinstance(x, (int, float)) if kind is float else isinstance(x, kind)

    def fn(v):
        if not all(item_ok(x) for x in v):
            return f"must be a list of {'number' if kind is float else 'integer'}s"
        if n is not None and len(v) != n:
            return f"must have {n} items"
        return check(v) if check else None
    return fn


def _sorted_nonneg(v):
    if any(x < 0 for x in v) or list(v) != sorted(v):
        return "must be non-negative epochs in increasing order"
    return None


def _betas(v):
    if not all(0 <= x < 1 for x in v):
        return "must be two numbers in [0, 1)"
    return None


#: Largest magnitude of a number key: training computes in float32 and int64, which hold no more.
_FLOAT_MAX, _INT_MAX = 3.4028234663852886e38, 2**63 - 1
INT, FLOAT, STR, BOOL, LIST, DICT = (int,), (float, int), (str,), (bool,), (list,), (dict,)

SCHEMA: dict[str, Field] = {
    # run
    "name": Field(STR, None, "run name (default: the config file's folder and name)", nullable=True, scope=FREE),
    "seed": Field(INT, 0, "seed of every random draw of the run (sampler, noise, augmentation, init)", check=_range(0), scope=SHARED),
    "device": Field(STR, "auto", "'auto' (cuda if available), 'cpu', 'cuda' or 'cuda:N'", scope=FREE),
    # data
    "dataset": Field(STR, _REQUIRED, "dataset name (purenoise data list)", scope=SHARED),
    "data_root": Field(STR, None, "folder holding the dataset files (default: the dataset's usual place)", nullable=True, scope=FREE),
    "download": Field(BOOL, False, "allow torchvision to download the dataset into data_root", scope=FREE),
    "ratio": Field(FLOAT, None, "imbalance ratio n_max / n_min of the long-tailed subset", check=_range(1), nullable=True, scope=SHARED),
    "profile": Field(STR, "exp", "long-tail profile", choices=("exp", "step"), scope=SHARED),
    "subset_seed": Field(INT, 0, "seed of the long-tailed subset (0: the field's standard LDAM-DRW subset)", check=_range(0), scope=SHARED),
    "dataset_options": Field(DICT, {}, "extra options for create_dataset", scope=SHARED),
    "augment": Field(STR, "auto", "training transform preset ('auto': the dataset's default)", scope=SHARED),
    "test_transform": Field(STR, "auto", "evaluation transform preset ('auto': the dataset's default)", scope=OWN),
    "loader": Field(STR, "torch", "'torch' (DataLoader with workers) or 'device' (whole train set, sampling and augmentation on the device; presets cifar_basic, cifar_cutout, cifar_simclr, fmnist_basic, test)", choices=("torch", "device"), scope=SHARED),
    "workers": Field(INT, 2, "DataLoader worker processes", check=_range(0), scope=FREE),
    "skip_corrupt": Field(BOOL, False, "skip unreadable images (counted and reported) instead of stopping", scope=OWN),
    # model
    "model": Field(STR, _REQUIRED, "model name (purenoise models list)", scope=SHARED),
    "model_options": Field(DICT, {}, "extra options for create_model", scope=SHARED),
    "pretrained": Field(BOOL, False, "start from the model's pretrained weights", scope=SHARED),
    # method
    "method": Field(STR, "erm", "training scheme", choices=SCHEMES, scope=OWN),
    "defer_epoch": Field(INT, None, "epoch at which drs/open switch to class-balanced sampling (and noise)", check=_range(0), nullable=True, scope=OWN),
    "delta": Field(FLOAT, 1 / 3, "OPeN replacement strength: p_c = delta * (1 - n_c / n_max)", check=_range(0, 1), scope=OWN),
    "noise": Field(STR, "gaussian", "pure-noise distribution", choices=("gaussian", "uniform"), scope=SHARED),
    "noise_ratio": Field(FLOAT, 0.25, "noise_aug: noise images added per natural image (0.25 is the paper's 1:4; at most 16)", check=_range(0, 16, lo_open=True), scope=OWN),
    "bn_mode": Field(STR, "darbn", "how BatchNorm treats noise rows", choices=BN_MODES, scope=OWN),
    "noise_grad": Field(STR, "classifier", "where noise gradients reach", choices=NOISE_GRAD_MODES, scope=OWN),
    "noise_pass": Field(STR, "auto", "'split': noise rows take their own forward pass (same result, skips their zero gradients), 'joint': one pass, 'auto': split where exact", choices=NOISE_PASSES, scope=OWN),
    "sampling": Field(STR, "balanced", "class-aware sampling of rs/drs/open", choices=CLASS_AWARE_SAMPLINGS, scope=OWN),
    # loss
    "loss": Field(STR, "ce", "loss name (ce, cb, drw, ldam, balanced_softmax, logit_adjust)", scope=SHARED),
    "loss_options": Field(DICT, {}, "extra options for create_loss", scope=SHARED),
    # optimization
    "epochs": Field(INT, 200, "number of training epochs", check=_range(1), scope=SHARED),
    "batch_size": Field(INT, 128, "batch size per process", check=_range(1), scope=SHARED),
    "optimizer": Field(STR, "sgd", "optimizer", choices=("sgd", "adam", "adamw"), scope=SHARED),
    "lr": Field(FLOAT, 0.1, "peak learning rate", check=_range(0, lo_open=True), scope=SHARED),
    "momentum": Field(FLOAT, 0.9, "SGD momentum", check=_range(0, 1, hi_open=True), scope=SHARED),
    "nesterov": Field(BOOL, False, "Nesterov momentum for SGD", scope=SHARED),
    "weight_decay": Field(FLOAT, 2e-4, "weight decay", check=_range(0), scope=SHARED),
    "betas": Field(LIST, [0.9, 0.999], "Adam betas", check=_list_of(float, 2, check=_betas), scope=SHARED),
    "schedule": Field(STR, "step", "learning-rate schedule after warm-up", choices=("step", "cosine", "constant"), scope=SHARED),
    "warmup_epochs": Field(FLOAT, 5, "linear warm-up length in epochs", check=_range(0), scope=SHARED),
    "milestones": Field(LIST, [160, 180], "epochs at which the step schedule multiplies lr by lr_decay", check=_list_of(int, check=_sorted_nonneg), scope=SHARED),
    "lr_decay": Field(FLOAT, 0.01, "factor of each step-schedule decay", check=_range(0, 1, lo_open=True), scope=SHARED),
    "grad_clip": Field(FLOAT, None, "clip the gradient norm to this value", check=_range(0, lo_open=True), nullable=True, scope=SHARED),
    # speed
    "amp": Field(STR, "none", "mixed precision", choices=("none", "bf16", "fp16"), scope=SHARED),
    "channels_last": Field(BOOL, False, "channels_last memory format for model and inputs", scope=SHARED),
    "compile": Field(BOOL, False, "torch.compile the model", scope=FREE),
    "sync_bn": Field(BOOL, False, "synchronize (DAR-)BN statistics across processes", scope=OWN),
    # output
    "eval_every": Field(INT, 0, "also evaluate on the test set every N epochs for curves (0: only at the end)", check=_range(0), scope=FREE),
    "checkpoint_every": Field(INT, 1, "save a resumable checkpoint every N epochs", check=_range(1), scope=FREE),
    "memorization": Field(BOOL, True, "evaluate the un-augmented training set at the defer epoch and the end (per-class training accuracy and loss, noise predictions; eval.json); false to skip it on huge sets", scope=FREE),
    "save_samples": Field(BOOL, True, "save a few trained-on noise and natural images for the report", scope=FREE),
    "tensorboard": Field(BOOL, False, "also log to TensorBoard (needs the tensorboard package)", scope=FREE),
    "progress": Field(BOOL, True, "show tqdm progress bars", scope=FREE),
    "limit_batches": Field(INT, None, "stop each epoch after this many batches (quick checks)", check=_range(1), nullable=True, scope=SHARED),
}


_where = where_text  # `` in FILE`` for messages about a config read from FILE


def _closest(key: str, valid: Iterable[str]) -> str:
    if len(key) > 64:  # no key is that long; and matching it would be slow
        return ""
    match = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return f" Did you mean '{match[0]}'?" if match else ""


def parse_override(item: str) -> tuple[str, Any]:
    """Parse ``key=value`` (value as YAML: numbers, lists, null), ``a.b=value`` for options."""
    if "=" not in item:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set expects key=value, got {item!r}")
    try:
        value = load_yaml(raw, f"--set {key}") if raw.strip() else ""
    except ConfigError:  # valid YAML, but too large or endless once its aliases are expanded
        raise
    except (yaml.YAMLError, ValueError, TypeError, AttributeError, OverflowError):
        value = raw  # not YAML (or a date like 2020-02-30 that YAML cannot build): plain text
    return key, value


def apply_overrides(cfg: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``--set key=value`` items; ``model_options.depth=16`` sets one option."""
    cfg = copy.deepcopy(cfg)
    for item in overrides:
        key, value = parse_override(item)
        if "." in key:
            group, sub = key.split(".", 1)
            if not group.endswith("_options"):
                raise ConfigError(
                    f"--set {item}: only the *_options keys take dotted sub-keys "
                    f"(dataset_options, model_options, loss_options)"
                )
            cfg.setdefault(group, {})
            if not isinstance(cfg[group], dict):
                raise ConfigError(f"--set {item}: '{group}' is not a mapping")
            cfg[group][sub] = value
        else:
            cfg[key] = value
    return cfg


def _type_name(types: tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
             list: "a list", dict: "a mapping"}
    return names[types[0]]


def validate_config(raw: Mapping[str, Any], source: str | None = None) -> dict[str, Any]:
    """Check keys, types, choices and ranges; fill defaults. Returns a new dict.

    Raises:
        ConfigError: On the first problem, naming the key, the value and what is valid.
    """
    unknown = [k for k in raw if k not in SCHEMA]
    if unknown:
        k = unknown[0]
        raise ConfigError(
            f"unknown config key {shown(k)}{_where(source)}.{_closest(str(k), SCHEMA)} "
            f"Valid keys: {', '.join(sorted(SCHEMA))}"
        )
    cfg: dict[str, Any] = {}
    for key, field in SCHEMA.items():
        if key not in raw:
            if field.default is _REQUIRED:
                raise ConfigError(f"config key '{key}' is required{_where(source)}: {field.help}")
            cfg[key] = copy.deepcopy(field.default)
            continue
        value = raw[key]
        if value is None:
            if field.nullable:
                cfg[key] = None
                continue
            raise ConfigError(f"config key '{key}'{_where(source)} cannot be null: {field.help}")
        is_bool = isinstance(value, bool)
        ok = isinstance(value, field.types) and (bool in field.types or not is_bool)
        if not ok:
            raise ConfigError(
                f"config key '{key}'{_where(source)} must be {_type_name(field.types)}, "
                f"got {shown(value)} ({type(value).__name__}): {field.help}"
            )
        found = not_plain(value, key)
        if found:
            where, bad = found
            raise ConfigError(
                f"config key '{where}'{_where(source)} is {shown(bad)} ({type(bad).__name__}); values must be "
                "numbers, strings, true/false, null, lists or mappings (quote dates and other special "
                "YAML values, e.g. '2024-01-31')"
            )
        if isinstance(value, (int, float)) and not is_bool:
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"config key '{key}'{_where(source)} must be finite, got {value!r}")
            largest = _FLOAT_MAX if float in field.types else _INT_MAX
            if abs(value) > largest:
                raise ConfigError(f"config key '{key}'{_where(source)} is {shown(value)}, beyond the largest number "
                                  f"training computes with ({largest:.3g}): {field.help}")
            value = float(value) if float in field.types else value
        if field.choices is not None and value not in field.choices:
            raise ConfigError(
                f"config key '{key}'{_where(source)} is {shown(value)}; valid values: "
                f"{', '.join(map(str, field.choices))}.{_closest(str(value), map(str, field.choices))}"
            )
        if field.check is not None:
            problem = field.check(value)
            if problem:
                raise ConfigError(f"config key '{key}'{_where(source)} {problem}, got {shown(value)}: {field.help}")
        cfg[key] = copy.deepcopy(value)
    check_options(cfg, source)
    cross_checks(cfg, source, {"milestones": "milestones" in raw})
    return cfg


#: Options that purenoise passes to the dataset, model and loss factories itself, and what to do
#: instead: the same option in ``*_options`` would be given twice.
def load_config(
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Load a YAML config (with ``base`` inheritance), apply overrides and validate it.

    Args:
        path: Config file. May be ``None`` when ``base`` gives all keys.
        overrides: ``key=value`` strings, as given to ``--set``.
        base: A mapping applied before the file (e.g. a resumed run's config).

    Returns:
        The resolved config: every key of :data:`SCHEMA`, validated.
    """
    raw: dict[str, Any] = dict(base or {})
    source = None
    if path is not None:
        source = str(path)
        raw = merge(raw, load_config_file(Path(path)))
        if raw.get("name") is None:
            p = Path(path)
            raw["name"] = f"{p.parent.name}_{p.stem}" if p.parent.name else p.stem
    overrides = list(overrides)
    set_here = {parse_override(item)[0] for item in overrides}
    raw = scale_milestones(raw, apply_overrides(raw, overrides), source, "milestones" in set_here)
    return validate_config(raw, source)


def dump_config(cfg: Settings | Mapping[str, Any]) -> str:
    """The resolved config as YAML, in schema order."""
    if isinstance(cfg, Settings):
        cfg = cfg.as_dict()
    ordered = {k: cfg[k] for k in SCHEMA if k in cfg}
    return yaml.safe_dump(ordered, sort_keys=False, default_flow_style=None)


def saved_value(saved: Mapping[str, Any], key: str) -> Any:
    """The value of ``key`` in a saved config (a checkpoint's, a run folder's ``config.yaml``).

    A saved config is data from elsewhere, possibly written by another version or by hand, so it
    is read as it is: ``None`` where the key is absent, never the schema's default (a report
    shows "?" rather than a value the run may not have used).

    Raises:
        KeyError: ``key`` is not a config key (a typo in the caller, not in the file).
    """
    if key not in SCHEMA:
        raise KeyError(f"{key!r} is not a config key")
    return saved.get(key) if isinstance(saved, Mapping) else None


def keys_in_scope(scope: str) -> tuple[str, ...]:
    """The config keys of one scope (see :data:`SCOPES`), in schema order."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; choose one of {SCOPES}")
    return tuple(k for k, f in SCHEMA.items() if f.scope == scope)


def settings(cfg: Mapping[str, Any]) -> Settings:
    """The run's settings from a validated config (see :func:`validate_config`).

    Only the keys are checked here, not the values: validate a config first.

    Raises:
        ConfigError: ``cfg`` lacks schema keys or has others (it was not validated).
    """
    if isinstance(cfg, Settings):
        return cfg
    missing, extra = [k for k in SCHEMA if k not in cfg], [k for k in cfg if k not in SCHEMA]
    if missing or extra:
        raise ConfigError(f"not a validated config (missing {missing}, unknown {extra}); use load_config or "
                          "validate_config first")
    return Settings(**{k: copy.deepcopy(cfg[k]) for k in SCHEMA})
