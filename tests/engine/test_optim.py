"""The learning-rate schedules of the recipes, against values computed by hand."""
from __future__ import annotations

import math

import pytest
import torch

from purenoise.config import settings, validate_config
from purenoise.engine.optim import create_optimizer, create_scheduler, lr_factor, optimizer_kwargs, schedule_kwargs

PAPER = {"warmup_epochs": 5, "schedule": "step", "milestones": [160, 180], "lr_decay": 0.01, "epochs": 200}


def test_paper_schedule_warmup_and_two_decays():
    spe = 97  # CIFAR-10-LT: 12,406 images // 128
    # Linear warm-up reaching the peak at the last step of epoch 5.
    assert lr_factor(0, spe, **PAPER) == pytest.approx(1 / (5 * spe))
    assert lr_factor(5 * spe - 1, spe, **PAPER) == pytest.approx(1.0)
    assert lr_factor(5 * spe, spe, **PAPER) == 1.0
    assert lr_factor(160 * spe - 1, spe, **PAPER) == 1.0
    assert lr_factor(160 * spe, spe, **PAPER) == pytest.approx(0.01)
    assert lr_factor(180 * spe - 1, spe, **PAPER) == pytest.approx(0.01)
    assert lr_factor(180 * spe, spe, **PAPER) == pytest.approx(1e-4)


def test_cosine_and_constant():
    cosine = {**PAPER, "schedule": "cosine", "warmup_epochs": 0, "epochs": 10}
    assert lr_factor(0, 10, **cosine) == 1.0
    assert lr_factor(50, 10, **cosine) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    assert lr_factor(99, 10, **cosine) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.99)))
    assert lr_factor(123, 10, **{**cosine, "schedule": "constant"}) == 1.0


def test_scheduler_steps_per_iteration_and_optimizer_settings():
    model = torch.nn.Linear(3, 2)
    sgd = {"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 2e-4, "nesterov": True, "betas": [0.9, 0.999]}
    opt = create_optimizer(model, **sgd)
    assert opt.defaults["momentum"] == 0.9 and opt.defaults["nesterov"] and opt.defaults["weight_decay"] == 2e-4
    sched = create_scheduler(opt, 4, **PAPER)
    lrs = []
    for _ in range(25):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[0] == pytest.approx(0.1 / 20) and lrs[19] == pytest.approx(0.1) and lrs[24] == pytest.approx(0.1)
    adam = create_optimizer(model.parameters(), **{**sgd, "name": "adam", "lr": 1e-3, "weight_decay": 0.0})
    assert isinstance(adam, torch.optim.Adam) and adam.defaults["betas"] == (0.9, 0.999)
    with pytest.raises(ValueError, match="adamw"):
        create_optimizer(model, **{**sgd, "name": "lamb"})


def test_settings_give_the_factories_their_arguments():
    """A run's settings become the factories' keyword arguments, key for key."""
    s = settings(validate_config({"dataset": "folder", "model": "resnet_small", "optimizer": "adamw", "lr": 0.01,
                                  "betas": [0.8, 0.99], "schedule": "cosine", "epochs": 30, "warmup_epochs": 2}))
    assert optimizer_kwargs(s) == {"name": "adamw", "lr": 0.01, "momentum": 0.9, "nesterov": False,
                                   "weight_decay": 2e-4, "betas": [0.8, 0.99]}
    assert schedule_kwargs(s) == {"schedule": "cosine", "warmup_epochs": 2.0, "milestones": [160, 180],
                                  "lr_decay": 0.01, "epochs": 30}
    opt = create_optimizer(torch.nn.Linear(3, 2), **optimizer_kwargs(s))
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.8, 0.99)
    assert lr_factor(0, 10, **schedule_kwargs(s)) == pytest.approx(1 / 20)
