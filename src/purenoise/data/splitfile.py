"""ImageNet-LT and Places-LT from the OLTR split files.

Liu et al. (OLTR, CVPR 2019) define both benchmarks by text files, one ``relative/path label``
per line, as distributed with the Decoupling code (classifier-balancing):
``ImageNet_LT_{train,val,test}.txt`` (paths like ``train/n01440764/n01440764_10026.JPEG``,
relative to the ILSVRC-2012 image folder) and ``Places_LT_{train,val,test}.txt`` (paths like
``data_256/a/airfield/00000001.jpg``, relative to the Places365-Standard folder). A leading ``/``
on a path is ignored, so both spellings found in the wild resolve under ``root``; a path that
climbs out of ``root`` with ``..`` is a malformed line, so a split file can only name files
inside the data root.

Every line is checked when the dataset is built (malformed lines, labels outside
``[0, num_classes)``, missing image files), each problem reported with the split file and line
number. Images are decoded lazily; an unreadable one raises a DataError naming the file. With
``skip_corrupt=True`` every image is decoded once up front (slow for a large dataset such as
ImageNet-LT, as it reads every file) and missing or unreadable images are skipped and reported
instead.
"""
from __future__ import annotations

import os
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath
from typing import Any

from purenoise.data._checks import check_bool, check_choice, check_int, check_size
from purenoise.data.imagelist import ImageList, decode_check, default_workers, leaves_root, report_skipped
from purenoise.data.bundle import DatasetBundle, DatasetInfo, default_root
from purenoise.data.registry import register_dataset
from purenoise.errors import DataError, DataNotFoundError, first_lines

__all__ = ["read_split_file", "class_names_from_paths", "load_split"]

_SOURCES = {
    "ImageNet_LT": (
        "the ILSVRC-2012 train and val images (https://image-net.org, registration needed)",
        "https://github.com/zhmiao/OpenLongTailRecognition-OLTR (or the Decoupling code, "
        "https://github.com/facebookresearch/classifier-balancing)",
    ),
    "Places_LT": (
        "the Places365-Standard images (http://places2.csail.mit.edu/download.html)",
        "https://github.com/zhmiao/OpenLongTailRecognition-OLTR (or the Decoupling code, "
        "https://github.com/facebookresearch/classifier-balancing)",
    ),
}


def read_split_file(path: str | os.PathLike, root: str | os.PathLike, num_classes: int) -> list[tuple[str, int, int]]:
    """Parse a split file into ``(absolute image path, label, line number)`` triples.

    Blank lines are ignored. A path may contain spaces (the label is the last field). Paths are
    relative to ``root`` (a leading ``/`` is ignored) and must stay inside it.

    Raises:
        DataError: Listing every malformed line (first ten shown) with ``file:line``, a path that
            leads outside ``root`` included.
    """
    path = str(path)
    entries: list[tuple[str, int, int]] = []
    problems: list[str] = []
    try:
        with open(path, encoding="utf-8") as f:
            # Text mode has turned \r\n and \r into \n; splitlines() would also split at form
            # feeds and Unicode separators, and the line numbers would differ from an editor's.
            lines = f.read().split("\n")
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not a UTF-8 text file ({e}); is it really a split file?") from e
    except FileNotFoundError:
        raise DataNotFoundError(f"split file {path} does not exist") from None
    except OSError as e:
        raise DataError(f"cannot read split file {path} ({e.strerror})") from None
    for lineno, line in enumerate(lines, start=1):
        text = line.strip()
        if not text:
            continue
        parts = text.rsplit(None, 1)
        if len(parts) != 2:
            problems.append(f"{path}:{lineno}: expected 'relative/path label', got {text!r}")
            continue
        rel, label_text = parts
        try:
            label = int(label_text)
        except ValueError:
            problems.append(f"{path}:{lineno}: label {label_text!r} is not an integer (line {text!r})")
            continue
        if not 0 <= label < num_classes:
            problems.append(
                f"{path}:{lineno}: label {label} is outside [0, {num_classes}); "
                f"set num_classes if this split has more classes"
            )
            continue
        rel = rel.lstrip("/\\")
        if leaves_root(rel):
            problems.append(
                f"{path}:{lineno}: image path {rel!r} leads outside the data root {root}; paths in a "
                f"split file must be relative to the root and stay inside it"
            )
            continue
        entries.append((os.path.join(str(root), rel), label, lineno))
    if problems:
        raise DataError(f"{len(problems)} bad line(s) in {path}:\n" + first_lines(problems))
    if not entries:
        raise DataError(f"{path} lists no images")
    return entries


def class_names_from_paths(samples: list[tuple[str, int]], num_classes: int) -> list[str]:
    """Class names from the folders images live in (``n01440764``, ``airfield``, ``apartment_building/outdoor``).

    Each label gets the shortest trailing part of its folder path that no other class shares.
    When a label's images are spread over several folders (or a class has no image), names fall
    back to ``class_<label>``.
    """
    folders: dict[int, set[PurePosixPath]] = defaultdict(set)
    for p, label in samples:
        folders[label].add(PurePosixPath(Path(p).parent.as_posix()))
    fallback = [f"class_{i}" for i in range(num_classes)]
    if len(folders) != num_classes or any(len(f) != 1 for f in folders.values()):
        return fallback
    parts = {label: next(iter(f)).parts for label, f in folders.items()}
    names = []
    for label in range(num_classes):
        own = parts[label]
        for k in range(1, len(own) + 1):
            suffix = own[-k:]
            if all(other[-k:] != suffix for o, other in parts.items() if o != label):
                names.append("/".join(suffix))
                break
        else:
            return fallback
    return names


def _find_split(prefix: str, split: str, dirs: list[str]) -> str:
    name = f"{prefix}_{split}.txt"
    for d in dirs:
        if os.path.isfile(os.path.join(d, name)):
            return os.path.join(d, name)
    images, splits = _SOURCES[prefix]
    raise DataNotFoundError(
        f"split file {name} not found in {', '.join(dirs)}. Put the OLTR split files "
        f"{prefix}_train.txt, {prefix}_val.txt and {prefix}_test.txt there (or pass split_dir); they "
        f"come with {splits}. The images themselves are {images}, placed so that the paths in the "
        f"split files resolve under root. They cannot be downloaded automatically."
    )


def load_split(
    dataset: str,
    prefix: str,
    root: str,
    split: str,
    *,
    split_dir: str | None,
    num_classes: int,
    skip_corrupt: bool,
    notes: list[str],
    class_names: list[str] | None = None,
    nominal_size: tuple[int, int] | None = None,
) -> ImageList:
    """Build the ImageList of one split, checking every line and (cheaply) every file."""
    dirs = [split_dir] if split_dir else [root, os.path.join(root, prefix)]
    split_path = _find_split(prefix, split, dirs)
    entries = read_split_file(split_path, root, num_classes)
    with ThreadPoolExecutor(default_workers()) as pool:
        exists = list(pool.map(os.path.isfile, (p for p, _, _ in entries), chunksize=256))
    missing = [(p, n) for (p, _, n), ok in zip(entries, exists) if not ok]
    skipped: list[tuple[str, str]] = []
    if missing and not skip_corrupt:
        shown = first_lines([f"{split_path}:{n}: {p}" for p, n in missing])
        raise DataNotFoundError(
            f"{len(missing)} of {len(entries)} images listed in {split_path} are missing under "
            f"root {root}:\n{shown}\nCheck root (paths in the split file are relative to it), "
            f"or pass skip_corrupt=True (skip_corrupt: true in a training config) to skip them."
        )
    if skip_corrupt:
        present = [(p, t) for (p, t, _), ok in zip(entries, exists) if ok]
        skipped = [(p, "missing") for p, _ in missing]
        reasons = decode_check([p for p, _ in present])
        samples = [s for s, r in zip(present, reasons) if r is None]
        skipped += [(p, r) for (p, _), r in zip(present, reasons) if r is not None]
        report_skipped(f"{dataset} ({split})", skipped, notes, len(entries))
        if not samples:
            raise DataError(f"every image listed in {split_path} is missing or unreadable")
    else:
        samples = [(p, t) for p, t, _ in entries]
    if class_names is None:
        class_names = class_names_from_paths(samples, num_classes)
    return ImageList(root, samples, class_names, mode="RGB", nominal_size=nominal_size)


def _build(dataset: str, prefix: str, root: str | None, *, split_dir: Any, num_classes: Any,
           test_split: Any, skip_corrupt: Any, image_size: Any) -> DatasetBundle:
    root = root or default_root()
    num_classes = check_int(dataset, "num_classes", num_classes, minimum=1)
    test_split = check_choice(dataset, "test_split", test_split, ("test", "val"))
    skip_corrupt = check_bool(dataset, "skip_corrupt", skip_corrupt)
    size = check_size(dataset, "image_size", image_size)
    if split_dir is not None:
        split_dir = str(Path(split_dir).expanduser())
    if not os.path.isdir(root):
        images, splits = _SOURCES[prefix]
        raise DataNotFoundError(
            f"{dataset}: image root {root} does not exist; pass root=<folder that the paths in "
            f"{prefix}_train.txt are relative to> (data_root in a training config). The images are "
            f"{images}; the split files come with {splits}. They cannot be downloaded automatically."
        )
    notes: list[str] = []
    kw = dict(split_dir=split_dir, num_classes=num_classes, skip_corrupt=skip_corrupt, notes=notes,
              nominal_size=size)
    train = load_split(dataset, prefix, root, "train", **kw)
    test = load_split(dataset, prefix, root, test_split, class_names=train.classes, **kw)
    per_class = Counter(train.targets)
    counts = [per_class.get(c, 0) for c in range(num_classes)]
    empty = [c for c, n in enumerate(counts) if n == 0]
    if empty:
        notes.append(f"{dataset}: {len(empty)} class(es) have no training image: labels {empty[:20]}")
    info = DatasetInfo(
        name=dataset,
        num_classes=num_classes,
        class_names=list(train.classes),
        image_size=size,  # type: ignore[arg-type]
        channels=3,
        options={"split_dir": split_dir, "num_classes": num_classes, "test_split": test_split,
                 "skip_corrupt": skip_corrupt, "image_size": list(size)},  # type: ignore[arg-type]
        root=os.path.abspath(root),
        notes=notes,
    )
    return DatasetBundle(train, test, counts, info)


# These sets are large: statistics are estimated on 20,000 random training images by default.
@register_dataset("imagenet_lt", common={"stats_max_images": 20000})
def imagenet_lt(root: str | None, *, download: bool = False, split_dir: str | None = None, num_classes: int = 1000,
                test_split: str = "test", skip_corrupt: bool = False, image_size: int = 224) -> DatasetBundle:
    """ImageNet-LT (OLTR): 1000 classes, 115.8K training images (1280 down to 5 per class)."""
    return _build("imagenet_lt", "ImageNet_LT", root, split_dir=split_dir, num_classes=num_classes,
                  test_split=test_split, skip_corrupt=skip_corrupt, image_size=image_size)


@register_dataset("places_lt", common={"stats_max_images": 20000})
def places_lt(root: str | None, *, download: bool = False, split_dir: str | None = None, num_classes: int = 365,
              test_split: str = "test", skip_corrupt: bool = False, image_size: int = 224) -> DatasetBundle:
    """Places-LT (OLTR): 365 classes, 62.5K training images (4980 down to 5 per class)."""
    return _build("places_lt", "Places_LT", root, split_dir=split_dir, num_classes=num_classes,
                  test_split=test_split, skip_corrupt=skip_corrupt, image_size=image_size)
