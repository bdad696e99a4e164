"""A tiny long-tailed image folder and config for end-to-end runs of the trainer and CLI."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

COUNTS = [48, 24, 12, 6]  # a long tail over four classes
TEST_PER_CLASS = 6


def write_folder(root: Path, counts=COUNTS, test_per_class=TEST_PER_CLASS, size=16, seed=0) -> Path:
    """Class k images are noisy squares of a class-specific colour (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    colours = np.array([[220, 40, 40], [40, 200, 40], [40, 40, 220], [200, 200, 40]])
    for split, per_class in (("train", counts), ("test", [test_per_class] * len(counts))):
        for k, n in enumerate(per_class):
            d = root / split / f"class{k}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = rng.integers(0, 60, size=(size, size, 3))
                img[4:12, 4:12] = colours[k] + rng.integers(-20, 20, size=3)
                Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(d / f"{i}.png")
    return root


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("tiny_folder"))


def tiny_config(folder: Path, **overrides) -> dict:
    cfg = {
        "dataset": "folder",
        "data_root": str(folder),
        "model": "resnet_small",
        "method": "erm",
        "epochs": 2,
        "defer_epoch": 1,
        "batch_size": 16,
        "lr": 0.05,
        "warmup_epochs": 0,
        "milestones": [],
        "weight_decay": 0.0005,
        "augment": "cifar_basic",
        "workers": 0,
        "progress": False,
        "device": "cpu",
        "delta": 1.0,
    }
    cfg.update(overrides)
    return cfg


@pytest.fixture
def write_config(tmp_path, tiny_folder):
    def write(**overrides) -> Path:
        path = tmp_path / f"cfg_{len(list(tmp_path.glob('cfg_*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump(tiny_config(tiny_folder, **overrides)))
        return path
    return write
