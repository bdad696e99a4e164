"""Batched device augmentations against the torchvision presets they replace.

Three kinds of evidence: (1) given the same parameters, each batched operation computes what
torchvision's tensor kernel computes; (2) the per-sample parameters follow the distributions of
the torchvision transforms (strict tests at fixed seeds, so they never flake); (3) end to end,
the crop/flip offsets and Cutout centres read back from augmented images have the same
distribution as those of the torchvision preset itself.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy import stats
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from purenoise.data import create_transform
from purenoise.data.batch_augment import (
    BlurOp,
    ColorJitterOp,
    CropFlip,
    CutoutOp,
    GrayscaleOp,
    create_batch_augment,
    list_batch_augments,
)
from purenoise.data.transforms import Cutout
from purenoise.errors import ConfigError

CPU = torch.device("cpu")
ALPHA = 1e-3  # every test below is at a fixed seed: a rejection is a real difference, not bad luck


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _walk(t, p=1.0):
    """The leaf transforms of a preset with the probability they are applied with."""
    out = []
    for op in t.transforms:
        if isinstance(op, v2.RandomApply):
            out += _walk(op, op.p)
        elif isinstance(op, v2.Compose):
            out += _walk(op, p)
        else:
            out.append((p, op))
    return out


# ---------------------------------------------------------------------- (1) kernels


def test_crop_flip_matches_torchvision_kernels():
    g = gen(1)
    data = torch.randint(0, 256, (20, 3, 32, 32), generator=g, dtype=torch.uint8)
    index = torch.randint(0, 20, (64,), generator=g)
    op = CropFlip(4)
    p = op.sample(64, (32, 32), g, CPU)
    out = op.gather(data, index, p)
    for i in range(64):
        ref = TF.crop(TF.pad(data[index[i]], [4], fill=0), int(p["top"][i]), int(p["left"][i]), 32, 32)
        ref = TF.horizontal_flip(ref) if p["flip"][i] else ref
        assert torch.equal(out[i], ref), i


def test_cutout_matches_the_cutout_transform():
    g = gen(2)
    x = torch.rand(64, 3, 32, 32, generator=g)
    op = CutoutOp(16, fill=(0.2, 0.5, 0.7))
    p = op.sample(64, (32, 32), g, CPU)
    out = op(x, p)
    cut = Cutout(16, fill=(0.2, 0.5, 0.7))
    for i in range(64):
        cy, cx = int(p["cy"][i]), int(p["cx"][i])
        y1, y2, x1, x2 = max(cy - 8, 0), min(cy + 8, 32), max(cx - 8, 0), min(cx + 8, 32)
        ref = cut.transform(x[i], dict(skip=False, i=y1, j=x1, h=y2 - y1, w=x2 - x1))
        assert torch.equal(out[i], ref), i


def test_cutout_fill_is_rounded_to_8_bits_for_simclr():
    aug = create_batch_augment("cifar_simclr", image_size=32, cutout_fill=(0.4914, 0.4822, 0.4465))
    assert aug.ops[0].fill == [round(v * 255) / 255 for v in (0.4914, 0.4822, 0.4465)]
    aug = create_batch_augment("cifar_cutout", image_size=32, cutout_fill=(0.4914, 0.4822, 0.4465))
    assert aug.ops[0].fill == [0.4914, 0.4822, 0.4465]


_FNS = [TF.adjust_brightness, TF.adjust_contrast, TF.adjust_saturation, TF.adjust_hue]


@pytest.mark.parametrize("channels", [3, 1])
def test_color_jitter_matches_torchvision_in_each_samples_order(channels):
    g = gen(3)
    x = torch.rand(96, channels, 16, 16, generator=g)
    if channels == 3:
        x[:6] = x[:6, :1]  # grey images: hue and saturation edge cases
        x[6:12] = (x[6:12] * 4).round() / 4  # ties between channels
        op = ColorJitterOp(0.4, 0.4, 0.4, 0.1, p=0.8)
    else:
        op = ColorJitterOp(brightness=0.4, contrast=0.4, p=0.8, channels=1)
    p = op.sample(96, (16, 16), g, CPU)
    out = op(x, p)
    for i in range(96):
        ref = x[i]
        if p["apply"][i]:
            for o in p["order"][i].tolist():
                ref = _FNS[o](ref, float(p["factors"][i, o]))
            torch.testing.assert_close(out[i], ref, atol=3e-6, rtol=0)
        else:
            assert torch.equal(out[i], x[i])  # not jittered: untouched, bit for bit


def test_hue_over_the_whole_range():
    from purenoise.data.batch_augment import _adjust_hue

    g = gen(4)
    x = torch.rand(64, 3, 8, 8, generator=g)
    shift = torch.rand(64, generator=g) - 0.5
    out = _adjust_hue(x, shift)
    ref = torch.stack([TF.adjust_hue(x[i], float(shift[i])) for i in range(64)])
    torch.testing.assert_close(out, ref, atol=2e-6, rtol=0)


def test_grayscale_and_blur_match_torchvision():
    g = gen(5)
    x = torch.rand(64, 3, 16, 16, generator=g)
    gray = GrayscaleOp(0.2)
    p = gray.sample(64, (16, 16), g, CPU)
    out = gray(x, p)
    for i in range(64):
        ref = TF.rgb_to_grayscale(x[i], num_output_channels=3) if p["apply"][i] else x[i]
        assert torch.equal(out[i], ref)
    blur = BlurOp((0.1, 2.0), p=0.5)
    p = blur.sample(64, (16, 16), g, CPU)
    out = blur(x, p)
    for i in range(64):
        if p["apply"][i]:
            ref = TF.gaussian_blur(x[i], [3, 3], [float(p["sigma"][i])] * 2)
            torch.testing.assert_close(out[i], ref, atol=1e-6, rtol=0)
        else:
            assert torch.equal(out[i], x[i])


# ---------------------------------------------------------------------- (2) parameters


def _binom_ok(hits, n, p):
    assert stats.binomtest(int(hits), n, p).pvalue > ALPHA, (hits, n, p)


def _uniform_ok(values, lo, hi):
    values = np.asarray(values, dtype=np.float64)
    assert values.min() >= lo and values.max() <= hi
    assert stats.kstest(values, stats.uniform(lo, hi - lo).cdf).pvalue > ALPHA


def _discrete_uniform_ok(values, k):
    counts = np.bincount(np.asarray(values), minlength=k)
    assert counts.size == k
    assert stats.chisquare(counts).pvalue > ALPHA, counts


def test_simclr_preset_has_the_torchvision_presets_operations_and_constants():
    tv = [(p, op) for p, op in _walk(create_transform("cifar_simclr", image_size=32)) if op.__class__.__name__
          not in ("RGB", "Grayscale", "ToImage", "ToDtype")]
    names = [type(op).__name__ for _, op in tv]
    assert names == ["RandomCrop", "RandomHorizontalFlip", "Cutout", "ColorJitter", "RandomGrayscale", "GaussianBlur"]
    crop, flip, cut, jitter, gray, blur = (op for _, op in tv)
    ours = create_batch_augment("cifar_simclr", image_size=32)
    assert [type(o).__name__ for o in [ours.crop, *ours.ops]] == ["CropFlip", "CutoutOp", "ColorJitterOp",
                                                                   "GrayscaleOp", "BlurOp"]
    c, j, gr, b = ours.ops
    assert ours.crop.padding == crop.padding[0] and flip.p == 0.5 and c.size == cut.size
    assert j.p == tv[3][0] and j.ranges == [(0, *jitter.brightness), (1, *jitter.contrast), (2, *jitter.saturation)]
    assert j.hue == jitter.hue[1] == -jitter.hue[0]
    assert gr.p == gray.p and b.p == tv[5][0] and b.sigma == tuple(blur.sigma) and blur.kernel_size == (3, 3)


def test_parameter_distributions():
    n = 20000
    aug = create_batch_augment("cifar_simclr", image_size=32)
    crop, cut, jit, gray, blur = aug.sample(n, (32, 32), gen(6))
    _binom_ok(crop["flip"].sum(), n, 0.5)
    _discrete_uniform_ok((crop["top"] * 9 + crop["left"]).numpy(), 81)  # offsets 0..8 each, jointly uniform
    _discrete_uniform_ok((cut["cy"] * 32 + cut["cx"]).numpy(), 1024)  # centre uniform over all pixels
    _binom_ok(jit["apply"].sum(), n, 0.8)
    for op in range(3):
        _uniform_ok(jit["factors"][:, op], 0.6, 1.4)
    _uniform_ok(jit["factors"][:, 3], -0.1, 0.1)
    perms = {p: i for i, p in enumerate(itertools.permutations(range(4)))}
    _discrete_uniform_ok([perms[tuple(o)] for o in jit["order"].tolist()], 24)  # every order equally likely
    _binom_ok(gray["apply"].sum(), n, 0.2)
    _binom_ok(blur["apply"].sum(), n, 0.5)
    _uniform_ok(blur["sigma"], 0.1, 2.0)
    # Parameters of one sample are independent of each other (e.g. flip vs crop, jitter vs blur).
    table = np.histogram2d(crop["flip"].numpy(), crop["top"].numpy(), bins=[2, 9])[0]
    assert stats.chi2_contingency(table).pvalue > ALPHA
    table = np.histogram2d(jit["apply"].numpy(), blur["apply"].numpy(), bins=[2, 2])[0]
    assert stats.chi2_contingency(table).pvalue > ALPHA


def test_single_channel_simclr_jitters_brightness_and_contrast_in_random_order():
    aug = create_batch_augment("cifar_simclr", image_size=28, channels=1)
    assert [type(o).__name__ for o in aug.ops] == ["CutoutOp", "ColorJitterOp", "BlurOp"]
    _, _, jit, _ = aug.sample(4000, (28, 28), gen(7))
    assert jit["order"].shape == (4000, 2)
    _binom_ok((jit["order"][:, 0] == 0).sum(), 4000, 0.5)


# ---------------------------------------------------------------------- (3) end to end


def _coordinate_image(size=32):
    """R encodes the row, G the column (8 levels per pixel), B = 255 marks real pixels."""
    i = torch.arange(size).view(-1, 1).expand(size, size)
    j = torch.arange(size).view(1, -1).expand(size, size)
    return torch.stack([i * 8, j * 8, torch.full_like(i, 255)]).to(torch.uint8)


def _read_offsets(images):
    """(top, left, flip) of crop-and-flipped coordinate images (float [B, 3, 32, 32] or uint8)."""
    px = (images.float() * (255 if images.is_floating_point() else 1)).round().long()
    centre, right = px[:, :, 16, 16], px[:, :, 16, 17]
    flip = right[:, 1] < centre[:, 1]
    top = centre[:, 0] // 8 - 12
    left = centre[:, 1] // 8 - 12 + flip.long()
    return top, left, flip


def test_crop_and_flip_distribution_matches_the_torchvision_preset():
    n = 3000
    img = _coordinate_image()
    tv = create_transform("cifar_basic", image_size=32)
    torch.manual_seed(0)
    tv_out = torch.stack([tv(img) for _ in range(n)])
    aug = create_batch_augment("cifar_basic", image_size=32)
    ours = aug(img.unsqueeze(0), torch.zeros(n, dtype=torch.long), gen(8))
    assert ours.dtype == torch.float32 and ours.shape == (n, 3, 32, 32)
    t1, l1, f1 = _read_offsets(tv_out)
    t2, l2, f2 = _read_offsets(ours)
    for a, b, k in ((t1, t2, 9), (l1, l2, 9), (f1.long(), f2.long(), 2)):
        table = np.stack([np.bincount(a.numpy(), minlength=k), np.bincount(b.numpy(), minlength=k)])
        assert stats.chi2_contingency(table).pvalue > ALPHA
    # Each output is exactly the crop its offsets say (padding is 0, like RandomCrop(fill=0)).
    for i in range(20):
        ref = TF.crop(TF.pad(img, [4], fill=0), int(t2[i]), int(l2[i]), 32, 32)
        ref = TF.horizontal_flip(ref) if f2[i] else ref
        assert torch.equal((ours[i] * 255).round().to(torch.uint8), ref)


def _hole_centres(images, size=16):
    hole = (images == 1.0).all(dim=1)  # the fill below is pure white; the image never is
    rows, cols = hole.any(dim=2), hole.any(dim=1)
    ar = torch.arange(images.shape[-1])
    y1 = torch.where(rows, ar, 99).min(1).values
    y2 = torch.where(rows, ar, -1).max(1).values + 1
    x1 = torch.where(cols, ar, 99).min(1).values
    x2 = torch.where(cols, ar, -1).max(1).values + 1
    cy = torch.where(y2 < 32, y2 - size // 2, y1 + size // 2)
    cx = torch.where(x2 < 32, x2 - size // 2, x1 + size // 2)
    return cy, cx


def test_cutout_centre_distribution_matches_the_torchvision_preset():
    n = 3000
    img = torch.full((3, 32, 32), 128, dtype=torch.uint8)
    tv = create_transform("cifar_cutout", image_size=32, cutout_fill=1.0)
    torch.manual_seed(1)
    tv_out = torch.stack([tv(img) for _ in range(n)])
    aug = create_batch_augment("cifar_cutout", image_size=32, cutout_fill=1.0)
    ours = aug(img.unsqueeze(0), torch.zeros(n, dtype=torch.long), gen(9))
    for a, b in zip(_hole_centres(tv_out), _hole_centres(ours)):
        table = np.stack([np.bincount(a.numpy(), minlength=32), np.bincount(b.numpy(), minlength=32)])
        assert stats.chi2_contingency(table).pvalue > ALPHA
        _discrete_uniform_ok(b.numpy(), 32)


def test_simclr_output_range_and_determinism():
    data = torch.randint(0, 256, (50, 3, 32, 32), generator=gen(10), dtype=torch.uint8)
    index = torch.randint(0, 50, (128,), generator=gen(11))
    aug = create_batch_augment("cifar_simclr", image_size=32, cutout_fill=(0.5, 0.5, 0.5))
    a = aug(data, index, gen(12))
    assert a.shape == (128, 3, 32, 32) and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, aug(data, index, gen(12)))
    assert not torch.equal(a, aug(data, index, gen(13)))
    # Per-sample draws: two copies of one image in a batch are augmented differently.
    twice = aug(data, torch.zeros(2, dtype=torch.long), gen(14))
    assert not torch.equal(twice[0], twice[1])


def test_presets_and_errors():
    assert list_batch_augments() == ["cifar_basic", "cifar_cutout", "cifar_simclr", "fmnist_basic", "test"]
    fm = create_batch_augment("fmnist_basic", image_size=28, channels=1)
    assert fm.crop.padding == 4 and fm.ops == []
    assert create_batch_augment("cifar_basic", image_size=64).crop.padding == 8
    data = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    out = create_batch_augment("test", image_size=28, channels=1)(data, torch.arange(4), gen())
    assert torch.equal(out, data.float() / 255)
    for name in ("autoaugment", "imagenet_train"):
        with pytest.raises(ConfigError, match="loader: torch"):
            create_batch_augment(name, image_size=32)
