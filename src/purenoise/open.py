"""OPeN: Oversampling with Pure Noise images (docs/method.md, section 1).

Given a class-balanced batch, each sample of class ``c`` is replaced, independently with
probability ``p_c = delta * (1 - n_c / n_max)``, by a fresh pure-noise image that keeps the
label. The majority class is never replaced. The returned batch holds the natural rows first and
the noise rows last, so DAR-BN can split every activation at one index (two views, no gather):

    images, labels, k = open_(images, labels)
    with noise_routing(model, k):
        logits = model(images)
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from purenoise.marks import mark_noise_rows
from purenoise.noise import PureNoise

__all__ = ["OPeN", "NoiseAugment", "replacement_probs"]

NoiseFn = Callable[..., torch.Tensor]


def replacement_probs(class_counts: Sequence[int] | torch.Tensor, delta: float) -> torch.Tensor:
    """Per-class replacement probability ``delta * (1 - n_c / n_max)`` as a float64 tensor.

    Args:
        class_counts: Training images per class, all positive.
        delta: Replacement strength in ``[0, 1]`` (the paper uses 1/3).

    Raises:
        ValueError: When ``delta`` is outside ``[0, 1]`` or a count is not a positive integer.
    """
    delta = float(delta)
    if not 0.0 <= delta <= 1.0:
        raise ValueError(f"OPeN delta must be in [0, 1], got {delta}")
    counts = torch.as_tensor(class_counts, dtype=torch.float64).flatten()
    if counts.numel() == 0:
        raise ValueError("OPeN needs the training class counts, got an empty list")
    if not torch.isfinite(counts).all() or (counts != counts.round()).any():
        raise ValueError(f"class counts must be whole numbers, got {counts.tolist()}")
    bad = (counts <= 0).nonzero().flatten().tolist()
    if bad:
        raise ValueError(
            f"OPeN needs at least one training image in every class (p_c uses n_c / n_max), but "
            f"class(es) {bad} have count 0; drop those classes from the dataset or use another method"
        )
    return delta * (1.0 - counts / counts.max())


class OPeN:
    """The OPeN batch transform: replace minority samples by pure noise.

    Args:
        class_counts: Number of training images of each class (the long-tailed counts).
        delta: Replacement strength in ``[0, 1]``; ``p_c = delta * (1 - n_c / n_max)``.
        noise: A :class:`~purenoise.noise.PureNoise` (or any callable with its signature). When
            omitted and ``normalize`` is given, Gaussian noise with those statistics is used,
            which is the paper's choice when ``normalize`` holds the training set's statistics.
        normalize: ``(mean, std)`` per channel, applied to the noise images as
            ``(noise - mean) / std`` so they match inputs that were normalized the same way.
            Leave ``None`` when the batch is still in pixel space ``[0, 1]``.

    Call it as ``open_(images, labels, generator=g) -> (images, labels, n_noise)``: ``images``
    ``[B, C, H, W]`` float, ``labels`` ``[B]`` int64. The result reorders rows so that the
    ``B - n_noise`` natural rows come first (in their original order) and the ``n_noise``
    noise rows last; labels move with their rows. When nothing is replaced the inputs are
    returned as they are. Pass a seeded ``torch.Generator`` on the images' device for a
    reproducible draw.
    """

    def __init__(
        self,
        class_counts: Sequence[int] | torch.Tensor,
        delta: float = 1 / 3,
        noise: PureNoise | NoiseFn | None = None,
        normalize: tuple[Sequence[float], Sequence[float]] | None = None,
    ) -> None:
        self.delta = float(delta)
        self.probs = replacement_probs(class_counts, self.delta)
        self.num_classes = self.probs.numel()
        if normalize is not None:
            if len(normalize) != 2:
                raise ValueError("normalize must be a (mean, std) pair")
            mean = torch.as_tensor(normalize[0], dtype=torch.float32).flatten()
            std = torch.as_tensor(normalize[1], dtype=torch.float32).flatten()
            if mean.numel() != std.numel() or (std <= 0).any():
                raise ValueError(
                    f"normalize needs one mean and one positive std per channel, got "
                    f"{mean.tolist()} and {std.tolist()}"
                )
            self._norm: tuple[torch.Tensor, torch.Tensor] | None = (mean, std)
        else:
            self._norm = None
        if noise is None:
            if normalize is None:
                raise ValueError(
                    "OPeN needs a noise generator: pass noise=PureNoise(mean, std) with the "
                    "training set's channel statistics (purenoise.channel_stats), or "
                    "normalize=(mean, std) to use Gaussian noise with those statistics"
                )
            noise = PureNoise(normalize[0], normalize[1])
        self.noise = noise
        # Per-device caches of small constant tensors, so a training step makes no host copies.
        self._cache: dict[tuple[str, torch.dtype], tuple[torch.Tensor, ...]] = {}

    @property
    def expected_noise_fraction(self) -> float:
        """Fraction of a class-balanced batch expected to be noise: the mean of ``p_c``."""
        return float(self.probs.mean())

    def _constants(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        key = (str(device), dtype)
        if key not in self._cache:
            probs = self.probs.to(device=device, dtype=torch.float32)
            if self._norm is not None:
                mean = self._norm[0].to(device=device, dtype=torch.float32).view(1, -1, 1, 1)
                inv_std = (1.0 / self._norm[1]).to(device=device, dtype=torch.float32).view(1, -1, 1, 1)
                self._cache[key] = (probs, mean, inv_std)
            else:
                self._cache[key] = (probs,)
        return self._cache[key]

    def __call__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        if images.ndim != 4:
            raise ValueError(f"OPeN expects images [B, C, H, W], got shape {tuple(images.shape)}")
        if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
            raise ValueError(
                f"labels must be [B] with B = {images.shape[0]} (the batch size), got {tuple(labels.shape)}"
            )
        if not images.dtype.is_floating_point:
            raise ValueError(
                f"OPeN expects float images (after ToTensor/normalization), got {images.dtype}"
            )
        if labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(f"labels must be integer class indices, got {labels.dtype}")
        channels = getattr(self.noise, "channels", images.shape[1])
        if channels != images.shape[1]:
            raise ValueError(
                f"the batch has {images.shape[1]} channel(s) but the noise generator makes "
                f"{channels}: build PureNoise/normalize with this dataset's per-channel statistics"
            )
        if self._norm is not None and self._norm[0].numel() != images.shape[1]:
            raise ValueError(
                f"normalize has {self._norm[0].numel()} channel(s), the batch {images.shape[1]}"
            )
        batch = images.shape[0]
        if batch == 0:
            return images, labels, 0
        consts = self._constants(images.device, images.dtype)
        u = torch.rand(batch, generator=generator, device=images.device)
        # Clamped indexing keeps a bad label from tripping a device-side assert on GPU; the
        # range check and the noise count then share a single host synchronization.
        replace = u < consts[0].index_select(0, labels.clamp(0, self.num_classes - 1))
        lo, hi, n_noise = torch.stack([labels.min(), labels.max(), replace.sum()]).tolist()
        if lo < 0 or hi >= self.num_classes:
            raise ValueError(
                f"labels must lie in [0, {self.num_classes - 1}] (OPeN got {self.num_classes} class "
                f"counts), found label {lo if lo < 0 else hi}"
            )
        if n_noise == 0:
            return images, labels, 0
        # A stable sort puts natural rows first in their original order and noise rows last.
        order = torch.argsort(replace.to(torch.uint8), stable=True)  # uint8: every backend sorts it
        labels = labels.index_select(0, order)
        n_nat = batch - n_noise
        # Only the natural rows are gathered (index_select copies whole rows, unlike the
        # element-wise gather of images[order]); the noise is drawn straight into its rows.
        out = torch.empty_like(images)
        torch.index_select(images, 0, order[:n_nat], out=out[:n_nat])
        rows = out[n_nat:]
        if isinstance(self.noise, PureNoise) and rows.dtype == torch.float32 and rows.is_contiguous():
            self.noise.fill_(rows, generator=generator)
            if self._norm is not None:
                rows.sub_(consts[1]).mul_(consts[2])
        else:
            noise = self.noise(
                n_noise, images.shape[1:], device=images.device, dtype=torch.float32, generator=generator
            )
            if self._norm is not None:
                noise = (noise - consts[1]) * consts[2]
            rows.copy_(noise)
        mark_noise_rows(out, n_noise)  # a DAR-BN model warns if it is not routed (see purenoise.marks)
        return out, labels, n_noise

    def __repr__(self) -> str:
        return (
            f"OPeN(num_classes={self.num_classes}, delta={self.delta:.4g}, "
            f"expected_noise_fraction={self.expected_noise_fraction:.3f}, noise={self.noise!r})"
        )


class NoiseAugment:
    """Pure noise as a general augmentation on balanced data (paper section 5).

    Appends ``round(ratio * B)`` fresh noise images to each batch of ``B`` natural images
    (``ratio=0.25`` is the paper's noise:natural ratio of 1:4), labelled uniformly at random as
    in the reproduction (the paper does not say how they were labelled). Noise rows come last,
    so the result feeds :func:`~purenoise.darbn.noise_routing` like OPeN's.

    Args:
        num_classes: Number of classes (labels of noise rows are uniform over them).
        ratio: Noise images per natural image, > 0.
        noise: Noise generator (default: Gaussian with the ``normalize`` statistics).
        normalize: ``(mean, std)`` applied to the noise, as for :class:`OPeN`.
    """

    def __init__(self, num_classes: int, ratio: float = 0.25, noise: PureNoise | NoiseFn | None = None,
                 normalize: tuple[Sequence[float], Sequence[float]] | None = None) -> None:
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not ratio > 0:
            raise ValueError(f"noise ratio must be > 0, got {ratio}")
        self.num_classes = int(num_classes)
        self.ratio = float(ratio)
        # Reuse OPeN's handling of noise and normalization (with every probability zero).
        self._open = OPeN([1] * self.num_classes, 0.0, noise=noise, normalize=normalize)

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, *,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, int]:
        k = round(self.ratio * images.shape[0])
        if k == 0:
            return images, labels, 0
        noise = self._open.noise(k, images.shape[1:], device=images.device, dtype=torch.float32,
                                 generator=generator)
        if self._open._norm is not None:
            consts = self._open._constants(images.device, images.dtype)
            noise = (noise - consts[1]) * consts[2]
        noise_labels = torch.randint(0, self.num_classes, (k,), device=labels.device, generator=generator,
                                     dtype=labels.dtype)
        out = torch.cat([images, noise.to(images.dtype)]).contiguous(
            memory_format=torch.channels_last if images.is_contiguous(memory_format=torch.channels_last)
            and not images.is_contiguous() else torch.contiguous_format)
        return out, torch.cat([labels, noise_labels]), k
