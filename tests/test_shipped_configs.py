"""Every recipe under configs/ loads, validates and names registered datasets and models."""
from __future__ import annotations

from pathlib import Path

import pytest

from purenoise.config import load_config
from purenoise.schemes import SCHEMES
from purenoise.data import list_datasets
from purenoise.models import list_models

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*/*.yaml"))
RECIPES = [p for p in CONFIGS if p.parent.name != "_base"]


def test_there_are_recipes_for_every_setting():
    settings = {p.parent.name for p in RECIPES}
    assert {"cifar10_lt_r100", "cifar10_lt_r50", "cifar100_lt_r100", "cifar100_lt_r50", "celeba5",
            "imagenet_lt", "places_lt", "cifar10_balanced", "fmnist_lt_r100", "fmnist_lt_r50"} <= settings
    for setting in ("cifar10_lt_r100", "cifar100_lt_r100", "fmnist_lt_r100"):
        names = {p.stem for p in RECIPES if p.parent.name == setting}
        assert {"erm", "rs", "drs", "open", "open_bn_aux", "open_bn_standard"} <= names


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_loads_and_accepts_the_common_keys(path):
    cfg = load_config(path)
    assert cfg["dataset"] in list_datasets()
    assert cfg["model"] in list_models(), cfg["model"]
    over = load_config(path, ["epochs=7", "seed=3", "defer_epoch=5", "batch_size=16", "delta=0.5"])
    assert (over["epochs"], over["seed"], over["defer_epoch"], over["batch_size"], over["delta"]) == (7, 3, 5, 16, 0.5)
    if path.parent.name != "_base":
        # The file name starts with the scheme it runs: configs/<setting>/<method>[_variant].yaml
        assert cfg["method"] in SCHEMES
        assert path.stem == cfg["method"] or path.stem.startswith(cfg["method"] + "_")


def test_paper_cifar_recipe_values():
    cfg = load_config(Path(__file__).parents[1] / "configs" / "cifar10_lt_r100" / "open.yaml")
    assert (cfg["model"], cfg["epochs"], cfg["defer_epoch"], cfg["batch_size"]) == ("wrn28_10", 200, 160, 128)
    assert (cfg["lr"], cfg["momentum"], cfg["weight_decay"], cfg["warmup_epochs"]) == (0.1, 0.9, 2e-4, 5)
    assert (cfg["milestones"], cfg["lr_decay"], cfg["augment"]) == ([160, 180], 0.01, "cifar_simclr")
    assert cfg["delta"] == pytest.approx(1 / 3) and cfg["bn_mode"] == "darbn"
    assert cfg["noise_grad"] == "classifier" and cfg["ratio"] == 100
