"""Training batches for one epoch from a torchvision DataLoader, moved to the device.

The sampler of each epoch is chosen by the training scheme (instance sampling, or class-balanced
after the defer epoch). Each sample is augmented after seeding torch with its own seed, derived
from the run seed, the epoch and its position in the epoch, so augmentation does not depend on
the number of workers or on which worker handles which batch, and an epoch resumed in the middle
sees exactly the images it would have seen.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from purenoise.data import create_sampler
from purenoise.engine.seeding import derive_seed

__all__ = ["SeededTransformDataset", "EpochBatches", "LoaderBatches", "epoch_indices"]

_GOLDEN = 0x9E3779B97F4A7C15
_MASK63 = (1 << 63) - 1


class SeededTransformDataset(Dataset):
    """``base[index]`` with ``transform`` applied under the sample's own seed.

    Items are requested as ``(index, seed)`` pairs. The base dataset must return untransformed
    images (PIL or uint8 tensors) and labels.
    """

    def __init__(self, base: Dataset, transform: Callable | None) -> None:
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, item: tuple[int, int]) -> tuple[Any, int]:
        index, seed = item
        image, label = self.base[index]
        if self.transform is not None:
            # torchvision's v2 transforms draw from torch's global CPU generator. Seeding it alone
            # is cheap; torch.manual_seed would also reseed every CUDA generator, far slower.
            torch.random.default_generator.manual_seed(seed)
            image = self.transform(image)
        return image, label


class _ListSampler(Sampler):
    def __init__(self) -> None:
        self.items: Sequence[Any] = ()

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


def epoch_indices(kind: str, labels: Sequence[int], *, seed: int, epoch: int, rank: int,
                  world_size: int) -> np.ndarray:
    """This process's dataset indices for one epoch, in order ("instance", "balanced" or "sqrt")."""

    sampler = create_sampler(kind, labels, seed=seed, epoch=epoch, num_replicas=world_size, rank=rank)
    return np.fromiter(iter(sampler), dtype=np.int64)


class EpochBatches:
    """What every loader of the trainer shares: the steps of an epoch and its seeded order.

    An epoch has ``len(labels) // world_size // batch_size`` full batches per process (the last
    incomplete one is dropped: BatchNorm needs more than one row, OPeN more than a few), at most
    ``limit_batches``. :meth:`set_epoch` draws the epoch's order of dataset indices from the
    sampler stream of the run's seed and hands the part this process uses to the subclass.

    Subclasses implement ``_epoch_order(kind, epoch)`` (this process's indices, in order) and
    ``_begin_epoch(epoch, order, start_batch)``.
    """

    def __init__(self, num_images: int, *, batch_size: int, seed: int, rank: int = 0, world_size: int = 1,
                 limit_batches: int | None = None) -> None:
        self.batch_size = int(batch_size)
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.full_steps = num_images // world_size // self.batch_size
        if self.full_steps == 0:
            raise ValueError(
                f"the training set has {num_images} images, fewer than one batch of "
                f"{batch_size} per process; lower batch_size"
            )
        self.steps = min(self.full_steps, limit_batches or self.full_steps)
        self._start = 0

    def __len__(self) -> int:
        return self.steps

    @property
    def sampler_seed(self) -> int:
        """The seed of the sampler stream (the same on every rank)."""
        return derive_seed(self.seed, "sampler")

    def set_epoch(self, epoch: int, kind: str, start_batch: int = 0) -> None:
        """Draw the epoch's order (``kind``: instance/balanced/sqrt) and skip ``start_batch`` batches."""
        order = self._epoch_order(kind, epoch)[: self.steps * self.batch_size]
        self._start = int(start_batch)
        self._begin_epoch(epoch, order, self._start)

    def _epoch_order(self, kind: str, epoch: int):
        raise NotImplementedError

    def _begin_epoch(self, epoch: int, order: Any, start_batch: int) -> None:
        raise NotImplementedError


class LoaderBatches(EpochBatches):
    """Batches of augmented images in ``[0, 1]`` and labels, on ``device``.

    Args:
        dataset: Training set returning untransformed ``(image, label)``.
        transform: Training transform (to a float tensor in ``[0, 1]``).
        labels: Label of every training item (for class-aware sampling).
        batch_size: Per-process batch size. The last incomplete batch is dropped (BatchNorm
            needs more than one row, OPeN more than a few).
        device: Where batches go.
        seed: Run seed; samplers and augmentation derive their streams from it.
        workers: DataLoader worker processes.
        rank, world_size: This process's share of each epoch's draw.
        limit_batches: Stop each epoch after this many batches.
    """

    def __init__(self, dataset: Dataset, transform: Callable | None, labels: Sequence[int], *,
                 batch_size: int, device: torch.device, seed: int, workers: int = 2, rank: int = 0,
                 world_size: int = 1, limit_batches: int | None = None) -> None:
        self.labels = list(labels)
        super().__init__(len(self.labels), batch_size=batch_size, seed=seed, rank=rank, world_size=world_size,
                         limit_batches=limit_batches)
        self.device = device
        self._sampler = _ListSampler()
        self.loader = DataLoader(
            SeededTransformDataset(dataset, transform), batch_size=batch_size,
            sampler=self._sampler, num_workers=workers, drop_last=True,
            pin_memory=device.type == "cuda", persistent_workers=workers > 0,
            prefetch_factor=4 if workers > 0 else None,
        )

    def _epoch_order(self, kind: str, epoch: int) -> np.ndarray:
        return epoch_indices(kind, self.labels, seed=self.sampler_seed, epoch=epoch, rank=self.rank,
                             world_size=self.world_size)

    def _begin_epoch(self, epoch: int, order: np.ndarray, start_batch: int) -> None:
        # Every sample's augmentation has its own seed: the same images whatever the workers.
        base = derive_seed(self.seed, "augment", epoch, self.rank)
        positions = np.arange(order.size, dtype=np.uint64)
        seeds = (np.uint64(base) + positions * np.uint64(_GOLDEN)) & np.uint64(_MASK63)
        start = start_batch * self.batch_size
        self._sampler.items = list(zip(order[start:].tolist(), seeds[start:].tolist()))

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        non_blocking = self.device.type == "cuda"
        for images, labels in self.loader:
            yield (images.to(self.device, non_blocking=non_blocking),
                   torch.as_tensor(labels).to(self.device, non_blocking=non_blocking))
