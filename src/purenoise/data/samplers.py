"""Samplers for long-tailed training: class-balanced, square-root, instance, and the deferred schedule.

Class-aware sampling draws a class first, then a uniform image of that class, with replacement.
Class ``c`` (``n_c`` images) is drawn with probability ``n_c**power / sum_k n_k**power``:
``power=0`` is class-balanced sampling (OPeN, RS, DRS), ``power=0.5`` square-root sampling
(Mahajan et al. 2018; Kang et al. 2020), ``power=1`` instance sampling with replacement.
Both draws are vectorised numpy operations, so there is no limit on the number of classes or
images (unlike ``torch.multinomial``'s 2^24 categories).

Determinism and DDP: the draw for an epoch comes from ``numpy.random.default_rng([seed, epoch])``
(never a global RNG). All ranks compute the same global draw of ``ceil(num_samples / R) * R``
indices and rank ``r`` takes positions ``r, r + R, r + 2R, ...``, so the shares are disjoint and
their union, interleaved, is the global draw. Each pass over a class-aware sampler draws the epoch
it is set to and then moves on to the next one, so a plain loop over a DataLoader gets a new order
every epoch without calling anything; ``set_epoch(e)`` (as with ``DistributedSampler``) chooses
the epoch explicitly, for a resume. Either way the order is a function of the seed and the epoch.
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler, Sampler

from purenoise.data.tensors import get_targets
from purenoise.errors import ConfigError
from purenoise.schemes import SAMPLING_KINDS, sampling_for_epoch

__all__ = [
    "ClassAwareSampler",
    "ClassBalancedSampler",
    "SquareRootSampler",
    "create_sampler",
    "sampler_for_epoch",
]


def _replicas(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """``(num_replicas, rank)``, defaulting from torch.distributed when it is initialized, else (1, 0)."""
    initialized = dist.is_available() and dist.is_initialized()
    if num_replicas is None:
        num_replicas = dist.get_world_size() if initialized else 1
    if rank is None:
        rank = dist.get_rank() if initialized else 0
    if isinstance(num_replicas, bool) or not isinstance(num_replicas, int) or num_replicas < 1:
        raise ConfigError(f"num_replicas must be a positive integer, got {num_replicas!r}")
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < num_replicas:
        raise ConfigError(f"rank must be in [0, {num_replicas}), got {rank!r}")
    return num_replicas, rank


def _labels(labels: Sequence[int] | np.ndarray | torch.Tensor | Dataset) -> np.ndarray:
    if isinstance(labels, Dataset) and not isinstance(labels, (np.ndarray, torch.Tensor)):
        labels = get_targets(labels)
    if isinstance(labels, torch.Tensor):
        labels = labels.cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.size == 0:
        raise ConfigError(f"a sampler needs a non-empty 1-D sequence of labels, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise ConfigError(f"labels must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def _check_seed(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
    return int(value)


class ClassAwareSampler(Sampler[int]):
    """Sample a class with probability proportional to ``n_c**power``, then an image of it uniformly.

    Args:
        labels: Label of every training item (or the dataset itself; its labels are read with
            :func:`~purenoise.data.get_targets`). Only classes present are drawn.
        num_samples: Items per epoch over all ranks (default: the dataset size, the paper's epoch).
        seed: Seed shared by all ranks.
        num_replicas: Number of processes (default: the torch.distributed world size, else 1).
        rank: This process's rank (default: from torch.distributed, else 0).
        power: Exponent of the class sizes (0 balanced, 0.5 square root, 1 instance).
    """

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray | torch.Tensor | Dataset,
        num_samples: int | None = None,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        *,
        power: float = 0.0,
    ) -> None:
        t = _labels(labels)
        self.seed = _check_seed("seed", seed)
        self.num_replicas, self.rank = _replicas(num_replicas, rank)
        if num_samples is None:
            num_samples = t.size
        if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
            raise ConfigError(f"num_samples must be a positive integer, got {num_samples!r}")
        if not isinstance(power, (int, float)) or not math.isfinite(power):
            raise ConfigError(f"power must be a finite number, got {power!r}")
        self.power = float(power)
        self.classes, self.class_counts = np.unique(t, return_counts=True)
        # Indices grouped by class (stable: ascending within a class) and where each group starts.
        self._order = np.argsort(t, kind="stable")
        self._starts = np.concatenate([[0], np.cumsum(self.class_counts)[:-1]])
        weights = self.class_counts.astype(np.float64) ** self.power
        self.class_probs = weights / weights.sum()
        self.num_samples = int(num_samples)
        self.samples_per_rank = math.ceil(self.num_samples / self.num_replicas)
        self.total_size = self.samples_per_rank * self.num_replicas
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the draw of the next pass: that of ``epoch`` (the same on every rank)."""
        self.epoch = _check_seed("epoch", epoch)

    def global_draw(self, epoch: int | None = None) -> np.ndarray:
        """All ``total_size`` indices of an epoch's draw, before it is shared out between ranks."""
        epoch = self.epoch if epoch is None else _check_seed("epoch", epoch)
        rng = np.random.default_rng([self.seed, epoch])
        n_classes = self.classes.size
        if self.power == 0.0:
            cls = rng.integers(0, n_classes, size=self.total_size)
        else:
            cls = rng.choice(n_classes, size=self.total_size, p=self.class_probs)
        within = rng.integers(0, self.class_counts[cls])
        return self._order[self._starts[cls] + within]

    def __iter__(self) -> Iterator[int]:
        """This rank's share of the current epoch's draw; the next pass draws the following epoch."""
        draw = self.global_draw()[self.rank :: self.num_replicas].tolist()
        self.epoch += 1  # a loop that never calls set_epoch still sees a new order each epoch
        return iter(draw)

    def __len__(self) -> int:
        return self.samples_per_rank

    def state_dict(self) -> dict[str, int]:
        """The seed and the epoch the next pass will draw."""
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.seed = _check_seed("seed", state["seed"])
        self.set_epoch(state["epoch"])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(classes={self.classes.size}, num_samples={self.num_samples}, "
            f"power={self.power}, seed={self.seed}, rank={self.rank}/{self.num_replicas}, epoch={self.epoch})"
        )


class ClassBalancedSampler(ClassAwareSampler):
    """Every class equally likely, with replacement (OPeN, RS, DRS). See :class:`ClassAwareSampler`."""

    def __init__(self, labels, num_samples: int | None = None, seed: int = 0,
                 num_replicas: int | None = None, rank: int | None = None) -> None:
        super().__init__(labels, num_samples, seed, num_replicas, rank, power=0.0)


class SquareRootSampler(ClassAwareSampler):
    """Class probability proportional to the square root of its size. See :class:`ClassAwareSampler`."""

    def __init__(self, labels, num_samples: int | None = None, seed: int = 0,
                 num_replicas: int | None = None, rank: int | None = None) -> None:
        super().__init__(labels, num_samples, seed, num_replicas, rank, power=0.5)


def create_sampler(
    kind: str,
    labels: Sequence[int] | np.ndarray | torch.Tensor | Dataset,
    *,
    seed: int = 0,
    epoch: int = 0,
    num_samples: int | None = None,
    num_replicas: int | None = None,
    rank: int | None = None,
) -> Sampler[int]:
    """A sampler of the given kind, already set to ``epoch``.

    ``"instance"`` is a ``DistributedSampler`` (shuffle, the same ``seed``; with one replica it is
    a plain seeded per-epoch permutation) so that one code path serves 1 and N processes;
    ``num_samples`` does not apply to it (an epoch is one pass). ``"balanced"`` and ``"sqrt"``
    are :class:`ClassBalancedSampler` and :class:`SquareRootSampler`.
    """
    if kind not in SAMPLING_KINDS:
        raise ConfigError(f"unknown sampling kind {kind!r}; choose one of {list(SAMPLING_KINDS)}")
    replicas, rank = _replicas(num_replicas, rank)
    sampler: Any
    if kind == "instance":
        n = _labels(labels).size
        sampler = DistributedSampler(range(n), num_replicas=replicas, rank=rank, shuffle=True,  # type: ignore[arg-type]
                                     seed=_check_seed("seed", seed), drop_last=False)
    else:
        cls = ClassBalancedSampler if kind == "balanced" else SquareRootSampler
        sampler = cls(labels, num_samples, seed, replicas, rank)
    sampler.set_epoch(_check_seed("epoch", epoch))
    return sampler


def sampler_for_epoch(
    scheme: str,
    epoch: int,
    labels: Sequence[int] | np.ndarray | torch.Tensor | Dataset,
    *,
    defer_epoch: int | None = None,
    class_aware: str = "balanced",
    seed: int = 0,
    num_samples: int | None = None,
    num_replicas: int | None = None,
    rank: int | None = None,
) -> Sampler[int]:
    """The sampler of ``epoch`` under a training scheme (see :func:`purenoise.schemes.sampling_for_epoch`)."""
    kind = sampling_for_epoch(scheme, epoch, defer_epoch, class_aware)
    return create_sampler(kind, labels, seed=seed, epoch=epoch, num_samples=num_samples,
                          num_replicas=num_replicas, rank=rank)
