"""Pure-noise images and the dataset statistics that shape them.

OPeN replaces some training images by images of pure random noise. The paper draws every pixel
of channel ``c`` independently from ``N(mu_c, sigma_c^2)`` and clips it to ``[0, 1]``, where
``mu_c`` and ``sigma_c`` are the mean and standard deviation of the pixel values of the
long-tailed training set (docs/method.md, section 1.3). :func:`channel_stats` computes those two vectors and
:class:`PureNoise` draws the images.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch

__all__ = ["PureNoise", "channel_stats", "NOISE_KINDS"]

NOISE_KINDS = ("gaussian", "uniform")


def _as_size(size: int | Sequence[int], channels: int) -> tuple[int, int]:
    """Accept ``H``, ``(H, W)`` or ``(C, H, W)``; return ``(H, W)``."""
    if isinstance(size, int):
        dims = (size, size)
    else:
        dims = tuple(int(s) for s in size)
        if len(dims) == 3:
            if dims[0] != channels:
                raise ValueError(
                    f"noise size {tuple(size)} has {dims[0]} channels but the noise was built "
                    f"for {channels} (len(mean)); pass (H, W) or a matching (C, H, W)"
                )
            dims = dims[1:]
        if len(dims) != 2:
            raise ValueError(f"noise size must be H, (H, W) or (C, H, W), got {size!r}")
    if dims[0] <= 0 or dims[1] <= 0:
        raise ValueError(f"noise image size must be positive, got {dims}")
    return dims  # type: ignore[return-value]


class PureNoise:
    """Generator of pure-noise images in pixel space ``[0, 1]``.

    Args:
        mean: Per-channel pixel mean (length 1 for grayscale, 3 for RGB), values in ``[0, 1]``.
            Required for ``kind="gaussian"``; for ``"uniform"`` it only sets the channel count
            (``None`` means 3 channels).
        std: Per-channel pixel standard deviation, same length as ``mean``, positive.
        kind: ``"gaussian"`` (the paper's choice) or ``"uniform"`` (``U[0, 1]`` per pixel).
        clip: Clip Gaussian noise to ``[0, 1]`` as the paper does.

    Example:
        >>> noise = PureNoise(mean=(0.49, 0.48, 0.45), std=(0.25, 0.24, 0.26))
        >>> noise(8, (32, 32)).shape
        torch.Size([8, 3, 32, 32])
    """

    def __init__(
        self,
        mean: Sequence[float] | torch.Tensor | None = None,
        std: Sequence[float] | torch.Tensor | None = None,
        kind: str = "gaussian",
        clip: bool = True,
    ) -> None:
        if kind not in NOISE_KINDS:
            raise ValueError(f"unknown noise kind {kind!r}; choose one of {NOISE_KINDS}")
        self.kind = kind
        self.clip = bool(clip)
        if kind == "gaussian":
            if mean is None or std is None:
                raise ValueError(
                    "Gaussian pure noise needs the per-channel pixel mean and std of the training "
                    "set: PureNoise(mean, std); get them with purenoise.channel_stats(train_set)"
                )
        mean_t = torch.as_tensor([0.5, 0.5, 0.5] if mean is None else mean, dtype=torch.float32)
        std_t = torch.as_tensor([0.5, 0.5, 0.5] if std is None else std, dtype=torch.float32)
        if mean_t.ndim != 1 or std_t.ndim != 1 or mean_t.numel() != std_t.numel():
            raise ValueError(
                f"mean and std must be 1-D with one value per channel, got shapes "
                f"{tuple(mean_t.shape)} and {tuple(std_t.shape)}"
            )
        if mean_t.numel() == 0:
            raise ValueError("mean and std need at least one channel")
        if not torch.isfinite(mean_t).all() or not torch.isfinite(std_t).all():
            raise ValueError(f"mean and std must be finite, got {mean_t.tolist()}, {std_t.tolist()}")
        if kind == "gaussian" and (std_t <= 0).any():
            raise ValueError(f"noise std must be positive per channel, got {std_t.tolist()}")
        self.mean = mean_t
        self.std = std_t

    def _on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(std, mean)`` as ``[1, C, 1, 1]`` on ``device``, copied there once: a host-to-device
        copy in every call would synchronize the GPU stream each training step."""
        cache = self.__dict__.setdefault("_device_stats", {})
        key = str(device)
        if key not in cache:
            cache[key] = (self.std.to(device).view(1, -1, 1, 1), self.mean.to(device).view(1, -1, 1, 1))
        return cache[key]

    @property
    def channels(self) -> int:
        """Number of colour channels of the images this generator makes."""
        return self.mean.numel()

    def __call__(
        self,
        n: int,
        size: int | Sequence[int],
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Draw ``n`` fresh noise images.

        Args:
            n: Number of images.
            size: Image size: ``H``, ``(H, W)`` or ``(C, H, W)``.
            device: Device of the result (default: the generator's device, else CPU).
            dtype: Floating dtype of the result (default float32). Values are drawn in float32
                and cast, so low-precision results follow the same distribution.
            generator: Source of randomness; with a seeded generator the draw repeats exactly.

        Returns:
            Tensor of shape ``[n, C, H, W]`` with values in ``[0, 1]`` (when ``clip``).
        """
        if n < 0:
            raise ValueError(f"number of noise images must be >= 0, got {n}")
        h, w = _as_size(size, self.channels)
        if device is None:
            device = generator.device if generator is not None else torch.device("cpu")
        device = torch.device(device)
        dtype = dtype or torch.float32
        if not dtype.is_floating_point:
            raise ValueError(f"noise images need a floating dtype, got {dtype}")
        out = torch.empty((n, self.channels, h, w), device=device, dtype=torch.float32)
        return self.fill_(out, generator=generator).to(dtype)

    def fill_(self, out: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """Overwrite ``out`` (``[N, C, H, W]``, contiguous float32) with fresh noise images, in place.

        Draws exactly the values ``self(N, (H, W), generator=generator)`` would return, without
        allocating: OPeN writes the noise rows straight into its output batch this way.

        Returns:
            ``out``.
        """
        if out.dtype != torch.float32 or out.ndim != 4 or out.shape[1] != self.channels or not out.is_contiguous():
            raise ValueError(
                f"fill_ needs a contiguous float32 [N, {self.channels}, H, W] tensor, got "
                f"{out.dtype} of shape {tuple(out.shape)}"
            )
        if self.kind == "uniform":
            return out.uniform_(generator=generator)
        std, mean = self._on(out.device)
        out.normal_(generator=generator).mul_(std).add_(mean)
        return out.clamp_(0.0, 1.0) if self.clip else out

    def __repr__(self) -> str:
        stats = "" if self.kind == "uniform" else (
            f", mean={[round(v, 4) for v in self.mean.tolist()]}, "
            f"std={[round(v, 4) for v in self.std.tolist()]}"
        )
        return f"PureNoise(kind={self.kind!r}{stats}, clip={self.clip})"


def _to_float_chw(item: Any) -> torch.Tensor:
    """One image or batch (PIL, ndarray HWC, tensor CHW/NCHW) as a float64 tensor in [0, 1]."""
    if isinstance(item, torch.Tensor):
        t = item
    elif isinstance(item, np.ndarray):
        t = torch.from_numpy(item)
        if t.ndim == 3 and t.shape[-1] in (1, 3, 4) and t.shape[0] not in (1, 3, 4):
            t = t.permute(2, 0, 1)  # HWC array, as PIL/numpy pipelines produce
    else:
        try:
            # Only PIL images need torchvision: the method's modules import nothing but torch.
            from torchvision.transforms.v2.functional import pil_to_tensor
        except ImportError:  # pragma: no cover - torchvision is a dependency
            raise TypeError(f"cannot read pixels from {type(item).__name__}") from None
        t = pil_to_tensor(item)
    if t.dtype == torch.uint8:
        return t.to(torch.float64).div_(255.0)
    if not t.dtype.is_floating_point:
        raise TypeError(f"expected uint8 or float images, got dtype {t.dtype}")
    return t.to(torch.float64)


def _first(item: Any) -> Any:
    """The image of a dataset item: items are images or (image, label, ...) tuples."""
    if isinstance(item, (tuple, list)):
        return item[0]
    if isinstance(item, dict):
        for key in ("image", "images", "img", "x"):
            if key in item:
                return item[key]
        raise TypeError(f"cannot find the image in a dict item with keys {sorted(item)}")
    return item


def channel_stats(
    data: Iterable[Any] | torch.Tensor, *, max_images: int | None = None
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of pixel values in ``[0, 1]``.

    Streams over the data, accumulating sums and sums of squares in float64, so no more than one
    item or batch is held at a time. uint8 pixels are divided by 255; float pixels are taken as
    already in ``[0, 1]``. The standard deviation is the population one over all pixels.

    Args:
        data: A dataset (items are images or ``(image, label)`` tuples, images as PIL, CHW
            tensors or HWC arrays), a DataLoader yielding ``NCHW`` batches, or a tensor holding
            the whole set as ``[N, C, H, W]`` (``[N, H, W]`` for grayscale).
        max_images: Stop after this many images (for quick estimates on huge sets).

    Returns:
        ``(mean, std)``, each a tuple with one float per channel.
    """
    if isinstance(data, torch.Tensor):
        t = data.unsqueeze(1) if data.ndim == 3 else data
        if t.ndim != 4:
            raise ValueError(f"a tensor of images must be [N, C, H, W] or [N, H, W], got {tuple(data.shape)}")
        batches: Iterable[Any] = (t[i : i + 1024] for i in range(0, t.shape[0], 1024))
    else:
        batches = data
    total = None
    total_sq = None
    count = 0
    seen = 0
    for item in batches:
        x = _to_float_chw(_first(item))
        if x.ndim == 2:
            x = x.unsqueeze(0)
        if x.ndim == 3:
            x = x.unsqueeze(0)
        if x.ndim != 4:
            raise ValueError(f"expected CHW images or NCHW batches, got shape {tuple(x.shape)}")
        if max_images is not None and seen + x.shape[0] > max_images:
            x = x[: max_images - seen]
        if total is None:
            total = torch.zeros(x.shape[1], dtype=torch.float64)
            total_sq = torch.zeros(x.shape[1], dtype=torch.float64)
        elif x.shape[1] != total.numel():
            raise ValueError(
                f"images have different channel counts ({total.numel()} then {x.shape[1]}); "
                "convert them to one mode (e.g. RGB) first"
            )
        total += x.sum(dim=(0, 2, 3))
        total_sq += x.square().sum(dim=(0, 2, 3))
        count += x.shape[0] * x.shape[2] * x.shape[3]
        seen += x.shape[0]
        if max_images is not None and seen >= max_images:
            break
    if total is None or count == 0:
        raise ValueError("channel_stats got no images: the dataset or loader is empty")
    mean = total / count
    var = (total_sq / count - mean.square()).clamp_min(0.0)
    return tuple(mean.tolist()), tuple(var.sqrt().tolist())
