"""Fashion-MNIST and Fashion-MNIST-LT.

The files are the four idx files of the official release, gzipped or not. They are looked up, in
order, in ``root``, ``root/FashionMNIST/raw`` (torchvision's layout) and, when no root is given,
Debian's ``dataset-fashion-mnist`` package (``/usr/share/datasets/fashion-mnist``). The gzipped
files are read straight into memory (the whole dataset fits easily), so nothing is copied or
extracted next to read-only system files. With ``download=True`` and no files found, torchvision
downloads them into ``root/FashionMNIST/raw``.

The datasets are :class:`torchvision.datasets.FashionMNIST` objects (a subclass that takes its
tensors from purenoise's reader), so they return PIL images of mode ``"L"`` without a transform.
"""
from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision

from purenoise.data.bundle import DatasetBundle, DatasetInfo, default_root
from purenoise.data.longtail import longtail_subset
from purenoise.data.registry import register_dataset
from purenoise.errors import DataError, DataNotFoundError

__all__ = ["DEBIAN_FMNIST_DIR", "FashionMNIST", "read_idx", "find_fmnist_files", "load_fmnist"]

DEBIAN_FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
_OFFICIAL_URL = "https://github.com/zalandoresearch/fashion-mnist"
_STEMS = {
    ("train", "images"): "train-images-idx3-ubyte",
    ("train", "labels"): "train-labels-idx1-ubyte",
    ("test", "images"): "t10k-images-idx3-ubyte",
    ("test", "labels"): "t10k-labels-idx1-ubyte",
}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (the MNIST format), gzipped (``.gz``) or raw, as a uint8 array.

    Raises:
        DataError: If the file is not a valid uint8 idx file (names the file and the problem).
    """
    path = str(path)
    try:
        with (gzip.open(path, "rb") if path.endswith(".gz") else open(path, "rb")) as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read {path}: {e}; the file is damaged, get it again") from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path} is not an idx file (bad magic number); get the official file again")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise DataError(f"{path}: idx data type 0x{dtype_code:02x} is not unsigned byte (0x08)")
    header = 4 + 4 * ndim
    if ndim < 1 or len(raw) < header:
        raise DataError(f"{path}: truncated idx header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: header says shape {shape} ({expected} bytes) but the file holds "
            f"{len(raw) - header} bytes of data; the file is truncated or damaged"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def find_fmnist_files(root: str | None) -> dict[tuple[str, str], str] | None:
    """Paths of the four Fashion-MNIST idx files, or ``None`` when a set is not complete anywhere."""
    candidates = []
    if root is not None:
        candidates += [Path(root), Path(root) / "FashionMNIST" / "raw"]
    else:
        candidates += [Path(DEBIAN_FMNIST_DIR), Path(default_root()) / "FashionMNIST" / "raw"]
    for folder in candidates:
        found = {}
        for key, stem in _STEMS.items():
            for name in (stem, stem + ".gz"):  # prefer the extracted file: faster to read
                if (folder / name).is_file():
                    found[key] = str(folder / name)
                    break
        if len(found) == len(_STEMS):
            return found
    return None


class FashionMNIST(torchvision.datasets.FashionMNIST):
    """torchvision's FashionMNIST, filled from explicit idx files (gzipped or not).

    Args:
        images: Path of the idx3 image file.
        labels: Path of the idx1 label file.
        train: Whether these are the training files (kept for torchvision's ``repr``).
        transform: Image transform; without one, items are PIL images of mode ``"L"``.
        target_transform: Label transform.
    """

    def __init__(self, images: str, labels: str, *, train: bool = True, transform=None, target_transform=None):
        # torchvision's constructor looks for files in its own layout; ours come from anywhere, so
        # only the VisionDataset part of the initialisation runs here.
        torchvision.datasets.VisionDataset.__init__(
            self, str(Path(images).parent), transform=transform, target_transform=target_transform
        )
        self.train = train
        self.image_file = str(images)
        self.label_file = str(labels)
        data = read_idx(images)
        targets = read_idx(labels)
        if data.ndim != 3 or targets.ndim != 1 or data.shape[0] != targets.shape[0]:
            raise DataError(
                f"{images} ({data.shape}) and {labels} ({targets.shape}) do not form an image set: "
                f"expected [N, H, W] images and [N] labels"
            )
        if targets.size and int(targets.max()) >= len(self.classes):
            raise DataError(f"{labels}: label {int(targets.max())} is outside the 10 Fashion-MNIST classes")
        self.data = torch.from_numpy(data.copy())
        self.targets = torch.from_numpy(targets.astype(np.int64))

    @property
    def raw_folder(self) -> str:
        return str(Path(self.image_file).parent)


def load_fmnist(root: str | None = None, *, train: bool = True, download: bool = False) -> FashionMNIST:
    """Load the Fashion-MNIST train or test set (see the module doc for where files are found)."""
    files = find_fmnist_files(root)
    if files is None and download:
        target = root or default_root()
        torchvision.datasets.FashionMNIST(target, train=True, download=True)
        files = find_fmnist_files(target)
    if files is None:
        where = [root, os.path.join(root, "FashionMNIST", "raw")] if root else [
            DEBIAN_FMNIST_DIR, os.path.join(default_root(), "FashionMNIST", "raw")]
        raise DataNotFoundError(
            "Fashion-MNIST not found: expected train-images-idx3-ubyte, train-labels-idx1-ubyte, "
            f"t10k-images-idx3-ubyte and t10k-labels-idx1-ubyte (each optionally .gz) in one of "
            f"{', '.join(where)}. Get them with one of: `apt-get install dataset-fashion-mnist` "
            f"(Debian/Ubuntu, installs them in {DEBIAN_FMNIST_DIR}, used when root is not given); "
            f"create_dataset(..., download=True) or download: true in a training config "
            f"(torchvision downloads them into "
            f"<root>/FashionMNIST/raw); or download them from {_OFFICIAL_URL} into the root folder."
        )
    split = "train" if train else "test"
    return FashionMNIST(files[(split, "images")], files[(split, "labels")], train=train)


def _build(name: str, root: str | None, download: bool, lt: dict[str, Any] | None) -> DatasetBundle:
    train = load_fmnist(root, train=True, download=download)
    test = load_fmnist(root, train=False)
    classes = list(train.classes)
    options: dict[str, Any] = {}
    if lt is not None:
        indices, counts, resolved = longtail_subset(name, train.targets.numpy(), classes, **lt)
        index = torch.from_numpy(indices)
        train.data = train.data[index]
        train.targets = train.targets[index]
        options.update(resolved)
    else:
        counts = torch.bincount(train.targets, minlength=len(classes)).tolist()
    info = DatasetInfo(
        name=name,
        num_classes=len(classes),
        class_names=classes,
        image_size=tuple(train.data.shape[1:]),  # type: ignore[arg-type]
        channels=1,
        options=options,
        root=os.path.abspath(train.raw_folder),
    )
    return DatasetBundle(train, test, counts, info)


@register_dataset("fmnist_lt")
def fmnist_lt(root: str | None, *, download: bool = False, ratio: float = 100, profile: str = "exp",
              seed: int = 0, class_order: Any = None, n_max: int | None = None) -> DatasetBundle:
    """Fashion-MNIST-LT: LDAM-DRW's rule on Fashion-MNIST (n_max 6000; 14,886 images at ratio 100)."""
    lt = dict(ratio=ratio, profile=profile, seed=seed, class_order=class_order, n_max=n_max)
    return _build("fmnist_lt", root, download, lt)


@register_dataset("fmnist")
def fmnist(root: str | None, *, download: bool = False) -> DatasetBundle:
    """Balanced Fashion-MNIST (60,000 training images)."""
    return _build("fmnist", root, download, None)
