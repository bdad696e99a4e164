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


def rng_state() -> dict:
    """Global generator states, for checkpoints."""
    state = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
