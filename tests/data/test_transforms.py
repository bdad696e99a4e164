import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torchvision.transforms import v2

from purenoise.data import Cutout, create_transform, list_transforms
from purenoise.errors import ConfigError

PRESETS = ["cifar_basic", "cifar_cutout", "cifar_simclr", "autoaugment", "fmnist_basic", "imagenet_train",
           "imagenet_test", "test"]


def rgb_image(w=32, h=32, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8))


def gray_image(w=28, h=28, seed=0):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8), mode="L")


def test_list_transforms():
    assert list_transforms() == sorted(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
@pytest.mark.parametrize("channels", [1, 3])
def test_presets_output_float_unnormalized(name, channels):
    torch.manual_seed(0)
    size = {"fmnist_basic": 28, "imagenet_train": 24, "imagenet_test": 24}.get(name, 32)
    t = create_transform(name, image_size=size, channels=channels)
    img = (rgb_image(40, 36) if name.startswith("imagenet") else rgb_image(size, size)) if channels == 3 else (
        gray_image(40, 36) if name.startswith("imagenet") else gray_image(size, size))
    for _ in range(5):
        out = t(img)
        assert out.dtype == torch.float32 and out.shape == (channels, size, size)
        assert out.min() >= 0 and out.max() <= 1


def test_eval_counterparts():
    img = rgb_image()
    expected = torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 255
    for name in ("cifar_basic", "cifar_simclr", "autoaugment", "test"):
        assert torch.allclose(create_transform(name, image_size=32, train=False)(img), expected)
    big = rgb_image(300, 260)
    out = create_transform("imagenet_train", train=False)(big)
    assert out.shape == (3, 224, 224)


def test_channel_conversion():
    assert create_transform("cifar_basic", channels=3)(gray_image(32, 32)).shape == (3, 32, 32)
    assert create_transform("fmnist_basic", channels=1)(rgb_image(28, 28)).shape == (1, 28, 28)


def _ops(t):
    out = []
    for op in t.transforms:
        out += _ops(op) if isinstance(op, (v2.Compose, v2.RandomApply)) else [op]
    return out


def test_grayscale_presets_drop_colour_only_operations():
    for name in ("cifar_simclr", "imagenet_train"):
        ops = _ops(create_transform(name, channels=1))
        assert not any(isinstance(op, v2.RandomGrayscale) for op in ops)
        jitters = [op for op in ops if isinstance(op, v2.ColorJitter)]
        assert jitters and all(op.hue is None and op.saturation is None for op in jitters)
    ops = _ops(create_transform("cifar_simclr", channels=3))
    jitter = next(op for op in ops if isinstance(op, v2.ColorJitter))
    assert jitter.hue == (-0.1, 0.1) and jitter.brightness == (0.6, 1.4)
    assert any(isinstance(op, v2.RandomGrayscale) and op.p == 0.2 for op in ops)
    blur = next(op for op in ops if isinstance(op, v2.GaussianBlur))
    assert blur.kernel_size == (3, 3) and blur.sigma == [0.1, 2.0]


def test_crop_padding_scales_with_size():
    crop = next(op for op in _ops(create_transform("cifar_basic")) if isinstance(op, v2.RandomCrop))
    assert crop.padding == [4, 4, 4, 4] and crop.size == (32, 32)
    crop = next(op for op in _ops(create_transform("cifar_basic", image_size=64)) if isinstance(op, v2.RandomCrop))
    assert crop.padding == [8, 8, 8, 8]
    cut = next(op for op in _ops(create_transform("cifar_cutout", image_size=64)) if isinstance(op, Cutout))
    assert cut.size == 32


def _hole(out):
    rows = torch.nonzero((out == 0).all(dim=0).any(dim=1)).flatten()
    cols = torch.nonzero((out == 0).all(dim=0).any(dim=0)).flatten()
    return int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1


def test_cutout_is_the_original_clipped_square_with_uniform_centre():
    torch.manual_seed(0)
    cut = Cutout(16)
    ones = torch.ones(3, 32, 32)
    centres = []
    for _ in range(3200):
        out = cut(ones)
        y1, y2, x1, x2 = _hole(out)
        assert out[:, y1:y2, x1:x2].eq(0).all() and out.eq(0).sum() == 3 * (y2 - y1) * (x2 - x1)
        # 16 wide unless clipped by a border: the hole is [c - 8, c + 8) intersected with the image.
        assert (y2 - y1 == 16) or y1 == 0 or y2 == 32
        assert (x2 - x1 == 16) or x1 == 0 or x2 == 32
        centres.append((y1 + 8 if y1 > 0 else y2 - 8, x1 + 8 if x1 > 0 else x2 - 8))
    c = np.array(centres)
    assert c.min() >= 0 and c.max() <= 31
    for axis in (0, 1):  # each centre coordinate uniform over all 32 pixels
        freq = np.bincount(c[:, axis], minlength=32)
        assert stats.chisquare(freq).pvalue > 1e-6
    # Near-border holes are clipped (RandomErasing would keep them whole and inside).
    assert ((c[:, 0] < 8) | (c[:, 0] > 24)).mean() > 0.3


def test_cutout_fill_values_and_dtypes():
    torch.manual_seed(1)
    out = Cutout(4, fill=(0.5, 0.25, 1.0))(torch.zeros(3, 8, 8))
    assert sorted(set(out.flatten().tolist())) == [0.0, 0.25, 0.5, 1.0]
    out = Cutout(4, fill=0.5)(torch.zeros(3, 8, 8, dtype=torch.uint8))
    assert set(out.unique().tolist()) == {0, 128}
    pil = Cutout(30, fill=1.0)(Image.new("RGB", (10, 10)))
    assert isinstance(pil, Image.Image) and np.array(pil).max() == 255
    assert torch.equal(Cutout(4, p=0.0)(torch.ones(1, 8, 8)), torch.ones(1, 8, 8))


def test_cutout_in_preset_fills_zero_by_default():
    torch.manual_seed(0)
    out = create_transform("cifar_cutout")(Image.new("RGB", (32, 32), (255, 255, 255)))
    assert (out == 0).all(dim=0).sum() >= 64  # at least an 8x8 corner hole (crop padding adds more)


def test_bad_arguments():
    with pytest.raises(ConfigError, match="unknown transform preset 'cifar'"):
        create_transform("cifar")
    with pytest.raises(ConfigError, match="channels"):
        create_transform("test", channels=2)
    with pytest.raises(ConfigError, match="image_size"):
        create_transform("cifar_basic", image_size=(0, 3))


@pytest.mark.parametrize("name", ["cifar_basic", "cifar_cutout", "cifar_simclr", "autoaugment", "test"])
def test_presets_accept_uint8_tensors(name):
    torch.manual_seed(0)
    x = torch.from_numpy(np.array(rgb_image())).permute(2, 0, 1).contiguous()
    out = create_transform(name)(x)
    assert out.dtype == torch.float32 and out.shape == (3, 32, 32) and 0 <= out.min() and out.max() <= 1
    if name == "test":
        assert torch.allclose(out, x.float() / 255)
