"""Long-tailed datasets, augmentation presets and samplers.

Entry points:

- :func:`create_dataset` / :func:`list_datasets` / :func:`register_dataset`: ``cifar10_lt``,
  ``cifar100_lt``, ``cifar10``, ``cifar100``, ``fmnist_lt``, ``fmnist``, ``imagenet_lt``,
  ``places_lt``, ``celeba5``, ``folder``. Each returns ``DatasetBundle(train, test,
  class_counts, info)``; ``info.mean``/``info.std`` are the long-tailed training set's pixel
  statistics (cached on disk).
- :func:`longtail_counts` / :func:`longtail_indices`: the LDAM-DRW long-tail rule.
- :func:`create_transform` / :func:`list_transforms`: v2 presets producing float ``[0, 1]`` CHW
  tensors (not normalized).
- :class:`ClassBalancedSampler`, :class:`SquareRootSampler`,
  :func:`create_sampler`, :func:`sampler_for_epoch`: balanced / deferred sampling, DDP-aware
  (the per-epoch rules of each scheme are in :mod:`purenoise.schemes`).
- :func:`get_targets`, :func:`as_uint8_tensor`: labels and whole-set tensors without ``__getitem__``.
"""
# Importing the builders' modules registers them (as purenoise.models does for its models).
from purenoise.data import celeba, cifar, fmnist, folder, splitfile  # noqa: F401
from purenoise.data.bundle import DatasetBundle, DatasetInfo, default_root
from purenoise.data.longtail import longtail_counts, longtail_indices
from purenoise.data.registry import create_dataset, dataset_options, list_datasets, register_dataset
from purenoise.data.samplers import (
    ClassAwareSampler,
    ClassBalancedSampler,
    SquareRootSampler,
    create_sampler,
    sampler_for_epoch,
)
from purenoise.data.tensors import as_uint8_tensor, get_targets
from purenoise.data.transforms import Cutout, create_transform, list_transforms, register_transform

__all__ = [
    "DatasetBundle",
    "DatasetInfo",
    "create_dataset",
    "dataset_options",
    "default_root",
    "list_datasets",
    "register_dataset",
    "longtail_counts",
    "longtail_indices",
    "ClassAwareSampler",
    "ClassBalancedSampler",
    "SquareRootSampler",
    "create_sampler",
    "sampler_for_epoch",
    "as_uint8_tensor",
    "get_targets",
    "Cutout",
    "create_transform",
    "list_transforms",
    "register_transform",
]
