"""Augmentation presets, built from ``torchvision.transforms.v2``.

Every preset takes a PIL image (or a uint8 CHW tensor) and returns a float32 CHW tensor with
values in ``[0, 1]``, **not normalized**: the trainer normalizes on the device with
``info.mean``/``info.std``, because pure-noise images must go through the same normalization as
natural ones (docs/method.md, section 1.3). Geometric and colour operations run on the PIL image
the dataset returns (colour jitter is faster there than on tensors for small images), Gaussian
blur on the uint8 tensor, then ``ToDtype`` scales to ``[0, 1]``, then Cutout. A uint8 tensor
input works too (every operation has a tensor kernel).

Presets (``train=True``; with ``train=False`` each returns its evaluation counterpart, ``test`` or
``imagenet_test``):

- ``cifar_basic``: random crop with zero padding (4 px at 32 px, scaled with the size),
  horizontal flip (LDAM-DRW's CIFAR augmentation).
- ``cifar_cutout``: ``cifar_basic`` + :class:`Cutout` (one 16x16 hole at 32 px).
- ``cifar_simclr``: the paper's default, in the paper's order (appendix D.2): ``cifar_basic``,
  Cutout, then ColorJitter(0.4, 0.4, 0.4, 0.1) with p=0.8, RandomGrayscale p=0.2,
  GaussianBlur(3, sigma 0.1-2.0) with p=0.5 (so the hole is jittered and blurred like the rest).
- ``autoaugment``: crop + flip + AutoAugment (CIFAR-10 policy up to 64 px, ImageNet policy above)
  + Cutout, the recipe the AutoAugment paper used on CIFAR.
- ``fmnist_basic``: crop (4 px padding at 28 px) + flip, no colour operations.
- ``imagenet_train``: RandomResizedCrop + flip + ColorJitter(0.4, 0.4, 0.4) (the Decoupling recipe);
  ``imagenet_test``: resize to size*256/224, centre crop.
- ``test``: conversion only (resized to ``image_size`` when given).

With ``channels=1`` colour operations that mean nothing on one channel are dropped (saturation,
hue, RandomGrayscale), brightness/contrast jitter and blur stay, and the output has one channel.
"""
from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from typing import Any

import PIL.Image
import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F
from torchvision.transforms.v2._utils import query_chw

from purenoise.errors import ConfigError

__all__ = ["Cutout", "create_transform", "list_transforms", "register_transform", "crop_padding",
           "cutout_size_for"]


class Cutout(v2.Transform):
    """Cutout (DeVries & Taylor, 2017): one square hole of ``size`` x ``size`` pixels.

    As in the authors' code, the centre is drawn uniformly over all pixels of the image and the
    hole is clipped at the borders: holes near an edge are smaller, and pixels near the border are
    covered far more often than by a hole that must fit inside the image.

    torchvision's ``v2.RandomErasing`` is not used instead, by decision: it keeps the whole
    rectangle inside the image (with its area and aspect ratio fixed to a 16x16 square at 32 px,
    every hole is complete and its centre lies in the middle 17x17 pixels), so its holes follow
    another distribution; and it takes more numbers from the global RNG per image (area, aspect
    ratio, then the position), which would shift every later random draw of a seeded run.

    The hole is filled with ``fill``: 0 by default, as the common Cutout code does. Note that that
    code applies Cutout after normalization, where 0 is the dataset mean; here images are not
    normalized yet, so 0 is black. Pass ``fill=info.mean`` for the original behaviour exactly.
    Randomness comes from torch's global RNG, like every v2 transform (the DataLoader seeds it per
    worker).

    Args:
        size: Side of the hole in pixels (16 on CIFAR).
        fill: Value(s) in ``[0, 1]`` for the hole, one per channel or one for all; scaled to 255
            for uint8 and PIL inputs.
        p: Probability of cutting a hole.
    """

    def __init__(self, size: int = 16, fill: float | Sequence[float] = 0.0, p: float = 1.0) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(f"Cutout size must be a positive integer, got {size!r}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Cutout probability must be in [0, 1], got {p!r}")
        self.size = int(size)
        self.fill = [float(fill)] if isinstance(fill, numbers.Real) else [float(v) for v in fill]
        self.p = float(p)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        _, height, width = query_chw(flat_inputs)
        if self.p < 1.0 and torch.rand(()) >= self.p:
            return dict(skip=True)
        cy = int(torch.randint(height, ()))
        cx = int(torch.randint(width, ()))
        top, left = cy - self.size // 2, cx - self.size // 2
        y1, y2 = max(top, 0), min(top + self.size, height)
        x1, x2 = max(left, 0), min(left + self.size, width)
        return dict(skip=False, i=y1, j=x1, h=y2 - y1, w=x2 - x1)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["skip"] or params["h"] <= 0 or params["w"] <= 0:
            return inpt
        integer = isinstance(inpt, PIL.Image.Image) or not inpt.is_floating_point()
        value = torch.tensor(self.fill, dtype=torch.float32)
        if integer:
            value = (value * 255).round()
        value = value.view(-1, 1, 1)
        return self._call_kernel(F.erase, inpt, i=params["i"], j=params["j"], h=params["h"], w=params["w"], v=value)

    def extra_repr(self) -> str:
        return f"size={self.size}, fill={self.fill}, p={self.p}"


_PRESETS: dict[str, Callable[..., v2.Transform]] = {}
_EVAL_OF: dict[str, str] = {}


def register_transform(name: str, *, eval_preset: str = "test"):
    """Register a preset builder ``fn(size, channels, **kwargs) -> transform``; ``eval_preset``
    is what ``create_transform(name, train=False)`` returns."""

    def deco(fn: Callable[..., v2.Transform]) -> Callable[..., v2.Transform]:
        _PRESETS[name] = fn
        _EVAL_OF[name] = eval_preset
        return fn

    return deco


def list_transforms() -> list[str]:
    """Names of the transform presets."""
    return sorted(_PRESETS)


def _head(channels: int) -> list[v2.Transform]:
    # Every preset first makes the requested channel count, whatever mode the dataset delivered
    # (grayscale files in an RGB set, RGB files in a grayscale one).
    return [v2.RGB() if channels == 3 else v2.Grayscale(num_output_channels=1)]


def _tail(to_image: bool = True) -> list[v2.Transform]:
    return [v2.ToImage()] * to_image + [v2.ToDtype(torch.float32, scale=True)]


def crop_padding(size: tuple[int, int]) -> int:
    """Padding of the presets' random crop: an eighth of the image side (4 px at 32 and 28, 8 at 64)."""
    return max(1, int(min(size) / 8 + 0.5))


def cutout_size_for(size: tuple[int, int], cutout_size: int | None) -> int:
    """Side of the Cutout hole: ``cutout_size``, else half the image side (16 px at 32, as in the paper)."""
    return cutout_size if cutout_size is not None else max(1, int(16 * min(size) / 32 + 0.5))


def _crop_flip(size: tuple[int, int]) -> list[v2.Transform]:
    return [v2.RandomCrop(size, padding=crop_padding(size), fill=0), v2.RandomHorizontalFlip()]


@register_transform("test")
def _test(size: tuple[int, int] | None, channels: int, **_: Any) -> v2.Transform:
    resize = [v2.Resize(size, antialias=True)] if size is not None else []
    return v2.Compose([*_head(channels), *resize, *_tail()])


@register_transform("cifar_basic")
def _cifar_basic(size: tuple[int, int], channels: int, **_: Any) -> v2.Transform:
    return v2.Compose([*_head(channels), *_crop_flip(size), *_tail()])


@register_transform("cifar_cutout")
def _cifar_cutout(size: tuple[int, int], channels: int, cutout_size: int | None = None,
                  cutout_fill: float | Sequence[float] = 0.0, **_: Any) -> v2.Transform:
    return v2.Compose([*_head(channels), *_crop_flip(size), *_tail(),
                       Cutout(cutout_size_for(size, cutout_size), fill=cutout_fill)])


@register_transform("cifar_simclr")
def _cifar_simclr(size: tuple[int, int], channels: int, cutout_size: int | None = None,
                  cutout_fill: float | Sequence[float] = 0.0, **_: Any) -> v2.Transform:
    if channels == 3:
        colour = [v2.RandomApply([v2.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), v2.RandomGrayscale(p=0.2)]
    else:
        colour = [v2.RandomApply([v2.ColorJitter(brightness=0.4, contrast=0.4)], p=0.8)]
    blur = [v2.RandomApply([v2.GaussianBlur(3, sigma=(0.1, 2.0))], p=0.5)]
    # The paper's order (appendix D.2): flip and crop, Cutout, then the SimCLR colour operations.
    # Colour jitter is faster on PIL images, blur on tensors: convert in between.
    cutout = Cutout(cutout_size_for(size, cutout_size), fill=cutout_fill)
    return v2.Compose([*_head(channels), *_crop_flip(size), cutout, *colour, v2.ToImage(), *blur,
                       *_tail(False)])


@register_transform("autoaugment")
def _autoaugment(size: tuple[int, int], channels: int, cutout_size: int | None = None,
                 cutout_fill: float | Sequence[float] = 0.0, **_: Any) -> v2.Transform:
    policy = v2.AutoAugmentPolicy.CIFAR10 if max(size) <= 64 else v2.AutoAugmentPolicy.IMAGENET
    return v2.Compose([*_head(channels), *_crop_flip(size), v2.AutoAugment(policy), *_tail(),
                       Cutout(cutout_size_for(size, cutout_size), fill=cutout_fill)])


@register_transform("fmnist_basic")
def _fmnist_basic(size: tuple[int, int], channels: int, **_: Any) -> v2.Transform:
    return v2.Compose([*_head(channels), *_crop_flip(size), *_tail()])


@register_transform("imagenet_test")
def _imagenet_test(size: tuple[int, int], channels: int, **_: Any) -> v2.Transform:
    resize = int(min(size) * 256 / 224 + 0.5)
    return v2.Compose([*_head(channels), v2.Resize(resize, antialias=True), v2.CenterCrop(size), *_tail()])


@register_transform("imagenet_train", eval_preset="imagenet_test")
def _imagenet_train(size: tuple[int, int], channels: int, **_: Any) -> v2.Transform:
    jitter = v2.ColorJitter(0.4, 0.4, 0.4) if channels == 3 else v2.ColorJitter(brightness=0.4, contrast=0.4)
    return v2.Compose([*_head(channels), v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip(),
                       jitter, *_tail()])


_DEFAULT_SIZE = {"fmnist_basic": (28, 28), "imagenet_train": (224, 224), "imagenet_test": (224, 224)}
_EVAL_OF["imagenet_test"] = "imagenet_test"


def create_transform(
    name: str,
    *,
    image_size: int | Sequence[int] | None = None,
    channels: int = 3,
    train: bool = True,
    cutout_size: int | None = None,
    cutout_fill: float | Sequence[float] = 0.0,
) -> v2.Transform:
    """Build a preset by name (see the module doc and :func:`list_transforms`).

    Args:
        name: Preset name.
        image_size: Output size ``S`` or ``(H, W)`` (the dataset's ``info.image_size``). Default:
            32 for the CIFAR presets, 28 for ``fmnist_basic``, 224 for the ImageNet presets; for
            ``test`` no resizing.
        channels: 1 or 3; the output has this many channels.
        train: ``False`` gives the preset's evaluation transform (``test``, or ``imagenet_test``
            for ``imagenet_train``), with the same size and channels.
        cutout_size: Side of the Cutout hole (default 16 at 32 px, scaled with the size).
        cutout_fill: Hole value(s) in ``[0, 1]`` (default 0; ``info.mean`` reproduces Cutout applied
            after normalization, as in the original code).

    Returns:
        A ``v2.Compose`` mapping a PIL image or uint8 tensor to a float32 ``[C, H, W]`` tensor in ``[0, 1]``.
    """
    if name not in _PRESETS:
        raise ConfigError(f"unknown transform preset {name!r}; choose one of {list_transforms()}")
    if channels not in (1, 3):
        raise ConfigError(f"transform channels must be 1 or 3, got {channels!r}")
    if image_size is None:
        size = None if name == "test" else _DEFAULT_SIZE.get(name, (32, 32))
    elif isinstance(image_size, numbers.Integral) and not isinstance(image_size, bool) and image_size > 0:
        size = (int(image_size), int(image_size))
    elif isinstance(image_size, Sequence) and len(image_size) == 2 and all(int(s) > 0 for s in image_size):
        size = (int(image_size[0]), int(image_size[1]))
    else:
        raise ConfigError(f"image_size must be a positive S or (H, W), got {image_size!r}")
    if cutout_size is not None and not (
        isinstance(cutout_size, numbers.Integral) and not isinstance(cutout_size, bool) and cutout_size >= 1
    ):
        raise ConfigError(f"cutout_size must be a positive integer, got {cutout_size!r}")
    preset = name if train else _EVAL_OF[name]
    return _PRESETS[preset](size, channels, cutout_size=cutout_size, cutout_fill=cutout_fill)
