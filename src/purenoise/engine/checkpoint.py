"""Full-state checkpoints that load without running code.

A checkpoint is written atomically (:func:`purenoise.fileio.atomic_write`: temporary file in the
target folder, fsync, rename), so a crash or kill at any moment leaves either the previous file
or the new one, never a torn file.

Checkpoints are read with ``torch.load(weights_only=True)``: only tensors, numbers, strings,
lists, tuples, sets and mappings are rebuilt, so a file crafted to run code on unpickling (an
object whose ``__reduce__`` calls ``os.system``) is refused before anything in it runs. What is
saved is checked to be made of those types, so every checkpoint purenoise writes loads that way.

What loads is still data from someone else: :func:`validate_checkpoint` checks its structure
(required keys, types, ranges, weights that are real and finite, a resume position inside the
run) before any of it is used, and :mod:`purenoise.engine.trust` keeps its config from deciding
what is downloaded, unpickled, fetched from a model hub or read from where.
"""
from __future__ import annotations

import io
import math
import os
import pickle
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from purenoise.errors import ConfigError, ModelError, PureNoiseError
from purenoise.fileio import atomic_write
from purenoise.run_paths import CHECKPOINTS_DIR, MODEL_FILE

__all__ = ["save_checkpoint", "load_checkpoint", "check_loadable", "load_optimizer_state", "validate_checkpoint",
           "check_weights", "CHECKPOINT_FORMAT", "MAX_IMAGE_SIDE"]

CHECKPOINT_FORMAT = "purenoise-checkpoint-v1"


# What torch.load(weights_only=True) rebuilds: leaves and containers (exact types, no subclasses).
_LEAVES = (type(None), bool, int, float, complex, str, bytes, bytearray, torch.Size, torch.device, torch.dtype)
_TENSORS = (torch.Tensor, torch.nn.Parameter)
_MAPPINGS = (dict, OrderedDict, Counter)
_SEQUENCES = (list, tuple, set)


def _key_path(parent: str, key: Any) -> str:
    return f"{parent}.{key}" if parent else str(key)


def _first_unloadable(value: Any, where: str = "") -> tuple[str, Any] | None:
    """``(key path, value)`` of the first entry ``weights_only`` loading would refuse, else ``None``."""
    kind = type(value)
    if kind in _LEAVES or kind in _TENSORS:
        return None
    if kind in _MAPPINGS:
        for key, item in value.items():
            if type(key) not in _LEAVES:
                return _key_path(where, f"<key {key!r}>"), key
            found = _first_unloadable(item, _key_path(where, key))
            if found is not None:
                return found
        return None
    if kind in _SEQUENCES:
        for i, item in enumerate(value):
            found = _first_unloadable(item, f"{where}[{i}]")
            if found is not None:
                return found
        return None
    return where, value


def check_loadable(state: dict[str, Any]) -> None:
    """Check that ``state`` is made only of types that ``weights_only`` loading accepts.

    Raises:
        ConfigError: A config value is of another type (a YAML date, say); the message names
            the key and says how to write it instead.
        TypeError: Any other entry is; the message names its key path.
    """
    found = _first_unloadable(state)
    if found is None:
        return
    where, value = found
    if where.startswith("config."):
        raise ConfigError(
            f"config key '{where[len('config.'):]}' is {value!r} ({type(value).__name__}), which a "
            "checkpoint cannot hold; use a number, a string, true/false, null, a list or a mapping "
            "(quote dates and other special YAML values, e.g. '2024-01-31')"
        )
    raise TypeError(
        f"checkpoint entry '{where}' is a {type(value).__module__}.{type(value).__qualname__}; "
        "checkpoints hold only tensors, numbers, strings, lists, tuples, sets and mappings, so that "
        "they load with torch.load(weights_only=True)"
    )


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Check ``state`` (see :func:`check_loadable`), serialize it with ``torch.save`` and write it atomically."""
    state = {"format": CHECKPOINT_FORMAT, **state}
    check_loadable(state)
    buf = io.BytesIO()
    torch.save(state, buf)
    return atomic_write(path, buf.getbuffer())


def _legacy_numpy_globals() -> list[Any]:
    """The NumPy globals that rebuild a ``uint32`` array, and nothing else.

    Checkpoints written before the NumPy generator state was stored as a tensor hold
    ``np.random.get_state()``, whose key is a ``uint32`` ndarray. Loading them needs the array
    reconstruction function (under the module name of NumPy 2 and of NumPy 1), ``ndarray``,
    ``dtype`` and the ``uint32`` dtype class; none of these runs code named by the file.
    """
    core = getattr(np, "_core", None)
    multiarray = core.multiarray if core is not None else np.core.multiarray
    reconstruct = multiarray._reconstruct
    names = {"numpy._core.multiarray._reconstruct", "numpy.core.multiarray._reconstruct"}
    return [*((reconstruct, name) for name in sorted(names)), np.ndarray, np.dtype, type(np.dtype(np.uint32))]


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict[str, Any]:
    """Load a purenoise checkpoint with ``weights_only=True``, so nothing in the file is executed.

    Raises:
        PureNoiseError: The file is missing, torn (truncated) or not a purenoise checkpoint.
        ModelError: The file holds Python objects other than tensors and plain data (a file
            crafted to run code, or a checkpoint of another program); it is refused unread.
    """
    path = Path(path)
    if not path.is_file():
        raise PureNoiseError(f"checkpoint {path} does not exist")
    if not hasattr(torch.serialization, "safe_globals"):
        raise PureNoiseError(f"loading {path} safely needs torch >= 2.6 (torch.serialization.safe_globals); "
                             f"this is torch {torch.__version__}: upgrade it")
    try:
        with torch.serialization.safe_globals(_legacy_numpy_globals()):
            state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise ModelError(
            f"{path} is not a purenoise checkpoint, or not one from a trusted source: it holds Python "
            "objects other than tensors, numbers, strings, lists and mappings, and loading those "
            "could run code. It was refused and nothing in it was executed. Use checkpoints that "
            f"purenoise wrote ({MODEL_FILE}, {CHECKPOINTS_DIR}/*.pt) and that come from people you trust"
        ) from None
    except Exception as e:  # torch raises many types for torn or foreign files
        raise PureNoiseError(
            f"checkpoint {path} cannot be read ({type(e).__name__}: {e}); it may be truncated or "
            "not a purenoise checkpoint"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise PureNoiseError(
            f"{path} is not a purenoise checkpoint (expected format {CHECKPOINT_FORMAT}); to start "
            "from plain weights use model_options or load them into the model yourself"
        )
    return state


def load_optimizer_state(optimizer: torch.optim.Optimizer, module: torch.nn.Module, state: dict[str, Any]) -> None:
    """Load a checkpoint's optimizer state into ``optimizer`` over ``module``'s trainable parameters.

    The same parameter list (``state["param_names"]``) loads as it is. A different one (an
    auxiliary-BN branch of a plain-BN run has extra parameters) is matched by name: each parameter
    found in the checkpoint gets its saved state (momentum), the others start fresh.
    """
    names = [n for n, p in module.named_parameters() if p.requires_grad]
    saved = state["optimizer"]
    if state.get("param_names") == names:
        optimizer.load_state_dict(saved)
        return
    by_name = dict(zip(state.get("param_names", []), saved["param_groups"][0]["params"]))
    new = optimizer.state_dict()
    new["state"] = {}
    for i, n in enumerate(names):
        old = by_name.get(n)
        if old is not None and old in saved["state"]:
            new["state"][i] = saved["state"][old]
    optimizer.load_state_dict(new)


# ------------------------------------------------------------------ the structure of a checkpoint
#: The largest image side a checkpoint may ask for: far above any model purenoise trains, and
#: small enough that resizing an image to it cannot exhaust memory.
MAX_IMAGE_SIDE = 4096


def _mapping(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) for k in v)


def _int_at_least(lo: int):
    return lambda v: type(v) is int and v >= lo


def _list_of(item, *, empty: bool = False):
    return lambda v: isinstance(v, list) and (empty or len(v) > 0) and all(item(x) for x in v)


_str_list, _count_list = _list_of(lambda x: isinstance(x, str)), _list_of(_int_at_least(0))


def _finite_list(v: Any, positive: bool = False) -> bool:
    return isinstance(v, (list, tuple)) and len(v) > 0 and all(
        type(x) in (int, float) and math.isfinite(x) and (x > 0 or not positive) for x in v)


def _optimizer(v: Any) -> bool:
    groups = v.get("param_groups") if isinstance(v, dict) else None
    return isinstance(v.get("state") if isinstance(v, dict) else None, dict) and isinstance(groups, list) \
        and len(groups) > 0 and all(isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups)


def _rng(v: Any) -> bool:
    return isinstance(v, dict) and all(k in v for k in ("python", "numpy", "torch")) \
        and isinstance(v["torch"], torch.Tensor)


def _null_or_mapping(v: Any) -> bool:
    return v is None or _mapping(v)


# (key, check, what the key must be): every checkpoint, then exported models, then training state.
_COMMON = (
    ("config", _mapping, "a mapping (the run's config)"),
    ("model", lambda v: _mapping(v) and all(isinstance(t, torch.Tensor) for t in v.values()),
     "a mapping of parameter names to tensors"),
)
_EXPORTED = (
    ("model_name", lambda v: isinstance(v, str) and bool(v), "a model name"),
    ("model_options", _mapping, "a mapping of model options"),
    ("num_classes", _int_at_least(1), "an integer >= 1"),
    ("in_chans", lambda v: type(v) is int and v in (1, 3), "1 (grayscale) or 3 (RGB)"),
    ("class_names", _str_list, "a non-empty list of class names"),
    ("class_counts", _count_list, "a non-empty list of training counts (integers >= 0)"),
    ("image_size", lambda v: isinstance(v, (list, tuple)) and len(v) == 2
     and all(type(x) is int and 1 <= x <= MAX_IMAGE_SIDE for x in v), f"two integers from 1 to {MAX_IMAGE_SIDE}"),
    ("mean", _finite_list, "a list of finite numbers (the input normalization)"),
    ("std", lambda v: _finite_list(v, positive=True), "a list of positive finite numbers (the input normalization)"),
)
_TRAINING = (
    ("epoch", _int_at_least(0), "an integer >= 0"),
    ("batch", _int_at_least(0), "an integer >= 0"),
    ("optimizer", _optimizer, "an optimizer state (a mapping with 'state' and 'param_groups')"),
    ("scheduler", _mapping, "a learning-rate scheduler state"),
    ("scaler", _mapping, "a gradient scaler state"),
    ("rng", _rng, "the random generators' states (python, numpy, torch)"),
    ("noise_generator", lambda v: isinstance(v, torch.Tensor) and v.dtype == torch.uint8, "a noise generator state"),
)
# Keys older checkpoints may lack; when present, they are checked.
_TRAINING_OPTIONAL = (
    ("param_names", _list_of(lambda x: isinstance(x, str), empty=True), "a list of names"),
    ("world_size", _int_at_least(1), "an integer >= 1"),
    ("class_counts", _count_list, "a list of training counts (integers >= 0)"),
    ("epoch_state", _null_or_mapping, "null or a mapping"),
    ("branch", _null_or_mapping, "null or a mapping"),
    ("train_at_defer", _null_or_mapping, "null or a mapping"),
)


def _refuse(path: Any, problem: str) -> ModelError:
    return ModelError(
        f"checkpoint {path} cannot be used: {problem}. It was not written by purenoise, or was changed "
        f"since; use a checkpoint that purenoise wrote (a run's {MODEL_FILE} or {CHECKPOINTS_DIR}/*.pt)"
    )


def _check_keys(state: dict[str, Any], path: Any, schema, *, required: bool = True) -> None:
    for key, check, what in schema:
        if key not in state:
            if required:
                raise _refuse(path, f"it has no '{key}' entry ({what})")
            continue
        if not check(state[key]):
            shown = repr(state[key])
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise _refuse(path, f"its '{key}' is {shown}; it must be {what}")


def _check_exported(state: dict[str, Any], path: Any) -> None:
    _check_keys(state, path, _EXPORTED)
    n, channels = state["num_classes"], state["in_chans"]
    for key, want in (("class_names", n), ("class_counts", n), ("mean", channels), ("std", channels)):
        if len(state[key]) != want:
            what = "num_classes" if want == n else "in_chans"
            raise _refuse(path, f"its '{key}' has {len(state[key])} entries but {what} is {want}")


def check_weights(weights: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], path: Any) -> None:
    """Each tensor of ``weights`` has the kind of its counterpart in ``reference`` (the model's own
    state dict) and floating-point ones are finite: loading would otherwise cast integers or
    complex numbers silently, and NaN weights give NaN predictions (printed as "nan%")."""
    for key, tensor in weights.items():
        own = reference.get(key)
        if own is None:
            continue  # keys and shapes are compared when the weights are loaded
        if own.is_floating_point() and not tensor.is_floating_point():
            raise _refuse(path, f"weight '{key}' is {tensor.dtype}, but the model's is {own.dtype} "
                                "(floating-point weights must be real floating-point numbers)")
        if not own.is_floating_point() and (tensor.is_floating_point() or tensor.is_complex()):
            raise _refuse(path, f"entry '{key}' is {tensor.dtype}, but the model's is {own.dtype}")
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise _refuse(path, f"weight '{key}' holds NaN or infinite values")


def _check_position(state: dict[str, Any], path: Any, epochs: int, steps_per_epoch: int) -> None:
    epoch, batch = state["epoch"], state["batch"]
    if epoch > epochs or batch >= steps_per_epoch or (epoch == epochs and batch > 0):
        raise _refuse(path, f"it is at epoch {epoch}, batch {batch}, outside this run ({epochs} epochs "
                            f"of {steps_per_epoch} batches: epoch 0 to {epochs}, batch 0 to {steps_per_epoch - 1})")


def validate_checkpoint(state: dict[str, Any], path: Any, *, training: bool = False,
                        model: torch.nn.Module | None = None, epochs: int | None = None,
                        steps_per_epoch: int | None = None) -> None:
    """Check a loaded checkpoint against the structure purenoise writes, before anything uses it.

    Every checkpoint has a ``config`` mapping and ``model`` weights; an exported model
    (``kind: model``) also its classes, input size and normalization; a training checkpoint
    (with ``training``: one to resume or branch from) its position, optimizer, scheduler and
    generator states.

    Args:
        state: What :func:`load_checkpoint` returned.
        path: The file, for messages.
        training: Require the training state (resume, ``--init-from``).
        model: The model the weights go into: their dtypes are checked against its own.
        epochs, steps_per_epoch: The run's length: a resume position must lie inside it.

    Raises:
        ModelError: The first entry that is missing, of the wrong type or out of range, named.
    """
    _check_keys(state, path, _COMMON)
    if state.get("kind") == "model":
        _check_exported(state, path)
    if training:
        _check_keys(state, path, _TRAINING)
        _check_keys(state, path, _TRAINING_OPTIONAL, required=False)
    if model is not None:
        check_weights(state["model"], model.state_dict(), path)
    if epochs is not None and steps_per_epoch is not None:
        _check_position(state, path, epochs, steps_per_epoch)

