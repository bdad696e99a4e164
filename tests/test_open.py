from __future__ import annotations

import pytest
import torch
from scipy import stats

from purenoise import OPeN, PureNoise
from purenoise.open import replacement_probs

# CIFAR-10-LT at ratio 100.
COUNTS = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)


def _open(delta=1 / 3, **kw):
    return OPeN(COUNTS, delta=delta, noise=PureNoise(MEAN, STD), **kw)


def test_probabilities_follow_the_paper():
    p = replacement_probs(COUNTS, 1 / 3)
    assert p[0] == 0
    for c, n in enumerate(COUNTS):
        assert p[c] == pytest.approx((1 / 3) * (1 - n / 5000), abs=1e-15)
    # docs/method.md, section 1: "about 25% of a balanced batch is noise" at delta = 1/3 on CIFAR-10-LT (ratio 100).
    assert 0.24 < _open().expected_noise_fraction < 0.26


def test_replacement_frequencies_binomial():
    """Every class's replacement count over many draws passes an exact binomial test."""
    open_ = _open()
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(10).repeat(64)  # a class-balanced batch of 640
    images = torch.zeros(len(labels), 3, 2, 2)
    replaced = torch.zeros(10, dtype=torch.long)
    trials = 400
    for _ in range(trials):
        _, out_labels, k = open_(images, labels, generator=gen)
        replaced += torch.bincount(out_labels[len(labels) - k:], minlength=10)
    n_per_class = 64 * trials
    assert replaced[0] == 0  # the majority class is never replaced
    for c in range(1, 10):
        p = float(open_.probs[c])
        result = stats.binomtest(int(replaced[c]), n_per_class, p)
        # Strict: a true p passes with probability 1 - 1e-4 per class; with 25,600 draws per
        # class, an error of 5% in p (e.g. 0.30 instead of 0.32) gives a p-value far below that.
        assert result.pvalue > 1e-4, (c, int(replaced[c]) / n_per_class, p)


def test_binomial_test_has_power():
    """The same test rejects a transform whose probabilities are 5% off."""
    wrong = _open(delta=1 / 3 * 0.95)
    gen = torch.Generator().manual_seed(0)
    labels = torch.full((25_600,), 9)
    _, out, k = wrong(torch.zeros(len(labels), 3, 1, 1), labels, generator=gen)
    assert stats.binomtest(k, len(labels), float(_open().probs[9])).pvalue < 1e-4


def test_natural_rows_first_labels_follow_rows():
    gen = torch.Generator().manual_seed(3)
    b = 256
    labels = torch.randint(0, 10, (b,), generator=gen)
    # Each image carries its own index so rows can be traced through the reordering.
    images = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 3, 4, 4).clone() + 10
    out, out_labels, k = _open(delta=1.0)(images, labels, generator=gen)
    assert 0 < k < b
    natural = out[: b - k, 0, 0, 0].long() - 10
    assert torch.all(natural[1:] > natural[:-1])  # natural rows keep their order
    assert torch.equal(out_labels[: b - k], labels[natural])
    kept = set(natural.tolist())
    replaced = [i for i in range(b) if i not in kept]
    assert len(replaced) == k
    assert torch.equal(out_labels[b - k:], labels[replaced])  # noise keeps the label it replaced
    assert out[b - k:].min() >= 0 and out[b - k:].max() <= 1  # pixel-space noise
    assert (labels[replaced] != 0).all()


def test_noise_normalized_like_inputs():
    open_ = OPeN(COUNTS, delta=1.0, normalize=(MEAN, STD))
    labels = torch.full((4096,), 9)
    out, _, k = open_(torch.zeros(4096, 3, 8, 8), labels, generator=torch.Generator().manual_seed(0))
    noise = out[4096 - k:]
    assert k > 3000
    # Normalized with the same statistics it was drawn from: about zero mean, std below 1
    # (clipping to [0, 1] trims the tails).
    assert noise.mean(dim=(0, 2, 3)).abs().max() < 0.05
    assert 0.8 < float(noise.std()) < 1.0


def test_reproducible_and_dtype_layout_preserved():
    labels = torch.randint(0, 10, (64,), generator=torch.Generator().manual_seed(0))
    images = torch.rand(64, 3, 8, 8).to(memory_format=torch.channels_last)
    a = _open()(images, labels, generator=torch.Generator().manual_seed(5))
    b = _open()(images, labels, generator=torch.Generator().manual_seed(5))
    assert a[2] == b[2] and torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert a[0].is_contiguous(memory_format=torch.channels_last)
    half = _open()(images.bfloat16(), labels, generator=torch.Generator().manual_seed(5))
    assert half[0].dtype == torch.bfloat16 and half[2] == a[2]


def _reference_open(open_, images, labels, gen):
    """OPeN written the plain way (gather every row, draw noise apart, normalize, overwrite)."""
    u = torch.rand(images.shape[0], generator=gen)
    replace = u < open_.probs.float()[labels]
    k = int(replace.sum())
    order = torch.sort(replace.to(torch.uint8), stable=True).indices
    out = images[order].clone()
    noise = open_.noise(k, images.shape[1:], dtype=torch.float32, generator=gen)
    if open_._norm is not None:
        noise = (noise - open_._norm[0].view(1, -1, 1, 1)) / open_._norm[1].view(1, -1, 1, 1)
    out[images.shape[0] - k:] = noise.to(images.dtype)
    return out, labels[order], k


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "custom_noise"])
def test_output_equals_the_plain_algorithm(layout):
    # The transform gathers only natural rows and draws noise into its rows in place; it must
    # give what the straightforward version gives, value for value, for every kind of input.
    labels = torch.randint(0, 10, (96,), generator=torch.Generator().manual_seed(1))
    images = torch.randn(96, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    noise = PureNoise(MEAN, STD)
    if layout == "channels_last":
        images = images.to(memory_format=torch.channels_last)
    if layout == "custom_noise":
        noise = lambda n, size, **kw: PureNoise(MEAN, STD)(n, size, **kw)  # noqa: E731
    open_ = OPeN(COUNTS, delta=1.0, noise=noise, normalize=(MEAN, STD))
    out, out_labels, k = open_(images, labels, generator=torch.Generator().manual_seed(9))
    ref, ref_labels, ref_k = _reference_open(open_, images, labels, torch.Generator().manual_seed(9))
    assert k == ref_k > 0
    assert torch.equal(out_labels, ref_labels)
    # Dividing by std and multiplying by 1/std differ in the last bit: compare at float precision.
    torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-6)
    assert torch.equal(out[: 96 - k], ref[: 96 - k])  # natural rows are copied exactly


def test_no_replacement_returns_inputs():
    images, labels = torch.rand(8, 3, 4, 4), torch.zeros(8, dtype=torch.long)
    out, out_labels, k = _open()(images, labels)
    assert k == 0 and out is images and out_labels is labels
    out, _, k = _open(delta=0.0)(images, torch.arange(8))
    assert k == 0 and out is images


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(class_counts=COUNTS, delta=1.5), r"delta must be in \[0, 1\]"),
        (dict(class_counts=COUNTS, delta=-0.1), r"delta must be in \[0, 1\]"),
        (dict(class_counts=[10, 0, 5]), r"class\(es\) \[1\] have count 0"),
        (dict(class_counts=[]), "empty"),
        (dict(class_counts=[10, 2.5]), "whole numbers"),
        (dict(class_counts=COUNTS), "needs a noise generator"),
    ],
)
def test_constructor_validates(kwargs, match):
    with pytest.raises(ValueError, match=match):
        OPeN(**kwargs)


def test_call_validates():
    open_ = _open()
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 9\].*found label 10"):
        open_(torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 10, 2]))
    with pytest.raises(ValueError, match="found label -1"):
        open_(torch.rand(4, 3, 2, 2), torch.tensor([0, -1, 1, 2]))
    with pytest.raises(ValueError, match="batch size"):
        open_(torch.rand(4, 3, 2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="float images"):
        open_(torch.zeros(4, 3, 2, 2, dtype=torch.uint8), torch.tensor([0, 1, 1, 2]))
    with pytest.raises(ValueError, match="1 channel.*makes 3"):
        open_(torch.rand(4, 1, 2, 2), torch.tensor([0, 1, 1, 2]))
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        open_(torch.rand(3, 2, 2), torch.tensor([0, 1, 1]))
