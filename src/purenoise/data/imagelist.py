"""Image-file datasets built from an explicit list of ``(path, label)`` samples.

ImageNet-LT / Places-LT (split files), CelebA-5 (attribute files) and a user's folder all end up
as an :class:`ImageList`: a :class:`torchvision.datasets.ImageFolder` whose samples come from a
list instead of a directory scan. It decodes lazily, with a loader that converts every image to
one mode (and, for small fixed-size sets, one size) and turns an unreadable file into a
:class:`~purenoise.errors.DataError` that names it.
"""
from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from PIL import Image
from torchvision.datasets import ImageFolder, VisionDataset
from torchvision.datasets.folder import IMG_EXTENSIONS

from purenoise.errors import DataError

__all__ = [
    "ImageLoader",
    "ImageList",
    "probe_images",
    "decode_check",
    "report_skipped",
    "majority_mode",
    "describe_conversion",
    "GRAY_MODES",
    "default_workers",
    "leaves_root",
]

# PIL modes that hold one channel of intensity (with or without alpha).
GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F", "La"})
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def leaves_root(relative: str) -> bool:
    """Whether ``relative``, joined to a root folder, names a place outside that folder.

    Lists of images (split files, attribute files) name paths relative to the data root. One
    that is absolute or climbs above the root with ``..`` (``../../../etc/hostname``) would read
    a file the data does not hold. The check is on the path as written, after ``.`` and ``..``
    are collapsed; symbolic links inside the root (an image folder linked from another disk)
    are the root owner's choice and are followed as before.
    """
    norm = os.path.normpath(relative)
    return os.path.isabs(norm) or norm == os.pardir or norm.startswith(os.pardir + os.sep)


def default_workers() -> int:
    """Threads for decoding (PIL releases the GIL while decoding and resizing)."""
    return max(1, min(8, os.cpu_count() or 1))


class ImageLoader:
    """Open an image file as a PIL image of one mode and, optionally, one size.

    Picklable (DataLoader workers). Args:
        mode: ``"RGB"`` or ``"L"``; every image is converted to it (alpha is dropped, as
            torchvision's loader does).
        size: ``(H, W)`` to resize to, or ``None`` to keep each image's size.
        center_crop: Crop the largest centred square before resizing (keeps faces undistorted).
    """

    def __init__(self, mode: str = "RGB", size: tuple[int, int] | None = None, center_crop: bool = False) -> None:
        self.mode = mode
        self.size = None if size is None else (int(size[0]), int(size[1]))
        self.center_crop = bool(center_crop)

    def __call__(self, path: str) -> Image.Image:
        try:
            with open(path, "rb") as f:
                img = Image.open(f)
                if img.mode == "P":
                    img = img.convert("RGBA")  # palette transparency is only honoured via RGBA
                img = img.convert(self.mode) if img.mode != self.mode else img.copy()
        except FileNotFoundError as e:
            raise DataError(f"image file {path} is missing (it was listed when the dataset was built)") from e
        except _DECODE_ERRORS as e:
            raise DataError(
                f"cannot decode image {path}: {e}. Replace or delete the file, or rebuild the dataset "
                f"with skip_corrupt=True (skip_corrupt: true in a training config) to skip unreadable images"
            ) from e
        if self.center_crop:
            w, h = img.size
            s = min(w, h)
            left, top = (w - s) // 2, (h - s) // 2
            img = img.crop((left, top, left + s, top + s))
        if self.size is not None and img.size != (self.size[1], self.size[0]):
            img = img.resize((self.size[1], self.size[0]), Image.BILINEAR)
        return img

    def __repr__(self) -> str:
        return f"ImageLoader(mode={self.mode!r}, size={self.size}, center_crop={self.center_crop})"


class ImageList(ImageFolder):
    """An :class:`~torchvision.datasets.ImageFolder` over an explicit list of samples.

    Args:
        root: Folder the paths live under (for ``repr`` only; paths in ``samples`` are absolute).
        samples: ``(path, label)`` pairs.
        classes: Class names, indexed by label.
        mode: Pixel mode every image is converted to, ``"RGB"`` or ``"L"``.
        image_size: ``(H, W)`` every image is resized to on loading, or ``None`` (variable size).
        center_crop: Crop the centred square before resizing.
        nominal_size: ``(H, W)`` that :func:`~purenoise.data.as_uint8_tensor` resizes to when
            ``image_size`` is ``None`` (defaults to ``image_size``).
        transform: Image transform; without one, items are PIL images.
        target_transform: Label transform.
    """

    def __init__(
        self,
        root: str,
        samples: Sequence[tuple[str, int]],
        classes: Sequence[str],
        *,
        mode: str = "RGB",
        image_size: tuple[int, int] | None = None,
        center_crop: bool = False,
        nominal_size: tuple[int, int] | None = None,
        transform: Callable | None = None,
        target_transform: Callable | None = None,
    ) -> None:
        # ImageFolder's constructor scans a directory; our samples are given, so only the
        # VisionDataset part runs and the attributes ImageFolder's methods use are set here.
        VisionDataset.__init__(self, root, transform=transform, target_transform=target_transform)
        self.mode = mode
        self.image_size = image_size
        self.center_crop = center_crop
        self.nominal_size = nominal_size if nominal_size is not None else image_size
        self.loader = ImageLoader(mode, image_size, center_crop)
        self.extensions = IMG_EXTENSIONS
        self.classes = list(classes)
        self.class_to_idx = {c: i for i, c in enumerate(self.classes)}
        self.samples = [(str(p), int(t)) for p, t in samples]
        self.targets = [t for _, t in self.samples]
        self.imgs = self.samples

    def subset(self, indices: Iterable[int]) -> "ImageList":
        """A new ImageList holding the samples at ``indices`` (same classes, loader, transforms)."""
        return ImageList(
            self.root, [self.samples[i] for i in indices], self.classes, mode=self.mode,
            image_size=self.image_size, center_crop=self.center_crop, nominal_size=self.nominal_size,
            transform=self.transform,
            target_transform=self.target_transform,
        )

    def extra_repr(self) -> str:
        return f"Classes: {len(self.classes)}\nMode: {self.mode}\nImage size: {self.image_size}"


def _probe(path: str) -> tuple[str, tuple[int, int]] | str:
    try:
        with Image.open(path) as img:  # reads the header only
            return img.mode, img.size
    except FileNotFoundError:
        return "missing"
    except _DECODE_ERRORS as e:
        return f"unreadable ({e})"


def probe_images(paths: Sequence[str], workers: int | None = None) -> list[tuple[str, tuple[int, int]] | str]:
    """Header of every image: ``(mode, (W, H))``, or an error string (cheap: no pixel decoding)."""
    with ThreadPoolExecutor(workers or default_workers()) as pool:
        return list(pool.map(_probe, paths, chunksize=64))


def _decode(path: str) -> str | None:
    try:
        with Image.open(path) as img:
            img.load()
        return None
    except FileNotFoundError:
        return "missing"
    except _DECODE_ERRORS as e:
        return f"unreadable ({e})"


def decode_check(paths: Sequence[str], workers: int | None = None) -> list[str | None]:
    """Fully decode every image once; ``None`` where it decodes, else the reason it does not."""
    with ThreadPoolExecutor(workers or default_workers()) as pool:
        return list(pool.map(_decode, paths, chunksize=16))


def report_skipped(dataset: str, skipped: Sequence[tuple[str, str]], notes: list[str], total: int) -> None:
    """Warn once about skipped files (count and the first few) and record it in ``notes``."""
    if not skipped:
        return
    reasons = Counter(r.split(" ", 1)[0] for _, r in skipped)
    head = "; ".join(f"{p}: {r}" for p, r in skipped[:5])
    more = f" (and {len(skipped) - 5} more)" if len(skipped) > 5 else ""
    msg = (
        f"{dataset}: skipped {len(skipped)} of {total} images "
        f"({', '.join(f'{n} {k}' for k, n in sorted(reasons.items()))}): {head}{more}"
    )
    notes.append(msg)
    warnings.warn(msg, stacklevel=3)


def majority_mode(modes: Sequence[str]) -> tuple[str, dict[str, int]]:
    """``"L"`` when most images are grayscale, else ``"RGB"``; plus the count of each source mode."""
    counts = Counter(modes)
    gray = sum(n for m, n in counts.items() if m in GRAY_MODES)
    return ("L" if gray > len(modes) - gray else "RGB"), dict(counts)


def describe_conversion(dataset: str, target: str, mode_counts: dict[str, int]) -> str | None:
    """A note like ``"converted 3 L, 2 RGBA images to RGB"``, or ``None`` when nothing converts."""
    converted = {m: n for m, n in mode_counts.items() if m != target}
    if not converted:
        return None
    parts = ", ".join(f"{n} {m}" for m, n in sorted(converted.items()))
    return f"{dataset}: converted {parts} image(s) to {target} (the majority mode) on loading"
