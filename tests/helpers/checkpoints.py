"""Comparing the weights two runs saved: bit-identity is how resume and branching are tested."""
from __future__ import annotations

from pathlib import Path

import torch

from purenoise.engine.checkpoint import load_checkpoint


def weights(path: Path) -> dict:
    """The model state saved in the checkpoint at ``path``."""
    return load_checkpoint(path)["model"]


def assert_same_weights(a: dict, b: dict) -> None:
    """Every tensor of ``a`` equals ``b``'s bit for bit, and they hold the same keys."""
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
