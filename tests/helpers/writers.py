"""Writers of small datasets in their real on-disk formats, for the data, study and wheel tests."""
from __future__ import annotations

import gzip
import pickle
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _dump(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def write_cifar10(root: Path, per_class_per_batch: int = 4, test_per_class: int = 3, seed: int = 0):
    """CIFAR-10 python format: five data batches, a test batch and batches.meta.

    Returns the full training images as [N, 32, 32, 3] uint8 and labels, in file order.
    """
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    all_data, all_labels = [], []
    for b in range(1, 6):
        labels = rng.permutation(np.repeat(np.arange(10), per_class_per_batch)).tolist()
        data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
        _dump(folder / f"data_batch_{b}", {"batch_label": f"training batch {b} of 5", "labels": labels,
                                            "data": data, "filenames": [f"img{b}_{i}.png" for i in range(len(labels))]})
        all_data.append(data)
        all_labels += labels
    labels = np.repeat(np.arange(10), test_per_class).tolist()
    data = rng.integers(0, 256, size=(len(labels), 3072), dtype=np.uint8)
    _dump(folder / "test_batch", {"batch_label": "testing batch 1 of 1", "labels": labels, "data": data,
                                  "filenames": [f"test{i}.png" for i in range(len(labels))]})
    _dump(folder / "batches.meta", {"num_cases_per_batch": 10 * per_class_per_batch, "label_names": CIFAR10_NAMES,
                                    "num_vis": 3072})
    images = np.vstack(all_data).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, np.asarray(all_labels)


def write_cifar100(root: Path, per_class: int = 6, test_per_class: int = 2, seed: int = 1):
    """CIFAR-100 python format: train, test and meta pickles with fine and coarse labels."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    fine_names = [f"fine{i:02d}" for i in range(100)]
    coarse_names = [f"coarse{i:02d}" for i in range(20)]
    out = {}
    for split, n in (("train", per_class), ("test", test_per_class)):
        fine = rng.permutation(np.repeat(np.arange(100), n)).tolist()
        data = rng.integers(0, 256, size=(len(fine), 3072), dtype=np.uint8)
        _dump(folder / split, {"filenames": [f"{split}{i}.png" for i in range(len(fine))], "batch_label": split,
                               "fine_labels": fine, "coarse_labels": [f // 5 for f in fine], "data": data})
        out[split] = (data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), np.asarray(fine))
    _dump(folder / "meta", {"fine_label_names": fine_names, "coarse_label_names": coarse_names})
    return out


def idx_bytes(array: np.ndarray) -> bytes:
    """An array of uint8 in the idx format (big-endian header)."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def write_fmnist(folder: Path, per_class: int = 30, test_per_class: int = 4, gz: bool = True, seed: int = 2):
    """The four Fashion-MNIST idx files (gzipped or raw) with random images."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", per_class), ("t10k", test_per_class)):
        labels = rng.permutation(np.repeat(np.arange(10), n)).astype(np.uint8)
        images = rng.integers(0, 256, size=(labels.size, 28, 28), dtype=np.uint8)
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{split}-{kind}-ubyte"
            data = idx_bytes(arr)
            if gz:
                with gzip.open(folder / (name + ".gz"), "wb") as f:
                    f.write(data)
            else:
                (folder / name).write_bytes(data)
        out[split] = (images, labels)
    return out


def save_image(path: Path, size=(12, 10), mode="RGB", color=None, fmt=None) -> None:
    """A small image file (width, height) of one colour, or a random one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"RGB": 3, "L": 1, "RGBA": 4}[mode]
    if color is None:
        rng = np.random.default_rng(zlib.crc32(str(path).encode()))
        arr = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    else:
        arr = np.empty((size[1], size[0], channels), dtype=np.uint8)
        arr[...] = color
    img = Image.fromarray(arr[..., 0] if channels == 1 else arr, mode=mode)
    img.save(path, format=fmt)


def write_split_dataset(root: Path, prefix: str, counts: list[int], test_per_class: int = 2, val_per_class: int = 1):
    """ImageNet-LT style: images under root/train/<wnid>/ and root/val/<wnid>/ plus the three split files."""
    lines = {"train": [], "val": [], "test": []}
    for label, n in enumerate(counts):
        wnid = f"n{label:08d}"
        for i in range(n):
            rel = f"train/{wnid}/{wnid}_{i}.JPEG"
            save_image(root / rel, size=(10 + label, 8), fmt="JPEG")
            lines["train"].append(f"{rel} {label}")
        for i in range(val_per_class):
            rel = f"train/{wnid}/{wnid}_val{i}.JPEG"
            save_image(root / rel, size=(9, 9), fmt="JPEG")
            lines["val"].append(f"{rel} {label}")
        for i in range(test_per_class):
            rel = f"val/{wnid}/ILSVRC2012_val_{label:03d}{i}.JPEG"
            save_image(root / rel, size=(11, 7), fmt="JPEG")
            lines["test"].append(f"{rel} {label}")
    for split, ls in lines.items():
        (root / f"{prefix}_{split}.txt").write_text("\n".join(ls) + "\n")
    return lines
