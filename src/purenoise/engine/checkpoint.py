"""Full-state checkpoints that load without running code.

A checkpoint is written atomically (:func:`purenoise.fileio.atomic_write`: temporary file in the
target folder, fsync, rename), so a crash or kill at any moment leaves either the previous file
or the new one, never a torn file.

Checkpoints are read with ``torch.load(weights_only=True)``: only tensors, numbers, strings,
lists, tuples, sets and mappings are rebuilt, so a file crafted to run code on unpickling (an
object whose ``__reduce__`` calls ``os.system``) is refused before anything in it runs. What is
saved is checked to be made of those types, so every checkpoint purenoise writes loads that way.
"""
from __future__ import annotations

import io
import os
import pickle
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from purenoise.errors import ConfigError, ModelError, PureNoiseError
from purenoise.fileio import atomic_write

__all__ = ["save_checkpoint", "load_checkpoint", "check_loadable", "load_optimizer_state", "CHECKPOINT_FORMAT"]

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
            "purenoise wrote (model.pt, checkpoints/*.pt) and that come from people you trust"
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
