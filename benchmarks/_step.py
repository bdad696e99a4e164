"""The trainer's training step (``purenoise.engine.step.train_step``) on a fixed batch, for the
ERM-vs-OPeN benchmarks (CPU and GPU).

normalized batch -> OPeN (when given: noise rows last) -> routed forward (``noise_pass``: the
trainer's default "auto" forwards noise rows in a pass of their own, "joint" in one pass with
the natural rows) -> cross-entropy -> backward (scaled under fp16) -> gradient clipping (when
given) -> SGD step -> scheduler step: the function the trainer runs, configured as the trainer
configures it (split blockers worked out once, a GradScaler enabled only for fp16, a per-step
learning-rate scheduler).
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from purenoise import OPeN, PureNoise, convert_darbn
from purenoise.darbn import split_blockers
from purenoise.engine.step import train_step

AMP_MODES = {None: "none", torch.bfloat16: "bf16", torch.float16: "fp16"}


def make_pair(model: nn.Module, device: torch.device, channels_last: bool = False):
    """(ERM model, OPeN model): the same weights, the second with DAR-BN layers."""
    erm = model.to(device)
    open_model = convert_darbn(copy.deepcopy(erm))
    if channels_last:
        erm = erm.to(memory_format=torch.channels_last)
        open_model = open_model.to(memory_format=torch.channels_last)
    return erm, open_model


def make_open(counts, channels: int, delta: float = 1 / 3) -> OPeN:
    """OPeN with the paper's delta: on CIFAR-10-LT (ratio 100) counts, 25% of a balanced batch is noise."""
    mean, std = [0.45] * channels, [0.25] * channels
    return OPeN(counts, delta, noise=PureNoise(mean, std), normalize=(mean, std))


class Step:
    """A callable training step of ``model`` on one fixed batch; ``open_`` makes it an OPeN step.

    The scheduler keeps the learning rate constant (a ``LambdaLR`` of factor 1, stepped every
    call as the trainer steps its own), so repeated calls do the same work and the weights do
    not drift with the number of repetitions. ``optimizer`` replaces the default SGD (e.g. a
    fused one); it must hold ``model``'s parameters.
    """

    def __init__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                 open_: OPeN | None = None, amp: torch.dtype | None = None, seed: int = 0,
                 lr: float = 0.01, noise_pass: str = "auto", grad_clip: float | None = None,
                 optimizer: torch.optim.Optimizer | None = None) -> None:
        self.model, self.images, self.labels, self.open_ = model, images, labels, open_
        self.noise_pass, self.grad_clip = noise_pass, grad_clip
        self.opt = optimizer or torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=2e-4)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda step: 1.0)
        self.amp = AMP_MODES[amp]
        self.scaler = torch.amp.GradScaler(images.device.type, enabled=self.amp == "fp16")
        self.blockers = split_blockers(model)  # the trainer works them out once per run
        self.gen = torch.Generator(images.device).manual_seed(seed)
        self.noise_counts: list[int] = []

    def __call__(self) -> int:
        out = train_step(self.model, self.images, self.labels, criterion=F.cross_entropy, optimizer=self.opt,
                         noise=self.open_, generator=self.gen, amp=self.amp, noise_pass=self.noise_pass,
                         blockers=self.blockers, scaler=self.scaler, scheduler=self.scheduler,
                         grad_clip=self.grad_clip)
        self.noise_counts.append(out.n_noise)
        return out.n_noise
