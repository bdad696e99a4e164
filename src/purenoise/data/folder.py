"""A user's own images in ImageFolder layout: ``root/<class>/<image>`` or ``root/train/<class>/<image>``.

Held-out images come from ``root/test/`` or ``root/val/`` when present (same class folder names);
otherwise a seeded stratified split of the training images holds out ``val_fraction`` of every
class (its size and seed are reported in ``info.notes``). For
imbalance studies, ``ratio`` (with ``profile``, ``n_max``, ``class_order``) subsamples the training
part to a long-tail profile with the same rule as CIFAR-LT (label order, ``n_max`` = the smallest
class, LDAM-DRW's seeded selection); the held-out part is never subsampled.

Real folders are messy, so building the dataset reads every image header (cheap, threaded):
- mixed modes: every image is converted to the majority mode, ``"L"`` when most images are
  grayscale, else ``"RGB"`` (RGBA, palette and CMYK count as colour); ``mode`` forces one. The
  number converted is reported in ``info.notes``.
- sizes: images are resized on loading to ``image_size``, by default the most common size.
- unreadable images: an error listing them, or with ``skip_corrupt=True`` they are skipped (every
  image is then fully decoded once) and counted in a warning and ``info.notes``.
- an empty class folder is an error that names it.
- symbolic links: a class folder may itself be a link (images on another disk), but inside it no
  linked folder is followed (one that stays inside is scanned through its real path anyway; one
  that loops, like ``class0/self -> .``, or leads to another class would count images many times)
  and a linked file counts only when it resolves inside its class folder. Every image file counts
  once, by its resolved path. What was skipped is reported in ``info.notes``.
"""
from __future__ import annotations

import os
from collections import Counter
from typing import Any

import numpy as np
from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, has_file_allowed_extension

from purenoise.data._checks import check_bool, check_choice, check_fraction, check_int, check_ratio, check_size
from purenoise.data.imagelist import (
    ImageList,
    decode_check,
    describe_conversion,
    majority_mode,
    probe_images,
    report_skipped,
)
from purenoise.data.longtail import PROFILES, longtail_counts, longtail_indices, ordered_counts, resolve_class_order
from purenoise.data.bundle import DatasetBundle, DatasetInfo
from purenoise.data.registry import register_dataset
from purenoise.errors import ConfigError, DataError, DataNotFoundError, first_lines

__all__ = ["scan_class_folders", "walk_class_folder", "prepare_images", "stratified_split", "imbalance", "load_image_folder"]

Sample = tuple[str, int]


def _inside(path: str, folder: str) -> bool:
    """Whether the resolved ``path`` is ``folder`` itself or lies below it."""
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def walk_class_folder(class_dir: str, skipped: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Image files below one class folder as ``(path, resolved path)``, in torchvision's order.

    The order is that of ``torchvision.datasets.folder.make_dataset`` (folders sorted by path,
    files by name), so a tree without links gives the same samples as before. Linked folders are
    not followed and linked files that resolve outside ``class_dir`` are not counted; each is
    appended to ``skipped`` with the reason.
    """
    real_class = os.path.realpath(class_dir)
    listed: list[tuple[str, list[tuple[str, str]]]] = []
    stack = [(class_dir, real_class)]
    while stack:
        folder, real_folder = stack.pop()
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            skipped.append((folder, f"cannot be listed ({e.strerror or e})"))
            continue
        files = []
        for entry in entries:
            if entry.is_symlink():
                target = os.path.realpath(entry.path)
                if os.path.isdir(target):
                    why = "a loop" if _inside(real_folder, target) else (
                        "inside the class folder" if _inside(target, real_class) else "outside the class folder")
                    skipped.append((entry.path, f"linked folder not followed ({why})"))
                elif not has_file_allowed_extension(entry.name, IMG_EXTENSIONS):
                    continue
                elif _inside(target, real_class):
                    files.append((entry.path, target))
                else:
                    skipped.append((entry.path, f"link to a file outside the class folder ({target})"))
            elif entry.is_dir(follow_symlinks=False):
                stack.append((entry.path, os.path.join(real_folder, entry.name)))
            elif has_file_allowed_extension(entry.name, IMG_EXTENSIONS):
                files.append((entry.path, os.path.join(real_folder, entry.name)))
        listed.append((folder, files))
    return [f for _, files in sorted(listed, key=lambda x: x[0]) for f in files]


def _note_links(dataset: str, directory: str, skipped: list[tuple[str, str]], notes: list[str]) -> None:
    """One note naming the first few links and duplicates that were not counted."""
    if skipped:
        shown = "; ".join(f"{p}: {r}" for p, r in skipped[:5])
        more = f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""
        notes.append(f"{dataset}: {len(skipped)} link(s) or duplicate file(s) under {directory} were not "
                     f"counted, so that every image counts once in its own class: {shown}{more}")


def _check_distinct(dataset: str, directory: str, classes: list[str]) -> None:
    """Refuse class folders that are, or hold, another class's folder (through symbolic links).

    Either way the same images would be labelled with two classes.
    """
    real = sorted((tuple(os.path.realpath(os.path.join(directory, c)).split(os.sep)), c) for c in classes)
    for (outer, a), (inner, b) in zip(real, real[1:]):  # a folder's descendants sort right after it
        if inner[:len(outer)] == outer:
            how = "the same folder as" if inner == outer else "inside"
            raise DataError(
                f"{dataset}: class folder {os.path.join(directory, b)} is {how} class folder "
                f"{os.path.join(directory, a)} (resolved: {os.sep.join(inner)}), through a symbolic link, so "
                f"their images would count for two classes; give each class its own folder"
            )


def scan_class_folders(
    directory: str, dataset: str, class_to_idx: dict[str, int] | None = None, notes: list[str] | None = None
) -> tuple[list[str], list[Sample]]:
    """Classes (sorted folder names) and samples of an ImageFolder tree.

    With ``class_to_idx`` (a held-out split), folder names must be among the training classes and
    may be a subset of them. Each image file counts once, by resolved path (see
    :func:`walk_class_folder`); links and duplicates left out are described in ``notes``.

    Raises:
        DataError: No class folders, an empty class folder, two class folders that are the same
            folder, or an unknown class in a held-out split.
    """
    try:
        classes, found = find_classes(directory)
    except FileNotFoundError as e:
        raise DataError(
            f"{dataset}: no class folders in {directory}; expected {directory}/<class name>/<image files>"
        ) from e
    if class_to_idx is not None:
        unknown = [c for c in classes if c not in class_to_idx]
        if unknown:
            raise DataError(
                f"{dataset}: {directory} has class folder(s) {unknown} that are not in the training "
                f"classes {sorted(class_to_idx)}; rename or remove them"
            )
        mapping = {c: class_to_idx[c] for c in classes}
        names = sorted(class_to_idx, key=class_to_idx.__getitem__)
    else:
        mapping, names = found, classes
    _check_distinct(dataset, directory, classes)
    samples: list[Sample] = []
    skipped: list[tuple[str, str]] = []
    seen: dict[str, str] = {}
    for c in classes:
        for path, resolved in walk_class_folder(os.path.join(directory, c), skipped):
            if resolved in seen:
                skipped.append((path, f"same file as {seen[resolved]}"))
                continue
            seen[resolved] = path
            samples.append((path, mapping[c]))
    if notes is not None:
        _note_links(dataset, directory, skipped, notes)
    counts = Counter(t for _, t in samples)
    empty = [c for c in classes if counts[mapping[c]] == 0]
    if empty:
        raise DataError(
            f"{dataset}: class folder(s) {', '.join(os.path.join(directory, c) for c in empty)} hold "
            f"no image files (extensions {', '.join(IMG_EXTENSIONS)}); add images or remove the folder"
        )
    return list(names), samples


def prepare_images(
    dataset: str,
    splits: dict[str, list[Sample]],
    *,
    mode: str | None,
    image_size: tuple[int, int] | None,
    skip_corrupt: bool,
    notes: list[str],
) -> tuple[dict[str, list[Sample]], str, tuple[int, int]]:
    """Check every image header; pick the mode and size; drop (or report) unreadable images."""
    everything = [(name, s) for name, samples in splits.items() for s in samples]
    headers = probe_images([p for _, (p, _) in everything])
    bad = [(p, h) for (_, (p, _)), h in zip(everything, headers) if isinstance(h, str)]
    if bad and not skip_corrupt:
        shown = first_lines([f"{p}: {r}" for p, r in bad])
        raise DataError(
            f"{dataset}: {len(bad)} image file(s) cannot be read:\n{shown}\n"
            f"Fix or remove them, or set skip_corrupt: true in the config (skip_corrupt=True in "
            f"create_dataset) to skip and count them."
        )
    keep = [not isinstance(h, str) for h in headers]
    skipped = [(p, r) for p, r in bad]
    if skip_corrupt:
        # A readable header does not mean readable pixels (truncated files): decode everything once.
        reasons = decode_check([p for (_, (p, _)), k in zip(everything, keep) if k])
        it = iter(reasons)
        for i, k in enumerate(keep):
            if k:
                r = next(it)
                if r is not None:
                    keep[i] = False
                    skipped.append((everything[i][1][0], r))
        report_skipped(dataset, skipped, notes, len(everything))
    out: dict[str, list[Sample]] = {name: [] for name in splits}
    modes, sizes = [], []
    for (name, sample), header, k in zip(everything, headers, keep):
        if k:
            out[name].append(sample)
            modes.append(header[0])  # type: ignore[index]
            sizes.append(header[1])  # type: ignore[index]
    if not modes:
        raise DataError(f"{dataset}: no readable image is left")
    majority, mode_counts = majority_mode(modes)
    target = mode or majority
    note = describe_conversion(dataset, target, mode_counts)
    if note:
        notes.append(note)
    if image_size is None:
        (w, h), _ = Counter(sizes).most_common(1)[0]
        image_size = (h, w)
        differing = sum(1 for s in sizes if s != (w, h))
        if differing:
            notes.append(
                f"{dataset}: {differing} image(s) differ from the most common size {h}x{w} and are "
                f"resized to it on loading (set image_size to choose another size)"
            )
    return out, target, image_size


def stratified_split(labels: list[int], fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Indices ``(train, held_out)``: ``round(n * fraction)`` of each class held out, at least one
    when the class has two or more images, never the class's last image."""
    rng = np.random.default_rng(seed)
    t = np.asarray(labels)
    train, held = [], []
    for c in np.unique(t):
        idx = np.flatnonzero(t == c)
        rng.shuffle(idx)
        k = int(round(idx.size * fraction))
        k = min(max(k, 1 if idx.size >= 2 else 0), idx.size - 1)
        held += idx[:k].tolist()
        train += idx[k:].tolist()
    return sorted(train), sorted(held)


def imbalance(
    dataset: str, labels: list[int], class_names: list[str], *, ratio: float, profile: str, seed: int,
    n_max: int | None, class_order: Any, notes: list[str], clip: bool = False,
) -> tuple[np.ndarray, list[int], dict[str, Any]]:
    """Long-tailed subset of a labelled set with LDAM-DRW's selection rule.

    The head of the profile is ``class_order[0]``. Without ``clip`` (synthetic imbalance of a
    roughly balanced set) the default order is the label order, as for CIFAR-LT, and ``n_max``
    defaults to the smallest class size, so the profile is exact. With ``clip`` (a set that is
    imbalanced already, like CelebA-5) the default order is by how many images a class has (most
    first, ties by label), ``n_max`` defaults to the largest class, and counts beyond what a class
    has are clipped (and noted).
    """
    available = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(class_names))
    if class_order is None and clip:
        order = sorted(range(len(class_names)), key=lambda c: (-available[c], c))
    elif class_order is None:
        order = list(range(len(class_names)))
    else:
        order = resolve_class_order(class_order, class_names, seed=seed)
    if n_max is None:
        n_max = int(available[order[0]]) if clip else int(available.min())
    counts = ordered_counts(longtail_counts(n_max, len(class_names), ratio, profile), order)
    over = [(class_names[c], counts[c], int(available[c])) for c in range(len(class_names)) if counts[c] > available[c]]
    if over and not clip:
        raise ConfigError(
            f"{dataset}: the profile (n_max={n_max}, ratio={ratio:g}) asks for more images than some "
            f"classes have (class, wanted, available): {over}; lower n_max"
        )
    if over:
        counts = [min(n, int(a)) for n, a in zip(counts, available)]
        notes.append(f"{dataset}: profile clipped to the images available for (class, wanted, available) {over}")
    indices = longtail_indices(labels, counts, seed=seed)
    resolved = {"n_max": n_max, "class_order": [int(c) for c in order]}
    return indices, counts, resolved


def load_image_folder(
    root: str, dataset: str, *, held_out: str, notes: list[str] | None = None
) -> tuple[list[str], dict[str, list[Sample]], str]:
    """Scan ``root/train`` and the held-out folder (``"auto"``: test/, else val/, else none).

    A plain folder of class folders (``root/<class>/<images>``, no ``train/``) is the training
    part, and its held-out part is split from it (``"split"``). Links and duplicate files that
    were not counted are described in ``notes``.
    """
    train_dir = os.path.join(root, "train")
    if not os.path.isdir(train_dir):
        plain = os.path.isdir(root) and not any(os.path.isdir(os.path.join(root, d)) for d in ("test", "val")) \
            and any(e.is_dir() for e in os.scandir(root))
        if not plain:
            raise DataNotFoundError(
                f"{dataset}: no class folders in {root}; expected {root}/<class>/<images>, or "
                f"{root}/train/<class>/<images> with optionally {root}/test/<class>/... or {root}/val/<class>/..."
            )
        if held_out not in ("auto", "split"):
            raise ConfigError(f"{dataset}: test_split={held_out!r}, but {root} holds class folders directly "
                              f"(no train/ and {held_out}/); use test_split: split or auto")
        classes, train = scan_class_folders(root, dataset, notes=notes)
        return classes, {"train": train}, "split"
    classes, train = scan_class_folders(train_dir, dataset, notes=notes)
    if held_out == "auto":
        held_out = next((d for d in ("test", "val") if os.path.isdir(os.path.join(root, d))), "split")
    splits = {"train": train}
    if held_out != "split":
        held_dir = os.path.join(root, held_out)
        if not os.path.isdir(held_dir):
            raise DataNotFoundError(f"{dataset}: test_split={held_out!r} but {held_dir} does not exist")
        _, splits["test"] = scan_class_folders(held_dir, dataset, {c: i for i, c in enumerate(classes)}, notes)
    return classes, splits, held_out


@register_dataset("folder")
def folder(root: str | None, *, download: bool = False, test_split: str = "auto", val_fraction: float = 0.2,
           seed: int = 0, ratio: float | None = None, profile: str = "exp", n_max: int | None = None,
           class_order: Any = None, image_size: Any = None, mode: str | None = None,
           skip_corrupt: bool = False) -> DatasetBundle:
    """Your own images: ``root/<class>/*`` or ``root/train/<class>/*`` with optional test/ or val/.

    Without a held-out folder, a stratified split of ``val_fraction`` (seeded by ``seed``) is the
    test set; its size and seed are in ``info.notes``. Optionally made long-tailed (``ratio``).
    """
    name = "folder"
    if root is None:
        raise ConfigError("folder: pass root=<folder of class folders, or holding train/ (and optionally test/ or val/)>")
    test_split = check_choice(name, "test_split", test_split, ("auto", "test", "val", "split"))
    val_fraction = check_fraction(name, "val_fraction", val_fraction)
    seed = check_int(name, "seed", seed)
    ratio = check_ratio(name, ratio, allow_none=True)
    profile = check_choice(name, "profile", profile, PROFILES)
    n_max = check_int(name, "n_max", n_max, minimum=1, allow_none=True)
    size = check_size(name, "image_size", image_size, allow_none=True)
    mode = check_choice(name, "mode", mode, (None, "RGB", "L"))
    skip_corrupt = check_bool(name, "skip_corrupt", skip_corrupt)
    notes: list[str] = []
    classes, splits, held = load_image_folder(root, name, held_out=test_split, notes=notes)
    splits, mode, size = prepare_images(
        name, splits, mode=mode, image_size=size, skip_corrupt=skip_corrupt, notes=notes
    )
    train = splits["train"]
    if held == "split":
        train_idx, test_idx = stratified_split([t for _, t in train], val_fraction, seed)
        test = [train[i] for i in test_idx]
        train = [train[i] for i in train_idx]
        notes.append(f"no test/ or val/ folder: {len(test)} of {len(train) + len(test)} images held out for "
                     f"testing, a stratified split (val_fraction {val_fraction}, seed {seed}: at least one "
                     "image of every class with two or more, never a class's last one)")
    else:
        test = splits["test"]
    labels = [t for _, t in train]
    options: dict[str, Any] = {"test_split": held, "val_fraction": val_fraction, "seed": seed, "ratio": ratio,
                               "profile": profile, "n_max": n_max, "class_order": class_order,
                               "image_size": list(size), "mode": mode, "skip_corrupt": skip_corrupt}
    if ratio is not None:
        indices, counts, resolved = imbalance(name, labels, classes, ratio=ratio, profile=profile, seed=seed,
                                              n_max=n_max, class_order=class_order, notes=notes)
        train = [train[i] for i in indices]
        options.update(resolved)
    else:
        counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(classes)).tolist()
    missing = [classes[c] for c, n in enumerate(counts) if n == 0]
    if missing:
        raise DataError(f"folder: class(es) {missing} have no training image left after the held-out split")
    train_ds = ImageList(root, train, classes, mode=mode, image_size=size)
    test_ds = ImageList(root, test, classes, mode=mode, image_size=size) if test else None
    info = DatasetInfo(
        name=name,
        num_classes=len(classes),
        class_names=classes,
        image_size=size,
        channels=1 if mode == "L" else 3,
        options=options,
        root=os.path.abspath(root),
        notes=notes,
    )
    return DatasetBundle(train_ds, test_ds, counts, info)
