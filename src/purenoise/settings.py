"""The settings of one run, as a typed, immutable object: ``settings.lr``, ``settings.epochs``.

:class:`Settings` spells out every key of :data:`purenoise.config.SCHEMA` as a typed attribute
with the same default, so IDEs and type checkers see the fields (the package ships
``py.typed``). The schema stays the one home of each key's help, choices, checks and scope;
``tests/test_settings.py`` checks that the two agree key by key (names, order, types and
defaults). Build one from a validated config with :func:`purenoise.config.settings`; code reads
settings by attribute only, never by key.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Settings"]


@dataclass(frozen=True, kw_only=True, eq=False)
class Settings:
    """One run's validated settings; see ``purenoise config keys`` for what each one does."""

    # run
    name: str | None = None
    seed: int = 0
    device: str = "auto"
    # data
    dataset: str
    data_root: str | None = None
    download: bool = False
    ratio: float | None = None
    profile: str = "exp"
    subset_seed: int = 0
    dataset_options: dict[str, Any] = field(default_factory=dict)
    augment: str = "auto"
    test_transform: str = "auto"
    loader: str = "torch"
    workers: int = 2
    skip_corrupt: bool = False
    # model
    model: str
    model_options: dict[str, Any] = field(default_factory=dict)
    pretrained: bool = False
    # method
    method: str = "erm"
    defer_epoch: int | None = None
    delta: float = 1 / 3
    noise: str = "gaussian"
    noise_ratio: float = 0.25
    bn_mode: str = "darbn"
    noise_grad: str = "classifier"
    noise_pass: str = "auto"
    sampling: str = "balanced"
    # loss
    loss: str = "ce"
    loss_options: dict[str, Any] = field(default_factory=dict)
    # optimization
    epochs: int = 200
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 2e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    schedule: str = "step"
    warmup_epochs: float = 5
    milestones: list[int] = field(default_factory=lambda: [160, 180])
    lr_decay: float = 0.01
    grad_clip: float | None = None
    # speed
    amp: str = "none"
    channels_last: bool = False
    compile: bool = False
    sync_bn: bool = False
    # output
    eval_every: int = 0
    checkpoint_every: int = 1
    memorization: bool = True
    save_samples: bool = True
    tensorboard: bool = False
    progress: bool = True
    limit_batches: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """A deep copy as a plain dict in schema order (for checkpoints and ``config.yaml``)."""
        return {f.name: copy.deepcopy(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied (values are not validated: pass validated ones)."""
        return dataclasses.replace(self, **changes)
