from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from purenoise import PureNoise, channel_stats


def test_gaussian_noise_matches_requested_statistics_before_clipping():
    # Mean and std far from the clip bounds, so clipping does not move the moments measurably.
    mean, std = (0.5, 0.4, 0.6), (0.05, 0.08, 0.03)
    x = PureNoise(mean, std)(64, (32, 32), generator=torch.Generator().manual_seed(0))
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32
    n = x[:, 0].numel()
    got_mean = x.mean(dim=(0, 2, 3))
    got_std = x.std(dim=(0, 2, 3))
    for c in range(3):
        # 6 standard errors: a wrong mean or std by even 1% of sigma fails.
        assert abs(got_mean[c] - mean[c]) < 6 * std[c] / n**0.5
        assert abs(got_std[c] - std[c]) < 6 * std[c] / (2 * n) ** 0.5


def test_clipping_and_uniform():
    x = PureNoise((0.5,), (2.0,))(16, 8, generator=torch.Generator().manual_seed(1))
    assert x.shape == (16, 1, 8, 8)
    assert x.min() == 0.0 and x.max() == 1.0
    unclipped = PureNoise((0.5,), (2.0,), clip=False)(16, 8, generator=torch.Generator().manual_seed(1))
    assert unclipped.min() < 0 and unclipped.max() > 1
    u = PureNoise(kind="uniform")(200, (10, 12), generator=torch.Generator().manual_seed(2))
    assert u.shape == (200, 3, 10, 12)
    assert 0 <= u.min() and u.max() <= 1
    assert abs(float(u.mean()) - 0.5) < 0.005
    assert abs(float(u.var()) - 1 / 12) < 0.002


def test_noise_is_reproducible_and_fresh():
    noise = PureNoise((0.3, 0.3, 0.3), (0.2, 0.2, 0.2))
    a = noise(4, (5, 5), generator=torch.Generator().manual_seed(7))
    b = noise(4, (5, 5), generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)
    c, d = noise(4, (5, 5), generator=g), noise(4, (5, 5), generator=g)
    assert torch.equal(a, b) and torch.equal(a, c)
    assert not torch.equal(c, d)


@pytest.mark.parametrize("kind", ["gaussian", "uniform"])
def test_fill_draws_what_a_call_draws(kind):
    noise = PureNoise((0.3, 0.5), (0.2, 0.1), kind=kind)
    a = noise(6, (4, 5), generator=torch.Generator().manual_seed(3))
    buf = torch.full((10, 2, 4, 5), -7.0)
    out = noise.fill_(buf[4:], generator=torch.Generator().manual_seed(3))
    assert out.data_ptr() == buf[4:].data_ptr()  # in place, into a row slice
    assert torch.equal(buf[4:], a) and (buf[:4] == -7).all()
    for bad in (torch.empty(2, 2, 4, 5, dtype=torch.float64), torch.empty(2, 3, 4, 5),
                torch.empty(2, 2, 4, 5).to(memory_format=torch.channels_last)[:, :, :, :3]):
        with pytest.raises(ValueError, match="fill_ needs a contiguous float32"):
            noise.fill_(bad)


def test_noise_dtype_and_size_forms():
    noise = PureNoise((0.5, 0.5, 0.5), (0.1, 0.1, 0.1))
    assert noise(2, (3, 7, 9), dtype=torch.bfloat16).dtype == torch.bfloat16
    assert noise(2, (7, 9)).shape == (2, 3, 7, 9)
    assert noise(0, 4).shape == (0, 3, 4, 4)
    with pytest.raises(ValueError, match="1 channels"):
        noise(2, (1, 7, 9))
    with pytest.raises(ValueError, match="floating"):
        noise(2, 4, dtype=torch.uint8)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(mean=None, std=None), "channel_stats"),
        (dict(mean=(0.5,), std=(0.1, 0.1)), "one value per channel"),
        (dict(mean=(0.5,), std=(0.0,)), "positive"),
        (dict(mean=(0.5,), std=(0.1,), kind="pink"), "unknown noise kind"),
    ],
)
def test_noise_validates(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PureNoise(**kwargs)


def _numpy_stats(images_hwc_uint8: np.ndarray):
    x = images_hwc_uint8.astype(np.float64) / 255.0
    return x.mean(axis=(0, 1, 2)), x.std(axis=(0, 1, 2))


def test_channel_stats_matches_numpy_on_pil_dataset():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, size=(37, 9, 11, 3), dtype=np.uint8)
    imgs[..., 1] //= 3  # channels with different statistics
    dataset = [(Image.fromarray(im), i % 3) for i, im in enumerate(imgs)]
    mean, std = channel_stats(dataset)
    ref_mean, ref_std = _numpy_stats(imgs)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-12)
    np.testing.assert_allclose(std, ref_std, rtol=1e-10)


def test_channel_stats_loader_tensor_and_grayscale_agree():
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, size=(50, 6, 6, 1), dtype=np.uint8)
    ref_mean, ref_std = _numpy_stats(imgs)
    t = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(t.float() / 255, torch.zeros(50)), batch_size=16
    )
    for data in (loader, t, t[:, 0]):
        mean, std = channel_stats(data)
        np.testing.assert_allclose(mean, ref_mean, rtol=1e-6)
        np.testing.assert_allclose(std, ref_std, rtol=1e-6)
    m10, _ = channel_stats(t, max_images=10)
    np.testing.assert_allclose(m10, _numpy_stats(imgs[:10])[0], rtol=1e-12)


def test_channel_stats_errors():
    with pytest.raises(ValueError, match="empty"):
        channel_stats([])
    mixed = [torch.zeros(3, 4, 4), torch.zeros(1, 4, 4)]
    with pytest.raises(ValueError, match="channel counts"):
        channel_stats(mixed)
