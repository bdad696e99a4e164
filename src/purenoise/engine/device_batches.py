"""Training batches from a training set held on the device (``loader: device``).

For small-image datasets (CIFAR, Fashion-MNIST, CelebA-5 at 64 px, any in-memory set) the whole
training set fits on a GPU as uint8. :class:`DeviceBatches` keeps it there, draws
each epoch's indices on the device and augments every batch with batched operations
(:mod:`purenoise.data.batch_augment`), so no DataLoader worker, host copy or per-image Python
call is left in the step. It has the interface the trainer expects of :class:`LoaderBatches`.

Randomness, as everywhere in purenoise, is a pure function of where a draw happens:

- an epoch's order comes from a generator seeded by ``(seed, "device_sampler", epoch)``, the
  same on every rank; rank ``r`` of ``R`` takes positions ``r, r + R, ...`` of the one global
  draw (disjoint shares), as the samplers of :mod:`purenoise.data.samplers` do;
- batch ``b`` is augmented with a generator seeded by ``(seed, "augment", epoch, b, rank)``,
  so a run resumed at batch ``b`` sees exactly the batches it would have seen.

The draws have the distributions of the DataLoader path (a permutation per epoch for instance
sampling, padded to a multiple of the world size like ``DistributedSampler``; class uniform then
image uniform for class-balanced sampling; class probability proportional to the square root of
its size for ``sqrt``), but not the same numbers: the two loaders give different (equally
valid) runs of one config.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from purenoise.data import as_uint8_tensor
from purenoise.data.batch_augment import BatchAugment, create_batch_augment
from purenoise.engine.batches import EpochBatches
from purenoise.engine.seeding import derive_seed
from purenoise.errors import ConfigError
from purenoise.schemes import SAMPLING_KINDS

__all__ = ["DeviceBatches", "device_epoch_order", "create_device_batches"]


class _ClassIndex:
    """Indices grouped by class on the device, for class-aware draws."""

    def __init__(self, labels: torch.Tensor) -> None:
        classes, counts = torch.unique(labels, return_counts=True)
        self.classes = classes  # only classes present are drawn, as in ClassAwareSampler
        self.counts = counts
        self.order = torch.argsort(labels, stable=True)
        self.starts = torch.cumsum(counts, 0) - counts


def device_epoch_order(kind: str, labels: torch.Tensor, *, seed: int, epoch: int, rank: int = 0,
                       world_size: int = 1, index: _ClassIndex | None = None) -> torch.Tensor:
    """This rank's share of one epoch's global draw of dataset indices, on ``labels.device``.

    Args:
        kind: ``"instance"`` (a permutation), ``"balanced"`` or ``"sqrt"`` (class-aware, with
            replacement; the epoch has as many draws as the dataset has images).
        labels: int64 label of every training image, on the device.
        seed: Sampler seed (the same on every rank).
        epoch: Epoch number.
        rank, world_size: This process's share: positions ``rank::world_size``.
        index: Precomputed per-class grouping (saves a sort per epoch).
    """
    if kind not in SAMPLING_KINDS:
        raise ConfigError(f"unknown sampling kind {kind!r}; choose one of {list(SAMPLING_KINDS)}")
    n = labels.shape[0]
    total = math.ceil(n / world_size) * world_size
    dev = labels.device
    g = torch.Generator(dev).manual_seed(derive_seed(seed, "device_sampler", epoch))
    if kind == "instance":
        order = torch.randperm(n, generator=g, device=dev)
        if total > n:  # DistributedSampler pads with the first indices of the permutation
            order = torch.cat([order, order[: total - n]])
    else:
        index = index or _ClassIndex(labels)
        if kind == "balanced":
            cls = torch.randint(0, index.classes.numel(), (total,), generator=g, device=dev)
        else:
            probs = index.counts.double().sqrt()
            cls = torch.multinomial(probs / probs.sum(), total, replacement=True, generator=g)
        # Uniform within the class: floor(u * n_c) with u in [0, 1) drawn in float64.
        u = torch.rand(total, generator=g, device=dev, dtype=torch.float64)
        count = index.counts[cls]
        within = torch.minimum((u * count).long(), count - 1)
        order = index.order[index.starts[cls] + within]
    return order[rank::world_size]


class DeviceBatches(EpochBatches):
    """Augmented batches in ``[0, 1]`` and labels from a training set kept on ``device``.

    Args:
        images: The whole training set, uint8 ``[N, C, H, W]`` (moved to ``device``).
        labels: Label of every image.
        augment: Batched augmentation (``None``: the stored images as they are).
        batch_size: Per-process batch size; the last incomplete batch is dropped.
        device: Where the data lives and batches are made.
        seed: Run seed.
        rank, world_size: This process's share of each epoch.
        limit_batches: Stop each epoch after this many batches.
        compile: Run the augmentation's tensor work (:meth:`BatchAugment.apply`) through
            ``torch.compile``. In eager mode a preset such as ``cifar_simclr`` launches many
            small kernels per batch, which can cost the CPU more than the GPU needs to run them;
            compiled, they fuse into a few (see benchmarks/SPEED.md). The parameters are still
            drawn eagerly from the seeded generator, so the draws are the same; the pixels agree
            with eager to float rounding (fused arithmetic).
    """

    def __init__(self, images: torch.Tensor, labels: Sequence[int] | torch.Tensor, augment: BatchAugment | None,
                 *, batch_size: int, device: torch.device, seed: int, rank: int = 0, world_size: int = 1,
                 limit_batches: int | None = None, compile: bool = False) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"DeviceBatches needs uint8 images [N, C, H, W], got {images.dtype} "
                             f"{tuple(images.shape)}")
        self.device = torch.device(device)
        self.images = images.to(self.device).contiguous()
        self.labels = torch.as_tensor(labels, dtype=torch.int64).to(self.device)
        if self.labels.shape[0] != self.images.shape[0]:
            raise ValueError(f"{self.images.shape[0]} images but {self.labels.shape[0]} labels")
        self.augment = augment
        # Every batch has batch_size rows (the last incomplete one is dropped): one static graph.
        self._apply = (torch.compile(augment.apply, dynamic=False)
                       if compile and augment is not None and (augment.crop or augment.ops) else None)
        super().__init__(self.labels.shape[0], batch_size=batch_size, seed=seed, rank=rank,
                         world_size=world_size, limit_batches=limit_batches)
        self._index = _ClassIndex(self.labels)
        self._gen = torch.Generator(self.device)
        self._epoch = 0
        self._order = torch.empty(0, dtype=torch.int64, device=self.device)

    def _epoch_order(self, kind: str, epoch: int) -> torch.Tensor:
        return device_epoch_order(kind, self.labels, seed=self.sampler_seed, epoch=epoch, rank=self.rank,
                                  world_size=self.world_size, index=self._index)

    def _begin_epoch(self, epoch: int, order: torch.Tensor, start_batch: int) -> None:
        self._order = order
        self._epoch = epoch

    def batch(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``b`` of the current epoch: ``(images float [B, C, H, W] in [0, 1], labels)``."""
        index = self._order[b * self.batch_size:(b + 1) * self.batch_size]
        labels = self.labels[index]
        if self.augment is None:
            return self.images[index].float().div_(255.0), labels
        self._gen.manual_seed(derive_seed(self.seed, "augment", self._epoch, b, self.rank))
        if self._apply is None:
            return self.augment(self.images, index, self._gen), labels
        params = self.augment.sample(index.shape[0], (self.images.shape[2], self.images.shape[3]), self._gen)
        return self._apply(self.images, index, params), labels

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for b in range(self._start, self.steps):
            yield self.batch(b)

    def __repr__(self) -> str:
        return (f"DeviceBatches({tuple(self.images.shape)} on {self.device}, batch {self.batch_size}, "
                f"{self.steps} steps, {self.augment!r})")


def create_device_batches(data: Any, augment_name: str, *, dataset: str, batch_size: int, seed: int,
                          limit_batches: int | None, compile: bool, device: torch.device, rank: int = 0,
                          world_size: int = 1) -> DeviceBatches:
    """The device loader for a run: the train set as one uint8 tensor plus the batched preset.

    Args:
        data: The run's :class:`~purenoise.engine.setup.RunData`.
        augment_name: The training preset (see :func:`~purenoise.engine.setup.augment_name`).
        dataset: The dataset's name, for messages.
        batch_size, seed, limit_batches, rank, world_size: As for :class:`DeviceBatches`.
        compile: Compile the augmentation, on a GPU only: there it is bound by kernel launches
            (see benchmarks/SPEED.md); on the CPU it stays eager, as compiling costs start-up time.
        device: Where the data lives and batches are made.

    Raises:
        ConfigError: The training set cannot be held as one tensor (names what to use instead).
    """

    info = data.info
    augment = create_batch_augment(augment_name, image_size=info.image_size, channels=info.channels,
                                   cutout_fill=tuple(info.mean))
    try:
        images, _ = as_uint8_tensor(data.train, image_size=info.image_size)
    except TypeError as e:
        raise ConfigError(f"loader: device cannot hold dataset '{dataset}' in memory ({e}); "
                          "use loader: torch") from None
    images = _to_channels(images, info.channels)
    if tuple(images.shape[2:]) != tuple(info.image_size):
        raise ConfigError(f"loader: device needs images of one size; dataset '{dataset}' has "
                          f"{tuple(images.shape[2:])}, the model expects {tuple(info.image_size)}. "
                          "Use loader: torch")
    return DeviceBatches(images, data.targets, augment, batch_size=batch_size, device=device,
                         seed=seed, rank=rank, world_size=world_size, limit_batches=limit_batches,
                         compile=bool(compile) and torch.device(device).type == "cuda")


def _to_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Give uint8 images the channel count the presets produce (their RGB / Grayscale head)."""
    c = images.shape[1]
    if c == channels:
        return images
    if channels == 3 and c == 1:
        return images.expand(-1, 3, -1, -1).contiguous()
    if channels == 1 and c == 3:
        # PIL's convert("L"): L = (19595 R + 38470 G + 7471 B + 2^15) >> 16.
        w = torch.tensor([19595, 38470, 7471], dtype=torch.int32).view(1, 3, 1, 1)
        return ((images.to(torch.int32) * w).sum(1, keepdim=True) + 32768).div(65536, rounding_mode="floor").to(torch.uint8)
    raise ConfigError(f"loader: device cannot turn {c}-channel images into {channels} channels")
