"""CIFAR-10/100 and their long-tailed versions (LDAM-DRW's subsets).

The datasets are torchvision's :class:`~torchvision.datasets.CIFAR10` /
:class:`~torchvision.datasets.CIFAR100` objects (thin subclasses, below) whose ``.data`` and
``.targets`` are sliced in place to the long-tailed subset, so they behave exactly as torchvision's
(PIL images without a transform) and expose their labels without decoding.

Why subclasses: torchvision checks the md5 of every file inside the constructor and answers any
problem with "Dataset not found or corrupted". purenoise checks the files itself first, so that a
missing file and a corrupt one get different messages that say what to do, and so that
``verify=False`` can load a copy that is not byte-identical to the official archive (a re-pickled
or hand-made file in the same format). After that check the subclasses skip torchvision's.

CIFAR's files are Python pickles, and unpickling a file can run code it names. With the default
``verify=True`` only files whose md5 matches the official release are unpickled; ``verify=False``
unpickles whatever sits in the data folder, so it warns, and is for files you made or trust.
"""
from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torchvision
from torchvision.datasets.utils import check_integrity

from purenoise.data._checks import check_bool
from purenoise.data.bundle import DatasetBundle, DatasetInfo, default_root
from purenoise.data.longtail import longtail_subset
from purenoise.data.registry import register_dataset
from purenoise.errors import DataError, DataNotFoundError

__all__ = ["CIFAR10", "CIFAR100", "load_cifar"]


class _Checked:
    """For torchvision's CIFAR classes whose files purenoise has already checked (module doc)."""

    def _check_integrity(self) -> bool:
        return True

    def _load_meta(self) -> None:
        path = os.path.join(self.root, self.base_folder, self.meta["filename"])
        self.classes = _unpickle(path)[self.meta["key"]]
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}


class CIFAR10(_Checked, torchvision.datasets.CIFAR10):
    """torchvision's CIFAR-10 whose files purenoise has already checked (see the module doc)."""


class CIFAR100(_Checked, torchvision.datasets.CIFAR100):
    """torchvision's CIFAR-100 whose files purenoise has already checked (see the module doc)."""


_CLASSES: dict[str, tuple[type[torchvision.datasets.CIFAR10], str]] = {
    "cifar10": (CIFAR10, "CIFAR-10"),
    "cifar100": (CIFAR100, "CIFAR-100"),
}


def _unpickle(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as f:
            return pickle.load(f, encoding="latin1")
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise DataError(
            f"cannot read {path}: {e}. The file is damaged; delete it and get CIFAR again "
            f"(download=True, or the official archive)"
        ) from e


def _resolve_root(root: str | None, base_folder: str) -> str:
    root = root or default_root()
    # Accept the extracted folder itself as root, as users often pass it.
    if Path(root).name == base_folder:
        root = str(Path(root).parent)
    return root


def _check_files(kind: str, root: str, *, train: bool, download: bool, verify: bool) -> None:
    """Every file of the release must exist; with ``verify``, those the split reads match their md5."""
    tv_cls = getattr(torchvision.datasets, "CIFAR10" if kind == "cifar10" else "CIFAR100")
    title = _CLASSES[kind][1]
    folder = os.path.join(root, tv_cls.base_folder)
    meta = [tv_cls.meta["filename"], tv_cls.meta["md5"]]
    files = [*tv_cls.train_list, *tv_cls.test_list, meta]
    missing = [name for name, _ in files if not os.path.isfile(os.path.join(folder, name))]
    if missing and download:
        # torchvision downloads the official archive, checks its md5 and extracts it.
        tv_cls(root, train=True, download=True)
        missing = [name for name, _ in files if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise DataNotFoundError(
            f"{title} not found: expected the files {', '.join(missing)} in {folder}. Get them with "
            f"create_dataset(..., root={root!r}, download=True) or download: true in a training config "
            f"(torchvision downloads {tv_cls.url} "
            f"and extracts it there), or download that archive yourself and extract it into {root}."
        )
    if not verify:
        warnings.warn(
            f"{title}: verify=False unpickles the files in {folder} without checking them against the "
            f"official checksums, and unpickling a file can run code it names; use it only for files "
            f"you made yourself or trust",
            stacklevel=4,
        )
        return
    for name, md5 in [*(tv_cls.train_list if train else tv_cls.test_list), meta]:
        path = os.path.join(folder, name)
        if not check_integrity(path, md5):
            raise DataError(
                f"{path} does not match the official {title} checksum (md5 {md5}): the file is "
                f"damaged or not from the official archive. Delete {folder} and get it again "
                f"(download=True), or pass verify=False to load this copy as it is, if you trust it."
            )


def load_cifar(kind: str, root: str | None, *, train: bool, download: bool = False, verify: bool = True):
    """Load the CIFAR-10 (``kind="cifar10"``) or CIFAR-100 train or test set after checking its files.

    Args:
        kind: ``"cifar10"`` or ``"cifar100"``.
        root: Folder holding ``cifar-10-batches-py`` / ``cifar-100-python`` (or that folder itself).
        train: Training set if true, else the test set.
        download: Let torchvision download the official archive if files are missing.
        verify: Check the md5 of the files this split reads against the official release
            before unpickling them. ``False`` unpickles them unchecked (a modified copy), and
            unpickling can run code a file names: only for files you made or trust; it warns.
    """
    cls, _ = _CLASSES[kind]
    root = _resolve_root(root, cls.base_folder)
    _check_files(kind, root, train=train, download=download, verify=verify)
    try:
        return cls(root, train=train)
    except (KeyError, ValueError, pickle.UnpicklingError, EOFError) as e:
        # torchvision does not say which file failed: find it, so the message can name it.
        for name, _ in cls.train_list if train else cls.test_list:
            path = os.path.join(root, cls.base_folder, name)
            entry = _unpickle(path)
            if not isinstance(entry, dict) or "data" not in entry or not ({"labels", "fine_labels"} & set(entry)):
                raise DataError(
                    f"{path} is not a CIFAR batch (no 'data' and label entries); delete it and get the "
                    f"official archive again"
                ) from e
        raise DataError(
            f"{os.path.join(root, cls.base_folder)} holds files that are not in the CIFAR pickle "
            f"format ({type(e).__name__}: {e}); delete them and get the official archive again"
        ) from e


def _build(
    kind: str, name: str, root: str | None, download: bool, verify: bool, lt: dict[str, Any] | None
) -> DatasetBundle:
    check_bool(name, "verify", verify)
    train = load_cifar(kind, root, train=True, download=download, verify=verify)
    test = load_cifar(kind, root, train=False, download=False, verify=verify)
    classes = list(train.classes)
    options: dict[str, Any] = {"verify": verify}
    if lt is not None:
        indices, counts, resolved = longtail_subset(name, train.targets, classes, **lt)
        train.data = train.data[indices]
        train.targets = [train.targets[i] for i in indices]
        options.update(resolved)
    else:
        counts = [0] * len(classes)
        for t in train.targets:
            counts[t] += 1
    info = DatasetInfo(
        name=name,
        num_classes=len(classes),
        class_names=classes,
        image_size=(32, 32),
        channels=3,
        options=options,
        root=os.path.abspath(train.root),
    )
    return DatasetBundle(train, test, counts, info)


@register_dataset("cifar10_lt")
def cifar10_lt(root: str | None, *, download: bool = False, ratio: float = 100, profile: str = "exp",
               seed: int = 0, class_order: Any = None, n_max: int | None = None, verify: bool = True) -> DatasetBundle:
    """CIFAR-10-LT (LDAM-DRW): 12,406 training images at ratio 100, 13,996 at ratio 50."""
    lt = dict(ratio=ratio, profile=profile, seed=seed, class_order=class_order, n_max=n_max)
    return _build("cifar10", "cifar10_lt", root, download, verify, lt)


@register_dataset("cifar100_lt")
def cifar100_lt(root: str | None, *, download: bool = False, ratio: float = 100, profile: str = "exp",
                seed: int = 0, class_order: Any = None, n_max: int | None = None, verify: bool = True) -> DatasetBundle:
    """CIFAR-100-LT (LDAM-DRW): 10,847 training images at ratio 100, 12,608 at ratio 50."""
    lt = dict(ratio=ratio, profile=profile, seed=seed, class_order=class_order, n_max=n_max)
    return _build("cifar100", "cifar100_lt", root, download, verify, lt)


@register_dataset("cifar10")
def cifar10(root: str | None, *, download: bool = False, verify: bool = True) -> DatasetBundle:
    """Balanced CIFAR-10 (50,000 training images), for noise as a general augmentation."""
    return _build("cifar10", "cifar10", root, download, verify, None)


@register_dataset("cifar100")
def cifar100(root: str | None, *, download: bool = False, verify: bool = True) -> DatasetBundle:
    """Balanced CIFAR-100 (50,000 training images)."""
    return _build("cifar100", "cifar100", root, download, verify, None)
