"""CIFAR ResNets as in LDAM-DRW: sizes, option-A shortcuts, the cosine classifier."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from purenoise.errors import ModelError
from purenoise.models import CifarResNet, NormedLinear, count_batchnorm, create_model
from purenoise.models.layers import PadShortcut


@pytest.mark.parametrize(
    "name, millions, tol",
    # He et al. (2016), Table 6: 0.27M, 0.46M, 0.66M, 0.85M, 1.7M (to the digits printed).
    [("resnet20", 0.27, 0.005), ("resnet32", 0.46, 0.005), ("resnet44", 0.66, 0.005),
     ("resnet56", 0.85, 0.005), ("resnet110", 1.7, 0.05)],
)
def test_published_parameter_counts(name, millions, tol):
    m = create_model(name, 10)
    assert sum(p.numel() for p in m.parameters()) / 1e6 == pytest.approx(millions, abs=tol)


def test_resnet32_structure():
    m = create_model("resnet32", 100)
    n = 5
    assert count_batchnorm(m) == 6 * n + 1
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    assert len(convs) == 6 * n + 1  # option A shortcuts have no parameters
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    assert isinstance(m.fc, nn.Linear) and m.fc.in_features == 64


def test_option_a_shortcut():
    x = torch.randn(2, 16, 8, 8)
    out = PadShortcut(8)(x)
    assert out.shape == (2, 32, 4, 4)
    assert torch.equal(out[:, 8:24], x[:, :, ::2, ::2])
    assert torch.all(out[:, :8] == 0) and torch.all(out[:, 24:] == 0)


def test_normed_linear_is_cosine_similarity():
    layer = NormedLinear(5, 3)
    # LDAM-DRW's init: every class vector (a column) has unit norm.
    assert layer.weight.detach().norm(dim=0).tolist() == pytest.approx([1.0] * 3, abs=1e-4)
    x = torch.randn(4, 5)
    expected = torch.stack([
        torch.stack([F.cosine_similarity(x[i], layer.weight[:, j], dim=0) for j in range(3)])
        for i in range(4)
    ])
    assert torch.allclose(layer(x), expected, atol=1e-6)


def test_use_norm_for_ldam():
    m = create_model("resnet32", 10, use_norm=True)
    assert isinstance(m.fc, NormedLinear)
    out = m(torch.randn(2, 3, 32, 32))
    assert out.abs().max() <= 1 + 1e-6
    out.sum().backward()
    assert m.fc.weight.grad is not None


def test_one_channel_input():
    m = create_model("resnet20", 10, in_chans=1)
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_kaiming_fan_in_init():
    torch.manual_seed(0)
    conv = create_model("resnet32", 10).layer3[0].conv2  # 64 x 64 x 3 x 3
    assert conv.weight.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.05)


@pytest.mark.parametrize("depth", [31, 33, 2])
def test_bad_depth(depth):
    with pytest.raises(ModelError, match="6n \\+ 2"):
        CifarResNet(depth)
