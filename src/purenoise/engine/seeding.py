"""Named random streams derived from one run seed.

Every random draw of a run is a pure function of the run's seed and *where* it happens (a
name, the epoch, the step or the sample's position in the epoch), never of how many draws came
before in some shared generator. So a run repeats bit for bit on the CPU, the number of
DataLoader workers does not change the result, and a resumed run continues exactly.
"""
from __future__ import annotations

import random
import zlib

import numpy as np
import torch

__all__ = ["derive_seed", "seed_everything", "rng_state", "set_rng_state"]

_MASK63 = (1 << 63) - 1


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit seed for the stream named by ``keys`` (strings and integers) under ``seed``."""
    words = [int(seed) & 0xFFFFFFFF, int(seed) >> 32]
    for k in keys:
        words.append(zlib.crc32(k.encode()) if isinstance(k, str) else int(k) & 0xFFFFFFFF)
    state = np.random.SeedSequence(words).generate_state(2, dtype=np.uint32)
    return ((int(state[0]) << 32) | int(state[1])) & _MASK63


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (all devices)."""
    random.seed(seed)
    np.random.seed(seed & 0xFFFFFFFF)
    torch.manual_seed(seed)


def _numpy_state() -> dict:
    """NumPy's global generator state as a tensor and plain numbers (loadable with ``weights_only``)."""
    name, key, pos, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "bit_generator": str(name),
        "key": torch.from_numpy(key.astype(np.int64)),  # uint32 words, exactly representable
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached_gaussian),
    }


def _numpy_tuple(state: dict | tuple) -> tuple:
    """The tuple ``np.random.set_state`` takes, from :func:`_numpy_state`'s dict.

    A tuple, as ``np.random.get_state()`` returns it and as older checkpoints hold it, is
    passed through unchanged.
    """
    if not isinstance(state, dict):
        return tuple(state)
    key = state["key"].numpy() if isinstance(state["key"], torch.Tensor) else np.asarray(state["key"])
    return (state["bit_generator"], key.astype(np.uint32), int(state["pos"]), int(state["has_gauss"]),
            float(state["cached_gaussian"]))


def rng_state() -> dict:
    """Global generator states, for checkpoints: tensors and plain Python values only."""
    state = {
        "python": random.getstate(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned (or the NumPy tuple state of older checkpoints)."""
    random.setstate(state["python"])
    np.random.set_state(_numpy_tuple(state["numpy"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
