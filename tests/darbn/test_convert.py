"""convert_darbn and revert_darbn (``purenoise.darbn.convert``) on whole networks.

Conversion keeps parameters and state-dict keys, reverts exactly, leaves eval outputs unchanged,
and sets the gradient mode every routed layer follows: in ``"classifier"`` mode noise rows train
only the classifier, in ``"features"`` mode the convolutions too, never the affine parameters.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import purenoise.darbn as darbn_mod
from purenoise import DARBatchNorm2d, convert_darbn, noise_routing, revert_darbn
from purenoise.errors import ModelError

from tests.helpers.darbn import has_nonzero_grad, seeded_resnet18


def test_convert_revert_roundtrip_state_dict_exact():
    model = seeded_resnet18()
    model.train()
    model(torch.randn(4, 3, 32, 32))  # non-trivial running stats
    before = copy.deepcopy(model.state_dict())
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    params = {id(p) for p in model.parameters()}
    convert_darbn(model)
    layers = [m for m in model.modules() if isinstance(m, DARBatchNorm2d)]
    assert len(layers) == n_bn
    assert {id(p) for p in model.parameters()} == params  # optimizers keep working
    assert model.state_dict().keys() == before.keys()
    revert_darbn(model)
    assert not any(isinstance(m, DARBatchNorm2d) for m in model.modules())
    assert all(type(m) is nn.BatchNorm2d for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    after = model.state_dict()
    assert after.keys() == before.keys()
    for k in before:
        assert torch.equal(before[k], after[k]), k


def test_whole_network_eval_equals_original():
    model = seeded_resnet18()
    model.train()
    model(torch.randn(4, 3, 32, 32))
    model.eval()
    x = torch.randn(3, 3, 32, 32)
    expected = model(x)
    convert_darbn(model).eval()
    torch.testing.assert_close(model(x), expected, atol=0, rtol=0)


def test_bn_mode_validated():
    with pytest.raises(ValueError, match="bn_mode"):
        convert_darbn(nn.BatchNorm2d(3), bn_mode="fancy")


def test_convert_switches_modes_and_standard_reverts():
    model = convert_darbn(seeded_resnet18(), noise_grad="features")
    assert all(m.noise_grad == "features" for m in darbn_mod.routed_layers(model))
    convert_darbn(model, noise_grad="classifier")
    assert all(m.noise_grad == "classifier" for m in darbn_mod.routed_layers(model))
    convert_darbn(model, bn_mode="standard")
    assert darbn_mod.routed_layers(model) == []


def test_unconvertible_subclass_is_named():
    class ScaledBN(nn.BatchNorm2d):
        def forward(self, x):
            return 2 * super().forward(x)

    model = nn.Sequential(nn.Conv2d(3, 4, 3), ScaledBN(4))
    with pytest.raises(ModelError, match=r"1 \(.*ScaledBN\)"):
        convert_darbn(model)


def test_other_norm_layers_warn():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(5),
                          nn.BatchNorm1d(5))
    with pytest.warns(UserWarning, match="BatchNorm2d only"):
        convert_darbn(model)


def test_timm_batchnorm_act_keeps_activation():
    timm = pytest.importorskip("timm")  # timm is in the dev extra; this guards plain installs
    from timm.layers import BatchNormAct2d

    torch.manual_seed(0)
    layer = BatchNormAct2d(6, act_layer=nn.ReLU)
    plain = copy.deepcopy(layer)
    convert_darbn(layer)
    assert isinstance(layer, DARBatchNorm2d) and isinstance(layer, BatchNormAct2d)
    x = torch.randn(10, 6, 4, 4)
    with noise_routing(layer, 3):
        y = layer(x)
    assert (y >= 0).all()  # the activation still runs on the routed path
    torch.testing.assert_close(y[:7], plain(x[:7]))
    revert_darbn(layer)
    assert type(layer) is BatchNormAct2d
    model = timm.create_model("resnet10t", num_classes=4)
    convert_darbn(model)
    n = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert len(darbn_mod.routed_layers(model)) == n > 0


def _noise_only_grads(noise_grad: str):
    model = convert_darbn(seeded_resnet18(), noise_grad=noise_grad)
    model.train()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(8, 3, 32, 32, generator=gen)
    x[-3:] = torch.rand(3, 3, 32, 32, generator=gen)
    with noise_routing(model, 3):
        logits = model(x)
    F.cross_entropy(logits[-3:], torch.tensor([1, 2, 3])).backward()
    return model


def test_classifier_mode_noise_trains_only_the_final_layer():
    model = _noise_only_grads("classifier")
    for name, p in model.named_parameters():
        assert has_nonzero_grad(p) == name.startswith("fc."), name


def test_features_mode_noise_trains_convs_but_not_affine():
    model = _noise_only_grads("features")
    for name, p in model.named_parameters():
        module = model.get_submodule(name.rsplit(".", 1)[0])
        if isinstance(module, nn.BatchNorm2d):
            assert not has_nonzero_grad(p), name
        else:
            assert has_nonzero_grad(p), name
