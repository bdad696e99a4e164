"""Per-sample random augmentation of a whole batch at once, on the batch's device.

The torchvision presets of :mod:`purenoise.data.transforms` augment one PIL image at a time in
DataLoader workers. :class:`BatchAugment` does the same operations to a whole batch with a few
tensor operations, each sample with its own parameters, on the device that holds the data (the
GPU for the device loader), so the input pipeline costs a few milliseconds per batch.

Every operation draws its per-sample parameters from the generator it is given (never from a
global RNG), in a fixed order, so a batch is a pure function of (data, indices, generator seed).
Parameters follow the distributions of the torchvision transforms they replace:

- :class:`CropFlip`: ``RandomCrop(size, padding=p, fill=0)`` then ``RandomHorizontalFlip()``:
  top and left offsets uniform on ``0..2p``, flip with probability 1/2.
- :class:`CutoutOp`: :class:`~purenoise.data.transforms.Cutout`: centre uniform over all pixels,
  the hole clipped at the borders, filled with ``fill``.
- :class:`ColorJitterOp`: ``RandomApply([ColorJitter(b, c, s, h)], p)``: brightness, contrast
  and saturation factors uniform on ``[max(0, 1 - x), 1 + x]``, hue uniform on ``[-h, h]``,
  applied in a uniformly random order per sample, with torchvision's float-tensor kernels.
- :class:`GrayscaleOp`: ``RandomGrayscale(p)`` (ITU-R 601-2 luma, kept as 3 channels).
- :class:`BlurOp`: ``RandomApply([GaussianBlur(3, sigma=(lo, hi))], p)``: sigma uniform, the
  3x3 Gaussian kernel torchvision builds, reflect padding.

Deviation from the PIL pipeline (stated, tested): the presets apply crop, flip, Cutout, colour
jitter and grayscale to 8-bit PIL images, so every operation rounds to 8 bits and jitter and
grayscale use PIL's integer formulas; blur rounds to 8 bits too. Here crop and flip move the
8-bit pixels exactly, and everything after runs in float32 without rounding in between (the
same formulas as torchvision's tensor kernels, which differ from PIL's by at most one grey
level per operation). The Cutout fill of ``cifar_simclr`` is rounded to 8 bits as PIL does.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from purenoise.data.transforms import crop_padding, cutout_size_for
from purenoise.errors import ConfigError

__all__ = [
    "BatchAugment",
    "CropFlip",
    "CutoutOp",
    "ColorJitterOp",
    "GrayscaleOp",
    "BlurOp",
    "create_batch_augment",
    "list_batch_augments",
]

Params = dict[str, torch.Tensor]
_LUMA = (0.2989, 0.587, 0.114)  # torchvision's rgb_to_grayscale weights


def _uniform(n: int, lo: float, hi: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device).mul_(hi - lo).add_(lo)


def _bernoulli(n: int, p: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    # torchvision applies a random op when torch.rand(1) < p.
    return torch.rand(n, generator=g, device=device) < p


_CONSTANTS: dict[tuple, torch.Tensor] = {}


def _constant(values: Sequence[float] | Sequence[int], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A small constant tensor on ``device``, made once: ``torch.tensor(..., device=cuda)`` in every
    batch would be a host-to-device copy, which synchronizes the GPU stream."""
    key = (tuple(values), dtype, str(device))
    if key not in _CONSTANTS:
        _CONSTANTS[key] = torch.tensor(list(values), dtype=dtype, device=device)
    return _CONSTANTS[key]


def _gray(x: torch.Tensor) -> torch.Tensor:
    """Luma ``[B, 1, H, W]`` of float RGB images, as torchvision's rgb_to_grayscale computes it."""
    r, g, b = x.unbind(1)
    return r.mul(_LUMA[0]).add_(g, alpha=_LUMA[1]).add_(b, alpha=_LUMA[2]).unsqueeze(1)


class CropFlip:
    """Random crop with zero padding, then random horizontal flip, as one gather from uint8 data.

    Args:
        padding: Pixels of zero padding on each side (the crop keeps the image size).
        flip: Also flip horizontally with probability 1/2.
    """

    def __init__(self, padding: int, flip: bool = True) -> None:
        self.padding = int(padding)
        self.flip = flip

    def sample(self, n: int, size: tuple[int, int], g: torch.Generator, device: torch.device) -> Params:
        span = 2 * self.padding + 1
        top = torch.randint(0, span, (n,), generator=g, device=device)
        left = torch.randint(0, span, (n,), generator=g, device=device)
        flip = _bernoulli(n, 0.5, g, device) if self.flip else torch.zeros(n, dtype=torch.bool, device=device)
        return {"top": top, "left": left, "flip": flip}

    def gather(self, data: torch.Tensor, index: torch.Tensor, p: Params) -> torch.Tensor:
        """Crop and flip ``data[index]`` (uint8 ``[N, C, H, W]``) in one indexing operation."""
        _, c, h, w = data.shape
        dev = data.device
        rows = torch.arange(h, device=dev).view(1, h) + p["top"].view(-1, 1) - self.padding
        cols = torch.arange(w, device=dev).view(1, w)
        cols = torch.where(p["flip"].view(-1, 1), w - 1 - cols, cols) + p["left"].view(-1, 1) - self.padding
        inside = ((rows >= 0) & (rows < h)).unsqueeze(2) & ((cols >= 0) & (cols < w)).unsqueeze(1)
        pix = rows.clamp(0, h - 1).unsqueeze(2) * w + cols.clamp(0, w - 1).unsqueeze(1)  # [B, H, W]
        flat = data.view(data.shape[0], c, h * w)[index]  # [B, C, H*W]
        out = torch.gather(flat, 2, pix.view(-1, 1, h * w).expand(-1, c, -1)).view(-1, c, h, w)
        return out * inside.unsqueeze(1)  # padding pixels are 0, as RandomCrop(fill=0)


class CutoutOp:
    """One ``size`` x ``size`` hole per image, centre uniform over the image, clipped at borders.

    Args:
        size: Side of the hole in pixels.
        fill: Per-channel value(s) in ``[0, 1]``.
        quantize: Round ``fill`` to 8 bits (what the PIL pipeline of ``cifar_simclr`` does).
    """

    def __init__(self, size: int, fill: float | Sequence[float] = 0.0, quantize: bool = False) -> None:
        self.size = int(size)
        fill = [float(fill)] if isinstance(fill, (int, float)) else [float(v) for v in fill]
        self.fill = [round(v * 255) / 255 for v in fill] if quantize else fill

    def sample(self, n: int, size: tuple[int, int], g: torch.Generator, device: torch.device) -> Params:
        cy = torch.randint(0, size[0], (n,), generator=g, device=device)
        cx = torch.randint(0, size[1], (n,), generator=g, device=device)
        return {"cy": cy, "cx": cx}

    def __call__(self, x: torch.Tensor, p: Params) -> torch.Tensor:
        _, c, h, w = x.shape
        top = (p["cy"] - self.size // 2).view(-1, 1)
        left = (p["cx"] - self.size // 2).view(-1, 1)
        ys = torch.arange(h, device=x.device).view(1, h)
        xs = torch.arange(w, device=x.device).view(1, w)
        hole = ((ys >= top) & (ys < top + self.size)).unsqueeze(2) & ((xs >= left) & (xs < left + self.size)).unsqueeze(1)
        fill = _constant(self.fill, x.dtype, x.device)
        fill = fill.expand(c) if fill.numel() == 1 else fill
        return torch.where(hole.unsqueeze(1), fill.view(1, c, 1, 1), x)


class ColorJitterOp:
    """``RandomApply([ColorJitter(brightness, contrast, saturation, hue)], p)`` per sample.

    Each jittered sample gets its own factors and its own random order of the four operations,
    as torchvision draws them. Brightness, contrast and saturation are blends
    ``clamp(f * x + (1 - f) * ref)`` (ref: 0, the image's mean luma, the pixel's luma), so one
    fused expression applies whichever of them each sample has at a given position; a sample
    with nothing to do there gets ``f = 1``, which leaves it bit-identical. Hue (an HSV round
    trip, the costly one) runs once, between the operations each sample has before and after it.
    Single-channel images get brightness and contrast only (torchvision leaves them unchanged
    by saturation and hue).
    """

    def __init__(self, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0,
                 hue: float = 0.0, p: float = 1.0, channels: int = 3) -> None:
        if not 0.0 <= hue <= 0.5:
            raise ConfigError(f"hue jitter must be in [0, 0.5], got {hue}")
        self.p = float(p)
        ranges: list[tuple[int, float, float]] = []
        for op, amount in enumerate((brightness, contrast, saturation)):
            if amount > 0 and (channels == 3 or op < 2):
                ranges.append((op, max(0.0, 1.0 - amount), 1.0 + amount))
        self.ranges = ranges  # (op id, lo, hi) for the enabled blend operations
        self.hue = float(hue) if channels == 3 and hue > 0 else 0.0

    def sample(self, n: int, size: tuple[int, int], g: torch.Generator, device: torch.device) -> Params:
        apply = _bernoulli(n, self.p, g, device)
        # A uniform random order of the enabled operations (ids 0-2 blends, 3 hue) per sample.
        ops = [op for op, _, _ in self.ranges] + ([3] if self.hue else [])
        keys = torch.rand(n, max(len(ops), 1), generator=g, device=device)
        order = _constant(ops or [0], torch.int64, device)[keys.argsort(dim=1)]
        factors = torch.ones(n, 4, device=device)
        for op, lo, hi in self.ranges:
            factors[:, op] = _uniform(n, lo, hi, g, device)
        factors[:, 3] = _uniform(n, -self.hue, self.hue, g, device) if self.hue else 0.0
        return {"apply": apply, "order": order, "factors": factors}

    def __call__(self, x: torch.Tensor, p: Params) -> torch.Tensor:
        if not self.ranges and not self.hue:
            return x
        order, factors, apply = p["order"], p["factors"], p["apply"]
        n_ops = order.shape[1]
        if not self.hue:
            for slot in range(n_ops):
                x = self._blend_step(x, torch.where(apply, order[:, slot], -1), factors)
            return x
        hue_pos = (order == 3).float().argmax(dim=1)  # where hue sits in each sample's order
        none = torch.full_like(hue_pos, -1)
        # Before hue: slot j holds order[j] for j < hue_pos.
        for j in range(n_ops - 1):
            op = torch.where(apply & (hue_pos > j), order[:, j], none)
            x = self._blend_step(x, op, factors)
        x = torch.where(apply.view(-1, 1, 1, 1), _adjust_hue(x, factors[:, 3]), x)
        # After hue: slot j holds order[hue_pos + 1 + j] when that exists.
        for j in range(n_ops - 1):
            pos = hue_pos + 1 + j
            op = order.gather(1, pos.clamp(max=n_ops - 1).view(-1, 1)).view(-1)
            op = torch.where(apply & (pos < n_ops), op, none)
            x = self._blend_step(x, op, factors)
        return x

    @staticmethod
    def _blend_step(x: torch.Tensor, op: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
        """Each sample applies blend ``op`` (0 brightness, 1 contrast, 2 saturation, -1 none)."""
        n = x.shape[0]
        f = factors.gather(1, op.clamp(0, 2).view(-1, 1)).view(-1)
        f = torch.where(op >= 0, f, torch.ones_like(f)).view(n, 1, 1, 1)
        gray = _gray(x) if x.shape[1] == 3 else x
        w_mean = torch.where(op == 1, 1.0 - f.view(-1), torch.zeros_like(f.view(-1))).view(n, 1, 1, 1)
        w_gray = torch.where(op == 2, 1.0 - f.view(-1), torch.zeros_like(f.view(-1))).view(n, 1, 1, 1)
        mean = gray.mean(dim=(1, 2, 3), keepdim=True)
        # The reference term is built at a third of the size (one channel) before the full add.
        return (x * f).add_(w_gray * gray + w_mean * mean).clamp_(0.0, 1.0)


def _adjust_hue(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """torchvision's ``adjust_hue`` for float RGB ``[B, 3, H, W]`` with a per-sample shift.

    RGB to HSV is torchvision's formula; HSV back to RGB uses the closed form
    ``c_n = v - v s clamp(min(k_n, 4 - k_n), 0, 1)``, ``k_n = (n + 6h) mod 6`` for n = 5, 3, 1,
    the same function as torchvision's six-case table (equal to within float rounding, tested)
    at a fraction of the cost (no integer table lookups).
    """
    r, g, b = x.unbind(1)
    maxc = torch.maximum(torch.maximum(r, g), b)
    minc = torch.minimum(torch.minimum(r, g), b)
    eqc = maxc == minc
    crange = maxc - minc
    ones = torch.ones_like(maxc)
    s = crange / torch.where(eqc, ones, maxc)
    div = torch.where(eqc, ones, crange)
    rc, gc, bc = (maxc - r) / div, (maxc - g) / div, (maxc - b) / div
    is_r = maxc == r
    is_g = (maxc == g) & ~is_r
    is_b = ~(is_r | is_g)
    h = (bc - gc) * is_r + (2.0 + rc - bc) * is_g + (4.0 + gc - rc) * is_b
    h = (h * (1.0 / 6.0) + 1.0).fmod(1.0)
    h6 = (h + shift.view(-1, 1, 1)).remainder(1.0).mul_(6.0)
    vs = maxc * s
    out = []
    for n in (5.0, 3.0, 1.0):
        k = (h6 + n).fmod_(6.0)
        out.append(maxc - vs * torch.minimum(k, 4.0 - k).clamp_(0.0, 1.0))
    return torch.stack(out, dim=1).clamp_(0.0, 1.0)


class GrayscaleOp:
    """``RandomGrayscale(p)``: the image becomes its luma, repeated on the three channels."""

    def __init__(self, p: float) -> None:
        self.p = float(p)

    def sample(self, n: int, size: tuple[int, int], g: torch.Generator, device: torch.device) -> Params:
        return {"apply": _bernoulli(n, self.p, g, device)}

    def __call__(self, x: torch.Tensor, p: Params) -> torch.Tensor:
        return torch.where(p["apply"].view(-1, 1, 1, 1), _gray(x).expand_as(x), x)


class BlurOp:
    """``RandomApply([GaussianBlur(3, sigma=(lo, hi))], p)`` with a per-sample sigma.

    torchvision's 3-tap kernel is ``softmax(-(t / sigma)^2)`` at ``t = -1/sqrt(2), 0, 1/sqrt(2)``,
    i.e. weights ``(e, 1, e) / (1 + 2e)`` with ``e = exp(-1 / (2 sigma^2))``; the 3x3 kernel is
    its outer product, applied here as two 1-D passes with reflect padding. A sample that is not
    blurred gets the kernel ``(0, 1, 0)``, which leaves it bit-identical.
    """

    def __init__(self, sigma: tuple[float, float] = (0.1, 2.0), p: float = 0.5) -> None:
        self.sigma = (float(sigma[0]), float(sigma[1]))
        self.p = float(p)

    def sample(self, n: int, size: tuple[int, int], g: torch.Generator, device: torch.device) -> Params:
        apply = _bernoulli(n, self.p, g, device)
        return {"apply": apply, "sigma": _uniform(n, self.sigma[0], self.sigma[1], g, device)}

    def __call__(self, x: torch.Tensor, p: Params) -> torch.Tensor:
        n = x.shape[0]
        e = torch.exp(-0.5 / p["sigma"].square())
        side = torch.where(p["apply"], e / (1 + 2 * e), torch.zeros_like(e)).view(n, 1, 1, 1)
        centre = torch.where(p["apply"], 1 / (1 + 2 * e), torch.ones_like(e)).view(n, 1, 1, 1)
        xp = F.pad(x, (1, 1, 0, 0), mode="reflect")
        x = side * (xp[..., :-2] + xp[..., 2:]) + centre * xp[..., 1:-1]
        xp = F.pad(x, (0, 0, 1, 1), mode="reflect")
        return side * (xp[..., :-2, :] + xp[..., 2:, :]) + centre * xp[..., 1:-1, :]


class BatchAugment:
    """A preset as batched operations: ``augment(data, index, generator) -> float batch``.

    Args:
        crop: The crop-and-flip gather (``None``: the images as stored).
        ops: Float-domain operations applied in order after the conversion to ``[0, 1]``.
        name: Preset name (for ``repr`` and errors).

    Call it with the whole training set as uint8 ``[N, C, H, W]`` (on the device), the batch's
    indices into it and a seeded ``torch.Generator`` on the same device; it returns float32
    ``[B, C, H, W]`` in ``[0, 1]``, not normalized (like the torchvision presets).
    """

    def __init__(self, crop: CropFlip | None, ops: Sequence[Any], name: str = "custom") -> None:
        self.crop = crop
        self.ops = list(ops)
        self.name = name

    def sample(self, n: int, size: tuple[int, int], generator: torch.Generator) -> list[Params]:
        """Every operation's per-sample parameters, drawn in a fixed order from ``generator``."""
        dev = generator.device
        steps = ([self.crop] if self.crop is not None else []) + self.ops
        return [op.sample(n, size, generator, dev) for op in steps]

    def apply(self, data: torch.Tensor, index: torch.Tensor, params: list[Params]) -> torch.Tensor:
        """The augmented batch for given parameters (what :meth:`sample` returned)."""
        if self.crop is not None:
            x = self.crop.gather(data, index, params[0])
            params = params[1:]
        else:
            x = data[index]
        x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
        for op, p in zip(self.ops, params):
            x = op(x, p)
        return x

    def __call__(self, data: torch.Tensor, index: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if data.ndim != 4:
            raise ValueError(f"BatchAugment needs the data as [N, C, H, W], got shape {tuple(data.shape)}")
        params = self.sample(index.shape[0], (data.shape[2], data.shape[3]), generator)
        return self.apply(data, index, params)

    def __repr__(self) -> str:
        names = ([type(self.crop).__name__] if self.crop else []) + [type(o).__name__ for o in self.ops]
        return f"BatchAugment({self.name!r}: {' -> '.join(names) or 'identity'})"


_SUPPORTED = ("cifar_basic", "cifar_cutout", "cifar_simclr", "fmnist_basic", "test")


def list_batch_augments() -> list[str]:
    """Presets the device loader can run (the others need ``loader: torch``)."""
    return sorted(_SUPPORTED)


def create_batch_augment(name: str, *, image_size: int | Sequence[int], channels: int = 3,
                         cutout_size: int | None = None,
                         cutout_fill: float | Sequence[float] = 0.0) -> BatchAugment:
    """The batched counterpart of :func:`~purenoise.data.create_transform` (training presets).

    Args:
        name: ``cifar_basic``, ``cifar_cutout``, ``cifar_simclr``, ``fmnist_basic`` or ``test``.
        image_size: ``S`` or ``(H, W)`` of the stored images (the crop keeps it).
        channels: 1 or 3.
        cutout_size: Side of the Cutout hole (default 16 at 32 px, scaled with the size).
        cutout_fill: Hole value(s) in ``[0, 1]``.

    Raises:
        ConfigError: For a preset with no batched version (AutoAugment, RandomResizedCrop).
    """
    if name not in _SUPPORTED:
        raise ConfigError(
            f"augmentation preset {name!r} has no device version (the device loader runs "
            f"{', '.join(list_batch_augments())}); use loader: torch for it"
        )
    if channels not in (1, 3):
        raise ConfigError(f"transform channels must be 1 or 3, got {channels!r}")
    size = (int(image_size), int(image_size)) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
    if name == "test":
        return BatchAugment(None, [], name)
    crop = CropFlip(crop_padding(size))
    if name in ("cifar_basic", "fmnist_basic"):
        return BatchAugment(crop, [], name)
    if name == "cifar_cutout":
        # The preset cuts after ToDtype: the float fill is used as given.
        return BatchAugment(crop, [CutoutOp(cutout_size_for(size, cutout_size), cutout_fill)], name)
    # cifar_simclr, the paper's order: crop/flip, Cutout (on the 8-bit PIL image), colour, blur.
    ops: list[Any] = [CutoutOp(cutout_size_for(size, cutout_size), cutout_fill, quantize=True)]
    if channels == 3:
        ops += [ColorJitterOp(0.4, 0.4, 0.4, 0.1, p=0.8, channels=3), GrayscaleOp(0.2)]
    else:
        ops += [ColorJitterOp(brightness=0.4, contrast=0.4, p=0.8, channels=1)]
    ops.append(BlurOp((0.1, 2.0), p=0.5))
    return BatchAugment(crop, ops, name)

