"""Pre-activation WideResNet: structure, published sizes, initialization, dropout."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from purenoise.errors import ModelError
from purenoise.models import NormedLinear, WideResNet, count_batchnorm, create_model, wrn


@pytest.mark.parametrize(
    "name, millions",
    # Zagoruyko & Komodakis (2016), Table 1 / 4 and their code's counts for 10 classes.
    [("wrn28_10", 36.5), ("wrn16_8", 11.0), ("wrn16_4", 2.7), ("wrn28_2", 1.5)],
)
def test_published_parameter_counts(name, millions):
    m = create_model(name, 10)
    assert sum(p.numel() for p in m.parameters()) / 1e6 == pytest.approx(millions, abs=0.05)


def test_structure_depth_28():
    m = wrn(28, 2, num_classes=10)
    n = (28 - 4) // 6
    assert count_batchnorm(m) == 6 * n + 1  # two per block, plus the final one
    convs = [c for c in m.modules() if isinstance(c, nn.Conv2d)]
    assert len(convs) == 1 + 6 * n + 3  # stem, 2 per block, a projection per group
    assert [g[0].conv1.out_channels for g in (m.block1, m.block2, m.block3)] == [32, 64, 128]
    assert [g[0].conv1.stride for g in (m.block1, m.block2, m.block3)] == [(1, 1), (2, 2), (2, 2)]
    assert m.fc.in_features == m.num_features == 128


def test_pre_activation_block_computation():
    """A block computes x + conv2(relu(bn2(conv1(relu(bn1(x)))))) (identity shortcut)."""
    m = wrn(16, 1, num_classes=3)  # width 1: the first block of group 1 is 16 -> 16
    block = m.block1[0]
    assert block.equal_in_out
    for bn in (block.bn1, block.bn2):
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.5, 2.0)
        bn.weight.data.uniform_(0.5, 1.5)
        bn.bias.data.normal_()
    block.eval()
    x = torch.randn(2, 16, 8, 8)
    expected = x + block.conv2(F.relu(block.bn2(block.conv1(F.relu(block.bn1(x))))))
    assert torch.allclose(block(x), expected, atol=1e-6)


def test_projection_shortcut_uses_preactivated_input():
    m = wrn(16, 2, num_classes=3)
    block = m.block2[0]
    assert not block.equal_in_out
    block.eval()
    x = torch.randn(2, 32, 8, 8)
    act = F.relu(block.bn1(x))
    expected = block.shortcut(act) + block.conv2(F.relu(block.bn2(block.conv1(act))))
    assert torch.allclose(block(x), expected, atol=1e-6)


def test_initialization():
    torch.manual_seed(0)
    m = create_model("wrn16_4", 10)
    conv = m.block3[0].conv2  # 256 x 256 x 3 x 3
    fan_out = conv.out_channels * 9
    assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.03)
    for bn in (mod for mod in m.modules() if isinstance(mod, nn.BatchNorm2d)):
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)
    assert torch.all(m.fc.bias == 0)


def test_dropout_defaults_and_effect():
    assert all(b.dropout == 0.3 for g in (lambda m: (m.block1, m.block2, m.block3))(
        create_model("wrn28_10", 10)) for b in g)
    assert create_model("wrn16_4", 10).block1[0].dropout == 0.0
    x = torch.randn(4, 3, 16, 16)
    torch.manual_seed(0)
    plain = create_model("wrn16_4", 10)
    assert torch.equal(plain(x), plain(x))  # train mode, no dropout: deterministic
    torch.manual_seed(0)
    dropped = create_model("wrn16_4", 10, dropout=0.3)
    assert not torch.allclose(dropped(x), dropped(x))
    dropped.eval()
    assert torch.equal(dropped(x), dropped(x))


@pytest.mark.parametrize("shape, in_chans", [((2, 3, 32, 32), 3), ((2, 1, 28, 28), 1)])
def test_forward_shapes(shape, in_chans):
    m = create_model("wrn16_4", 7, in_chans=in_chans)
    assert m(torch.randn(shape)).shape == (2, 7)
    assert m.forward_features(torch.randn(shape)).shape == (2, 256)


def test_general_wrn_by_name_and_function():
    m = create_model("wrn", 5, depth=10, width=3, dropout=0.1)
    assert isinstance(m, WideResNet) and (m.depth, m.width) == (10, 3)
    assert m.block1[0].dropout == 0.1
    assert wrn(40, 1).depth == 40


@pytest.mark.parametrize("depth", [27, 30, 4, 0, "28"])
def test_bad_depth_is_a_clear_error(depth):
    with pytest.raises(ModelError, match=r"\(depth - 4\) % 6 == 0"):
        wrn(depth, 2)


def test_bad_width_and_dropout():
    with pytest.raises(ModelError, match="width"):
        wrn(16, 0)
    with pytest.raises(ModelError, match="dropout"):
        wrn(16, 2, dropout=1.0)


def test_use_norm_gives_cosine_logits():
    m = create_model("wrn16_4", 10, use_norm=True)
    assert isinstance(m.fc, NormedLinear)
    out = m(torch.randn(3, 3, 16, 16))
    assert out.abs().max() <= 1 + 1e-6
