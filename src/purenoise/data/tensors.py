"""Labels and whole-set pixel tensors, read without going through ``__getitem__``.

:func:`get_targets` gives the labels of a dataset (samplers, class counts) without decoding a
single image. :func:`as_uint8_tensor` gives a whole set as one ``uint8`` tensor for a
device-resident loader: a view of the arrays CIFAR and Fashion-MNIST already hold, or every image
decoded once (threaded) for small image-file sets such as CelebA-5 at 64x64.
"""
from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset, Subset
from torchvision.datasets import CIFAR10, MNIST, DatasetFolder
from torchvision.transforms.v2.functional import pil_to_tensor

from purenoise.data.imagelist import ImageLoader, default_workers

__all__ = ["get_targets", "as_uint8_tensor"]


def get_targets(dataset: Dataset) -> list[int]:
    """Label of every item, in dataset order, without loading images.

    Works for datasets with a ``targets`` attribute (torchvision's CIFAR, MNIST family,
    ImageFolder, and purenoise's datasets) and for ``Subset`` / ``ConcatDataset`` of them.

    Raises:
        TypeError: For a dataset that does not expose its labels.
    """
    if isinstance(dataset, Subset):
        inner = get_targets(dataset.dataset)
        return [inner[int(i)] for i in dataset.indices]
    if isinstance(dataset, ConcatDataset):
        return [t for d in dataset.datasets for t in get_targets(d)]
    targets = getattr(dataset, "targets", None)
    if targets is None:
        raise TypeError(
            f"{type(dataset).__name__} does not expose its labels as .targets; give it a targets "
            f"list (one int per item) or wrap a dataset that has one in torch.utils.data.Subset"
        )
    if isinstance(targets, torch.Tensor):
        return targets.tolist()
    if isinstance(targets, np.ndarray):
        return targets.astype(np.int64).tolist()
    return [int(t) for t in targets]


def _decode_all(loader: ImageLoader, paths: Sequence[str], workers: int | None) -> torch.Tensor:
    def one(path: str) -> torch.Tensor:
        return pil_to_tensor(loader(path))

    with ThreadPoolExecutor(workers or default_workers()) as pool:
        images = list(pool.map(one, paths, chunksize=32))
    if not images:
        c = 1 if loader.mode == "L" else 3
        h, w = loader.size or (0, 0)
        return torch.zeros((0, c, h, w), dtype=torch.uint8)
    return torch.stack(images)


def as_uint8_tensor(
    dataset: Dataset, *, image_size: int | Sequence[int] | None = None, workers: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole dataset as ``(images uint8 [N, C, H, W], labels int64 [N])``.

    Pixels are the stored ones: the dataset's ``transform`` is not applied. CIFAR and
    Fashion-MNIST are converted straight from ``.data`` (no decoding). Image-file datasets
    (:class:`~purenoise.data.imagelist.ImageList`) are decoded with threads, converted to their mode
    and resized to their ``image_size`` (or ``nominal_size``, or the ``image_size`` argument).

    Args:
        dataset: A purenoise / torchvision dataset, or a ``Subset`` of one.
        image_size: Size for image-file datasets whose images vary in size.
        workers: Decoding threads (default: up to 8).

    Raises:
        TypeError: For a dataset type it cannot read directly.
        ValueError: When images vary in size and no size is known.
    """
    if isinstance(dataset, Subset):
        index = torch.as_tensor(list(dataset.indices), dtype=torch.long)
        inner = dataset.dataset
        if isinstance(inner, DatasetFolder):
            sub = inner.subset(index.tolist()) if hasattr(inner, "subset") else None
            if sub is not None:
                return as_uint8_tensor(sub, image_size=image_size, workers=workers)
        images, labels = as_uint8_tensor(inner, image_size=image_size, workers=workers)
        return images[index], labels[index]
    labels = torch.as_tensor(get_targets(dataset), dtype=torch.int64)
    if isinstance(dataset, CIFAR10):  # CIFAR100 derives from it; .data is uint8 NHWC
        images = torch.from_numpy(np.ascontiguousarray(dataset.data)).permute(0, 3, 1, 2).contiguous()
        return images, labels
    if isinstance(dataset, MNIST):  # FashionMNIST derives from it; .data is uint8 NHW
        data = dataset.data if isinstance(dataset.data, torch.Tensor) else torch.as_tensor(dataset.data)
        return data.to(torch.uint8).unsqueeze(1).contiguous(), labels
    if isinstance(dataset, DatasetFolder):
        mode = getattr(dataset, "mode", "RGB")
        size = image_size or getattr(dataset, "image_size", None) or getattr(dataset, "nominal_size", None)
        if size is None:
            raise ValueError(
                f"{type(dataset).__name__} images vary in size; pass image_size=(H, W) to as_uint8_tensor"
            )
        if isinstance(size, int):
            size = (size, size)
        loader = ImageLoader(mode, tuple(size), getattr(dataset, "center_crop", False))
        paths = [p for p, _ in dataset.samples]
        return _decode_all(loader, paths, workers), labels
    raise TypeError(
        f"as_uint8_tensor cannot read {type(dataset).__name__} directly; it supports CIFAR10/100, "
        f"(Fashion)MNIST, ImageFolder-style datasets and Subsets of them"
    )
