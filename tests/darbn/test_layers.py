"""DARBatchNorm2d and AuxBatchNorm2d (``purenoise.darbn.layers``), one layer at a time.

Each DAR-BN layer is checked against the paper's appendix algorithm, written here with boolean
masks (:func:`reference_darbn`): outputs, gradients and running statistics, in both gradient modes,
both memory layouts and under bfloat16 autocast, on the fused path and on the view path.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import purenoise.darbn as darbn_mod
from purenoise import AuxBatchNorm2d, DARBatchNorm2d, convert_darbn, noise_routing, revert_darbn

from tests.helpers.darbn import has_nonzero_grad


def reference_darbn(bn: nn.BatchNorm2d, x: torch.Tensor, noise_mask: torch.Tensor, noise_grad: str):
    """The appendix algorithm: gather natural and noise rows by mask, normalize, scatter back."""
    out = torch.zeros_like(x)
    nat = ~noise_mask
    if nat.any():
        y_nat = F.batch_norm(x[nat], bn.running_mean, bn.running_var, bn.weight, bn.bias, True,
                             bn.momentum, bn.eps)
        out = out.index_put((nat,), y_nat)
    if noise_mask.any():
        with torch.set_grad_enabled(noise_grad == "features"):
            y_noise = F.batch_norm(x[noise_mask], None, None, bn.weight.detach(), bn.bias.detach(),
                                   True, 0.0, bn.eps)
        out = out.index_put((noise_mask,), y_noise)
    return out


def _grad_or_zero(t: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(t) if t.grad is None else t.grad


def _pair(channels: int, noise_grad: str, seed: int):
    gen = torch.Generator().manual_seed(seed)
    bn = DARBatchNorm2d(channels, noise_grad=noise_grad)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(channels, generator=gen) + 0.5)
        bn.bias.copy_(torch.rand(channels, generator=gen) - 0.5)
        bn.running_mean.copy_(torch.randn(channels, generator=gen))
        bn.running_var.copy_(torch.rand(channels, generator=gen) + 0.5)
    ref = nn.BatchNorm2d(channels)
    ref.load_state_dict(bn.state_dict())
    return bn, ref


def _compare(noise_grad, n_noise, batch=12, channels=6, size=5, seed=0, channels_last=False,
             autocast=False, fast=True, monkeypatch=None):
    if not fast:
        monkeypatch.setattr(DARBatchNorm2d, "_fast_path_ok", lambda self, x: False)
    gen = torch.Generator().manual_seed(seed)
    bn, ref = _pair(channels, noise_grad, seed)
    # Natural and noise rows come from different distributions, as in training.
    x = torch.randn(batch, channels, size, size, generator=gen) * 2 + 1
    x[batch - n_noise:] = torch.rand(n_noise, channels, size, size, generator=gen) * 5 - 3
    # The reference sees the rows in a random order with a boolean mask; DAR-BN sees them sorted.
    perm = torch.randperm(batch, generator=gen)
    mask = torch.zeros(batch, dtype=torch.bool)
    mask[batch - n_noise:] = True
    x_ref, mask_ref = x[perm], mask[perm]
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        x_ref = x_ref.contiguous(memory_format=torch.channels_last)
    x = x.clone().requires_grad_()
    x_ref = x_ref.clone().requires_grad_()
    grad_out = torch.randn(batch, channels, size, size, generator=gen)

    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else torch.autocast("cpu", enabled=False)
    with ctx:
        # Under autocast the layer sees the bfloat16 output of a convolution, as in a network.
        inp = x.to(torch.bfloat16) if autocast else x
        inp_ref = x_ref.to(torch.bfloat16) if autocast else x_ref
        with noise_routing(bn, n_noise):
            y = bn(inp)
        y_ref = reference_darbn(ref, inp_ref, mask_ref, noise_grad)
    assert y.dtype == y_ref.dtype
    if channels_last:
        assert y.is_contiguous(memory_format=torch.channels_last)
    if y.requires_grad:  # all-noise batches in "classifier" mode carry no gradient at all
        y.float().backward(grad_out)
    if y_ref.requires_grad:
        y_ref.float().backward(grad_out[perm])

    tol = dict(atol=2e-2, rtol=2e-2) if autocast else dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(y.float()[perm], y_ref.float(), **tol)
    torch.testing.assert_close(_grad_or_zero(x)[perm], _grad_or_zero(x_ref), **tol)
    torch.testing.assert_close(_grad_or_zero(bn.weight), _grad_or_zero(ref.weight), **tol)
    torch.testing.assert_close(_grad_or_zero(bn.bias), _grad_or_zero(ref.bias), **tol)
    torch.testing.assert_close(bn.running_mean, ref.running_mean, **tol)
    torch.testing.assert_close(bn.running_var, ref.running_var, **tol)
    expected_tracked = 1 if n_noise < batch else 0
    assert int(bn.num_batches_tracked) == expected_tracked
    return x


SPLITS = [0, 1, 5, 11, 12]  # none, one, some, all but one natural row, all rows noise


@pytest.mark.parametrize("fast", [True, False], ids=["fused", "views"])
@pytest.mark.parametrize("noise_grad", ["classifier", "features"])
@pytest.mark.parametrize("n_noise", SPLITS)
def test_matches_reference_float32(noise_grad, n_noise, fast, monkeypatch):
    _compare(noise_grad, n_noise, fast=fast, monkeypatch=monkeypatch)


@pytest.mark.parametrize("fast", [True, False], ids=["fused", "views"])
@pytest.mark.parametrize("noise_grad", ["classifier", "features"])
@pytest.mark.parametrize("n_noise", [0, 3, 12])
def test_matches_reference_channels_last(noise_grad, n_noise, fast, monkeypatch):
    _compare(noise_grad, n_noise, channels_last=True, fast=fast, monkeypatch=monkeypatch)


@pytest.mark.parametrize("noise_grad", ["classifier", "features"])
@pytest.mark.parametrize("n_noise", [1, 5, 11, 12])
def test_input_gradient_assembled_from_both_row_groups(noise_grad, n_noise):
    # The fused backward writes the natural rows' gradient and the noise rows' (zero or their
    # own) into one full buffer, in both memory layouts.
    _compare(noise_grad, n_noise)
    _compare(noise_grad, n_noise, channels_last=True)


@pytest.mark.parametrize("noise_grad", ["classifier", "features"])
@pytest.mark.parametrize("n_noise", [0, 4, 11])
def test_matches_reference_bfloat16_autocast(noise_grad, n_noise):
    _compare(noise_grad, n_noise, autocast=True)
    _compare(noise_grad, n_noise, autocast=True, channels_last=True)


@pytest.mark.parametrize("seed", range(6))
def test_matches_reference_random_splits(seed):
    batch = 16
    n_noise = int(torch.randint(0, batch + 1, (1,), generator=torch.Generator().manual_seed(seed)))
    for mode in ("classifier", "features"):
        _compare(mode, n_noise, batch=batch, channels=4, size=3, seed=seed)


def test_classifier_mode_blocks_noise_gradient():
    x = _compare("classifier", 5)
    assert torch.all(x.grad[-5:] == 0)
    assert torch.any(x.grad[:-5] != 0)


def test_momentum_none_cumulative_average():
    bn, ref = _pair(3, "classifier", 0)
    bn.momentum = ref.momentum = None
    bn.num_batches_tracked.zero_()
    ref.num_batches_tracked.zero_()
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        x = torch.randn(8, 3, 4, 4, generator=gen)
        with noise_routing(bn, 2):
            bn(x)
        ref(x[:6])
    torch.testing.assert_close(bn.running_mean, ref.running_mean)
    torch.testing.assert_close(bn.running_var, ref.running_var)
    assert int(bn.num_batches_tracked) == 3


def test_noise_offset_leaves_running_stats_unchanged():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(16, 8, 6, 6, generator=gen)
    stats = []
    for offset in (0.0, 1000.0):
        bn = DARBatchNorm2d(8)
        x2 = x.clone()
        x2[-4:] += offset
        with noise_routing(bn, 4):
            y = bn(x2)
        stats.append((bn.running_mean.clone(), bn.running_var.clone(), y[:-4].detach()))
    torch.testing.assert_close(stats[0][0], stats[1][0], atol=0, rtol=0)
    torch.testing.assert_close(stats[0][1], stats[1][1], atol=0, rtol=0)
    torch.testing.assert_close(stats[0][2], stats[1][2], atol=0, rtol=0)


def test_eval_and_no_noise_equal_batchnorm():
    torch.manual_seed(0)
    plain = nn.BatchNorm2d(5)
    plain.train()
    for _ in range(3):
        plain(torch.randn(8, 5, 4, 4) * 3 + 2)
    dar = DARBatchNorm2d(5)
    dar.load_state_dict(plain.state_dict())
    x = torch.randn(8, 5, 4, 4)
    plain.eval()
    dar.eval()
    with noise_routing(dar, 3):  # eval ignores routing entirely
        torch.testing.assert_close(dar(x), plain(x), atol=0, rtol=0)
    plain.train()
    dar.train()
    torch.testing.assert_close(dar(x), plain(x), atol=0, rtol=0)
    torch.testing.assert_close(dar.running_mean, plain.running_mean, atol=0, rtol=0)


def test_same_state_dict_keys_as_batchnorm():
    assert DARBatchNorm2d(7).state_dict().keys() == nn.BatchNorm2d(7).state_dict().keys()
    assert isinstance(DARBatchNorm2d(7), nn.BatchNorm2d)


def test_noise_grad_validated():
    with pytest.raises(ValueError, match="noise_grad"):
        DARBatchNorm2d(3, noise_grad="everything")


def test_single_natural_value_per_channel_is_beta_and_not_recorded():
    layer = DARBatchNorm2d(4)
    with pytest.warns(UserWarning, match="one value per channel"), noise_routing(layer, 3):
        y = layer(torch.randn(4, 4, 1, 1))  # BatchNorm refuses it; DAR-BN treats it as a lone noise value
    torch.testing.assert_close(y[:1].flatten(), layer.bias.detach(), atol=1e-4, rtol=0)
    assert torch.equal(layer.running_var, torch.ones(4)) and int(layer.num_batches_tracked) == 0
    with noise_routing(layer, 1):  # two natural rows are fine, and so is one noise row
        y = layer(torch.randn(3, 4, 1, 1))
    torch.testing.assert_close(y[2:].flatten(), layer.bias.detach())  # no variance: just beta


@pytest.mark.parametrize("bn_mode", ["darbn", "aux"])
@pytest.mark.parametrize("noise_grad", ["classifier", "features"])
def test_single_noise_value_per_channel_is_beta(bn_mode, noise_grad):
    layer = convert_darbn(nn.BatchNorm2d(4), bn_mode=bn_mode, noise_grad=noise_grad)
    with torch.no_grad():
        layer.bias.copy_(torch.tensor([0.1, -0.2, 0.3, 0.4]))
        if bn_mode == "aux":
            layer.aux_bn.bias.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    beta = layer.aux_bn.bias if bn_mode == "aux" else layer.bias
    state = copy.deepcopy(layer.aux_bn.state_dict()) if bn_mode == "aux" else None
    for n_nat in (0, 3):  # an all-noise batch of one row, and one noise row after natural rows
        x = torch.randn(n_nat + 1, 4, 1, 1, requires_grad=True)
        with noise_routing(layer, 1):
            y = layer(x)
        # 0 up to the rounding of the mean, which 1/sqrt(eps) magnifies.
        torch.testing.assert_close(y[-1].flatten(), beta.detach(), atol=1e-4, rtol=0)
        y.sum().backward()
    if bn_mode == "aux":  # one value has no variance to record
        for k, v in layer.aux_bn.state_dict().items():
            assert torch.equal(v, state[k]), k


@pytest.mark.parametrize("fast", [True, False], ids=["fused", "views"])
def test_all_noise_batch_gives_earlier_layers_zero_gradients(fast, monkeypatch):
    # In one pass, every parameter takes part in backward whatever the split (DDP needs that on
    # a process whose share of the batch is all noise); noise rows still train only the classifier.
    if not fast:
        monkeypatch.setattr(DARBatchNorm2d, "_fast_path_ok", lambda self, x: False)
    torch.manual_seed(0)
    model = convert_darbn(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                                        nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(64, 3)))
    model.train()
    x = torch.rand(5, 3, 8, 8)
    with noise_routing(model, 5):
        y = model(x)
    F.cross_entropy(y, torch.tensor([0, 1, 2, 0, 1])).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert has_nonzero_grad(p) == name.startswith("6."), name
    assert all(int(m.num_batches_tracked) == 0 for m in darbn_mod.routed_layers(model))
    # The values are those of the path without gradients.
    with torch.no_grad(), noise_routing(model, 5):
        torch.testing.assert_close(model(x), y.detach(), atol=0, rtol=0)


def test_aux_bn_routes_noise_to_its_own_layer():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 3))
    convert_darbn(model, bn_mode="aux", noise_grad="features")
    aux = model[1]
    assert isinstance(aux, AuxBatchNorm2d)
    assert set(model.state_dict()) >= {"1.aux_bn.weight", "1.aux_bn.running_mean"}
    x = torch.randn(8, 3, 8, 8)
    x_noise_shifted = x.clone()
    x_noise_shifted[-3:] += 50
    model.train()
    with noise_routing(model, 3):
        model(x_noise_shifted)[-3:].sum().backward()
    assert aux.aux_bn.weight.grad.abs().sum() > 0  # noise trains its own affine
    assert aux.weight.grad is None or aux.weight.grad.abs().sum() == 0
    assert model[0].weight.grad.abs().sum() > 0  # "features": gradient reaches the conv
    main_mean = aux.running_mean.clone()
    plain = nn.BatchNorm2d(4)
    conv_out = model[0](x[:5]).detach()
    # Natural statistics match a BN that saw the natural rows alone.
    plain.running_mean.copy_(torch.zeros(4))
    plain(conv_out)
    torch.testing.assert_close(main_mean, plain.running_mean, atol=1e-6, rtol=1e-5)
    revert_darbn(model)
    assert "1.aux_bn.weight" not in model.state_dict()


def test_aux_bn_classifier_mode_stops_gradient_at_input():
    torch.manual_seed(0)
    model = convert_darbn(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), bn_mode="aux")
    model.train()
    with noise_routing(model, 2):
        model(torch.randn(6, 3, 6, 6))[-2:].square().sum().backward()
    assert model[0].weight.grad is None or model[0].weight.grad.abs().sum() == 0
    assert model[1].aux_bn.weight.grad.abs().sum() > 0
