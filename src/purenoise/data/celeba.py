"""CelebA-5: five hair-colour classes of CelebA (blond, black, bald, brown, gray), after M2m.

Rule implemented (documented because the sources do not give M2m's exact script):

1. From CelebA's ``list_attr_celeba.txt`` keep every image with exactly one of the attributes
   ``Blond_Hair``, ``Black_Hair``, ``Bald``, ``Brown_Hair``, ``Gray_Hair`` set to 1; its label is
   that attribute, in this order (0 blond, 1 black, 2 bald, 3 brown, 4 gray). Images with none or
   several of them are dropped.
2. ``list_eval_partition.txt``: partition 0 is the training set, 2 the test set (1, the
   validation set, with ``test_split="val"``).
3. Images (``img_align_celeba/``, 178x218) are centre-cropped to a square and resized to
   ``image_size`` (64 by default) when loaded.

This keeps CelebA's natural imbalance (bald and gray are the rare classes). M2m (Kim et al.,
CVPR 2020) further subsampled the training classes to a long-tailed profile; ``ratio`` (with
``profile``, ``n_max``, ``class_order``, ``seed``) does the same with LDAM-DRW's selection rule:
classes ordered by their natural frequency, the most frequent keeps ``n_max`` (default: all its
images), the others follow the profile, clipped to what they have. ``test_per_class`` draws a
class-balanced test set (seeded) so that top-1 equals balanced accuracy, as on the CIFAR
benchmarks. The resulting counts are in ``bundle.class_counts`` and ``info.notes``; they are
fixed by the official release's annotation files (they could not be computed here, where CelebA
is not available, so no numbers are quoted).

The attribute and partition files may also be the Kaggle CSV versions (``list_attr_celeba.csv``,
``list_eval_partition.csv``), and ``root`` may instead hold an already prepared ImageFolder
(``train/<class>/``, ``test/`` or ``val/``), e.g. M2m's own CelebA-5 images.
"""
from __future__ import annotations

import csv
import os
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from purenoise.data._checks import check_bool, check_choice, check_int, check_ratio, check_size
from purenoise.data.folder import imbalance, load_image_folder, prepare_images
from purenoise.data.imagelist import ImageList, decode_check, default_workers, leaves_root, report_skipped
from purenoise.data.longtail import PROFILES
from purenoise.data.bundle import DatasetBundle, DatasetInfo, default_root
from purenoise.data.registry import register_dataset
from purenoise.errors import ConfigError, DataError, DataNotFoundError

__all__ = ["CELEBA5_ATTRIBUTES", "CELEBA5_CLASSES", "read_attributes", "read_partition", "celeba5_samples"]

CELEBA5_ATTRIBUTES = ("Blond_Hair", "Black_Hair", "Bald", "Brown_Hair", "Gray_Hair")
CELEBA5_CLASSES = ("blond", "black", "bald", "brown", "gray")
_ALIASES = {alias: i for i, names in enumerate(zip(CELEBA5_CLASSES, CELEBA5_ATTRIBUTES))
            for alias in (names[0], names[1].lower(), names[1].lower().replace("_hair", ""), names[0] + "e")}
_URL = "https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html"
_PARTITIONS = {"train": 0, "val": 1, "test": 2}


def read_attributes(path: str) -> tuple[list[str], dict[str, list[str]]]:
    """Attribute names and, per image file name, its raw values (``"1"``/``"-1"``).

    Reads the official text format (count line, names line, one line per image) or the Kaggle CSV.
    Image names are relative to the image folder and must stay inside it.

    Raises:
        DataError: A malformed line, or an image name that leads outside the image folder
            (``../x``, an absolute path), reported as ``file:line``.
    """
    rows: dict[str, list[str]] = {}
    if path.endswith(".csv"):
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header or len(header) < 2:
                raise DataError(f"{path}:1: expected a header 'image_id,<attribute>,...'")
            names = [h.strip() for h in header[1:]]
            for lineno, row in enumerate(reader, start=2):
                if not row:
                    continue
                if len(row) != len(names) + 1:
                    raise DataError(f"{path}:{lineno}: expected {len(names) + 1} fields, got {len(row)}")
                rows[_image_name(row[0].strip(), path, lineno)] = [v.strip() for v in row[1:]]
        return names, rows
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    if len(lines) < 2:
        raise DataError(f"{path}: expected a count line and a line of attribute names")
    try:
        declared = int(lines[0].strip())
    except ValueError:
        raise DataError(f"{path}:1: expected the number of images, got {lines[0]!r}") from None
    names = lines[1].split()
    for lineno, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1:
            raise DataError(
                f"{path}:{lineno}: expected a file name and {len(names)} values, got {len(parts) - 1} values"
            )
        rows[_image_name(parts[0], path, lineno)] = parts[1:]
    if len(rows) != declared:
        raise DataError(f"{path}: line 1 declares {declared} images but the file lists {len(rows)}")
    return names, rows


def _image_name(name: str, path: str, lineno: int) -> str:
    if leaves_root(name):
        raise DataError(
            f"{path}:{lineno}: image name {name!r} leads outside the image folder; names must be "
            f"file names (or paths) inside img_align_celeba"
        )
    return name


def read_partition(path: str) -> dict[str, int]:
    """Partition (0 train, 1 val, 2 test) per image file name; text or Kaggle CSV."""
    out: dict[str, int] = {}
    with open(path, newline="", encoding="utf-8") as f:
        if path.endswith(".csv"):
            reader = csv.reader(f)
            next(reader, None)
            pairs = ((i, row) for i, row in enumerate(reader, start=2))
        else:
            pairs = ((i, line.split()) for i, line in enumerate(f, start=1))
        for lineno, parts in pairs:
            if not parts:
                continue
            if len(parts) != 2 or parts[1].strip() not in ("0", "1", "2"):
                raise DataError(f"{path}:{lineno}: expected '<file name> <0|1|2>', got {parts!r}")
            out[parts[0].strip()] = int(parts[1])
    return out


def _find(dirs: list[str], names: tuple[str, ...]) -> str | None:
    for d in dirs:
        for n in names:
            if os.path.isfile(os.path.join(d, n)):
                return os.path.join(d, n)
    return None


def celeba5_samples(root: str) -> tuple[dict[str, list[tuple[str, int]]], str]:
    """``{"train"|"val"|"test": [(path, label), ...]}`` from the CelebA files under ``root``."""
    dirs = [root, os.path.join(root, "celeba"), os.path.join(root, "CelebA")]
    attr_path = _find(dirs, ("list_attr_celeba.txt", "list_attr_celeba.csv"))
    part_path = _find(dirs, ("list_eval_partition.txt", "list_eval_partition.csv"))
    if attr_path is None or part_path is None:
        wanted = (("list_attr_celeba.txt", attr_path), ("list_eval_partition.txt", part_path))
        missing = [n for n, p in wanted if p is None]
        raise DataNotFoundError(
            f"celeba5: {', '.join(missing)} not found in {', '.join(dirs)}, and {root} holds no prepared "
            f"ImageFolder (train/<class>/...). Download CelebA's 'Align&Cropped' images "
            f"(img_align_celeba.zip) and the annotation files list_attr_celeba.txt and "
            f"list_eval_partition.txt from {_URL} into {root}; torchvision.datasets.CelebA(root, "
            f"download=True) fetches the same files into {os.path.join(root, 'celeba')}."
        )
    base = os.path.dirname(attr_path)
    img_dir = os.path.join(base, "img_align_celeba")
    if os.path.isdir(os.path.join(img_dir, "img_align_celeba")):  # the Kaggle archive nests it
        img_dir = os.path.join(img_dir, "img_align_celeba")
    if not os.path.isdir(img_dir):
        raise DataNotFoundError(
            f"celeba5: image folder {img_dir} not found; extract img_align_celeba.zip into {base} ({_URL})"
        )
    names, rows = read_attributes(attr_path)
    missing_attrs = [a for a in CELEBA5_ATTRIBUTES if a not in names]
    if missing_attrs:
        raise DataError(f"{attr_path}: attribute column(s) {missing_attrs} not found; columns are {names}")
    cols = [names.index(a) for a in CELEBA5_ATTRIBUTES]
    partition = read_partition(part_path)
    out: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    by_part = {v: k for k, v in _PARTITIONS.items()}
    for fname, values in rows.items():
        hits = [k for k, c in enumerate(cols) if values[c] == "1"]
        if len(hits) != 1:
            continue
        if fname not in partition:
            raise DataError(f"{part_path}: image {fname} (listed in {attr_path}) has no partition")
        out[by_part[partition[fname]]].append((os.path.join(img_dir, fname), hits[0]))
    for split in out:
        out[split].sort()
    return out, base


def _prepared(root: str, test_split: str, notes: list[str], skip_corrupt: bool, size: tuple[int, int]):
    classes, splits, held = load_image_folder(root, "celeba5", held_out="auto" if test_split == "test" else test_split)
    if held == "split":
        raise DataNotFoundError(f"celeba5: the prepared folder {root} has train/ but neither test/ nor val/")
    canon = [_ALIASES.get(c.lower()) for c in classes]
    if None not in canon and sorted(canon) == list(range(5)):
        splits = {k: [(p, canon[t]) for p, t in v] for k, v in splits.items()}  # type: ignore[misc]
        classes = list(CELEBA5_CLASSES)
    splits, _, _ = prepare_images(
        "celeba5", splits, mode="RGB", image_size=size, skip_corrupt=skip_corrupt, notes=notes
    )
    return classes, splits["train"], splits["test"]


def _existing(
    dataset: str, samples: list[tuple[str, int]], skip_corrupt: bool, notes: list[str]
) -> list[tuple[str, int]]:
    with ThreadPoolExecutor(default_workers()) as pool:
        ok = list(pool.map(os.path.isfile, (p for p, _ in samples), chunksize=256))
    missing = [p for (p, _), k in zip(samples, ok) if not k]
    if missing and not skip_corrupt:
        raise DataNotFoundError(
            f"{dataset}: {len(missing)} of {len(samples)} selected images are missing, e.g. "
            f"{', '.join(missing[:5])}; extract img_align_celeba.zip completely, or pass skip_corrupt=True"
        )
    if not skip_corrupt:
        return samples
    present = [s for s, k in zip(samples, ok) if k]
    reasons = decode_check([p for p, _ in present])
    skipped = [(p, "missing") for p in missing] + [(p, r) for (p, _), r in zip(present, reasons) if r is not None]
    report_skipped(dataset, skipped, notes, len(samples))
    return [s for s, r in zip(present, reasons) if r is None]


@register_dataset("celeba5")
def celeba5(root: str | None, *, download: bool = False, image_size: Any = 64, test_split: str = "test",
            ratio: float | None = None, profile: str = "exp", n_max: int | None = None, class_order: Any = None,
            seed: int = 0, test_per_class: int | None = None, center_crop: bool = True,
            skip_corrupt: bool = False) -> DatasetBundle:
    """CelebA-5 (M2m): five hair colours, images with exactly one of the five attributes, 64x64."""
    name = "celeba5"
    root = root or default_root()
    size = check_size(name, "image_size", image_size)
    test_split = check_choice(name, "test_split", test_split, ("test", "val"))
    ratio = check_ratio(name, ratio, allow_none=True)
    profile = check_choice(name, "profile", profile, PROFILES)
    n_max = check_int(name, "n_max", n_max, minimum=1, allow_none=True)
    seed = check_int(name, "seed", seed)
    test_per_class = check_int(name, "test_per_class", test_per_class, minimum=1, allow_none=True)
    center_crop = check_bool(name, "center_crop", center_crop)
    skip_corrupt = check_bool(name, "skip_corrupt", skip_corrupt)
    notes: list[str] = []
    if os.path.isdir(os.path.join(root, "train")):
        classes, train, test = _prepared(root, test_split, notes, skip_corrupt, size)  # type: ignore[arg-type]
        base = root
    else:
        splits, base = celeba5_samples(root)
        classes = list(CELEBA5_CLASSES)
        train = _existing(name, splits["train"], skip_corrupt, notes)
        test = _existing(name, splits[test_split], skip_corrupt, notes)
    labels = [t for _, t in train]
    options: dict[str, Any] = {"image_size": list(size), "test_split": test_split,  # type: ignore[arg-type]
                               "ratio": ratio,
                               "profile": profile, "n_max": n_max, "class_order": class_order, "seed": seed,
                               "test_per_class": test_per_class, "center_crop": center_crop,
                               "skip_corrupt": skip_corrupt}
    if ratio is not None:
        indices, counts, resolved = imbalance(name, labels, classes, ratio=ratio, profile=profile, seed=seed,
                                              n_max=n_max, class_order=class_order, notes=notes, clip=True)
        train = [train[i] for i in indices]
        options.update(resolved)
    else:
        counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes)).tolist()
    if test_per_class is not None:
        test = _balanced(test, len(classes), test_per_class, seed, classes)
    notes.append(f"celeba5: train counts {dict(zip(classes, counts))}, test counts "
                 f"{dict(zip(classes, np.bincount([t for _, t in test], minlength=len(classes)).tolist()))}")
    kw = dict(mode="RGB", image_size=size, center_crop=center_crop)
    info = DatasetInfo(name=name, num_classes=len(classes), class_names=list(classes),
                       image_size=size,  # type: ignore[arg-type]
                       channels=3, options=options, root=os.path.abspath(base), notes=notes)
    return DatasetBundle(ImageList(base, train, classes, **kw), ImageList(base, test, classes, **kw), counts, info)


def _balanced(test: list[tuple[str, int]], num_classes: int, per_class: int, seed: int, classes: list[str]):
    have = Counter(t for _, t in test)
    short = {classes[c]: have.get(c, 0) for c in range(num_classes) if have.get(c, 0) < per_class}
    if short:
        raise ConfigError(f"celeba5: test_per_class={per_class} but some classes have fewer test images: {short}")
    rng = np.random.default_rng(seed)
    keep: list[int] = []
    labels = np.asarray([t for _, t in test])
    for c in range(num_classes):
        idx = np.flatnonzero(labels == c)
        keep += sorted(rng.choice(idx, size=per_class, replace=False).tolist())
    return [test[i] for i in keep]
