"""The paper's deferred OPeN schedule for a plain PyTorch loop, right by construction.

A loop written by hand has four things to get right: the sampler changes from instance order to
class-balanced at the defer epoch, it draws a new order every epoch, noise replaces minority
samples only from the defer epoch on, and an OPeN batch goes through the model with DAR-BN's
routing. :class:`OPeNSchedule` owns all four, so the loop keeps only what is the user's (model,
loss, optimizer)::

    schedule = OPeNSchedule(train_set, labels, defer_epoch=160, noise=PureNoise(mean, std),
                            normalize=(mean, std), batch_size=128)
    for epoch in range(200):
        for images, targets in schedule.loader(epoch):
            logits, targets = schedule.forward(model, images, targets)
            loss = F.cross_entropy(logits, targets)
            optimizer.zero_grad(); loss.backward(); optimizer.step()

Every draw is a function of ``seed`` and the epoch (sampler order, noise), so runs repeat.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from purenoise.darbn import routed_forward
from purenoise.data.samplers import sampler_for_epoch
from purenoise.noise import PureNoise
from purenoise.open import OPeN

__all__ = ["OPeNSchedule"]


class OPeNSchedule:
    """ERM order before ``defer_epoch``, class-balanced OPeN batches with routed forwards from it on.

    Args:
        dataset: The long-tailed training set of ``(image, label)``; images as the model takes
            them, or in ``[0, 1]`` when ``normalize`` is given (then :meth:`forward` normalizes).
        labels: The label of every item of ``dataset``.
        defer_epoch: First epoch of class-balanced sampling and noise (the paper: 160 of 200;
            0 for OPeN from the start).
        delta: OPeN's replacement strength (the paper: 1/3).
        noise: A :class:`~purenoise.noise.PureNoise`; by default Gaussian noise with ``normalize``'s
            statistics, the paper's choice.
        normalize: ``(mean, std)`` per channel: inputs are normalized by :meth:`forward`, and the
            noise like them.
        seed: Seed of the sampler's order and of the noise.
        noise_pass: :func:`~purenoise.darbn.routed_forward`'s ``noise_pass``.
        **loader_kwargs: For the :class:`~torch.utils.data.DataLoader` (``batch_size``,
            ``num_workers``, ``pin_memory``, ...); ``drop_last`` defaults to True.
    """

    def __init__(self, dataset: Dataset, labels: Sequence[int], *, defer_epoch: int, delta: float = 1 / 3,
                 noise: PureNoise | None = None, normalize: tuple[Sequence[float], Sequence[float]] | None = None,
                 seed: int = 0, noise_pass: str = "auto", **loader_kwargs: Any) -> None:
        if isinstance(defer_epoch, bool) or not isinstance(defer_epoch, int) or defer_epoch < 0:
            raise ValueError(f"defer_epoch must be an integer >= 0, got {defer_epoch!r}")
        self.dataset, self.labels = dataset, np.asarray(labels, dtype=np.int64)
        if self.labels.ndim != 1 or self.labels.size != len(dataset):  # type: ignore[arg-type]
            raise ValueError(f"labels must hold one label per item of the dataset ({len(dataset)}), "  # type: ignore[arg-type]
                             f"got shape {self.labels.shape}")
        counts = np.bincount(self.labels).tolist()
        self.defer_epoch, self.seed, self.noise_pass = defer_epoch, int(seed), noise_pass
        self.open = OPeN(counts, delta=delta, noise=noise, normalize=normalize)
        self._norm = None if normalize is None else tuple(torch.tensor(v, dtype=torch.float32)[:, None, None]
                                                          for v in normalize)
        self.loader_kwargs = {"drop_last": True, **loader_kwargs}
        self.epoch = 0
        self.n_noise = 0  # noise rows of the last batch :meth:`forward` saw
        self._gen: torch.Generator | None = None

    def noise_on(self, epoch: int | None = None) -> bool:
        """Whether ``epoch`` (default: the current one) trains with noise."""
        return (self.epoch if epoch is None else epoch) >= self.defer_epoch

    def loader(self, epoch: int) -> DataLoader:
        """The epoch's DataLoader: instance order before the defer epoch, class-balanced from it on."""
        self.epoch = int(epoch)
        self._gen = None  # the epoch's noise generator starts at its first batch, on that batch's device
        sampler = sampler_for_epoch("open", self.epoch, self.labels, defer_epoch=self.defer_epoch, seed=self.seed)
        return DataLoader(self.dataset, sampler=sampler, **self.loader_kwargs)

    def forward(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, labels)`` of a batch: normalized, OPeN applied and routed from the defer epoch on.

        The returned labels are those of the returned logits' rows (OPeN moves noise rows last).
        """
        if self._norm is not None:
            mean, std = (t.to(images.device) for t in self._norm)
            images = (images - mean) / std
        if not self.noise_on():
            self.n_noise = 0
            return model(images), labels
        if self._gen is None or self._gen.device != images.device:
            self._gen = torch.Generator(device=images.device)
            self._gen.manual_seed(self.seed * 1_000_003 + self.epoch)  # a function of seed and epoch
        images, labels, k = self.open(images, labels, generator=self._gen)
        self.n_noise = k
        return routed_forward(model, images, k, noise_pass=self.noise_pass), labels
