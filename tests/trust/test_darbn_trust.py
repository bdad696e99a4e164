"""DAR-BN as a drop-in: degenerate batch groups, second-order gradients, float64 sync layers.

OPeN replaces minority rows by noise, so a small batch can keep a single natural row: at a 1x1
feature map that is one value per channel, which BatchNorm cannot normalize. DAR-BN layers treat
such a group as they treat a lone noise value (normalized with its own statistics it comes out as
beta), eager and compiled alike, and leave the running statistics as they are; plain BatchNorm
layers get a clear error naming batch_size.
"""
from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from purenoise import convert_darbn, noise_routing, routed_forward
from purenoise.darbn import AuxBatchNorm2d, DARBatchNorm2d, convert_sync_darbn
from purenoise.errors import ConfigError


def _layer(cls=DARBatchNorm2d, dtype=torch.float32, **kwargs) -> nn.BatchNorm2d:
    """A layer with distinct gamma, beta and running statistics (not the identity's 0 and 1)."""
    layer = cls(3, dtype=dtype, **kwargs)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([0.5, 1.0, 1.5]))
        layer.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
        layer.running_mean.copy_(torch.tensor([0.3, -0.1, 0.2]))
        layer.running_var.copy_(torch.tensor([2.0, 0.5, 1.5]))
    return layer


def _is_beta(layer: nn.BatchNorm2d, y: torch.Tensor) -> None:
    """``y`` (rows of one value per channel) is beta: 0 up to the rounding 1/sqrt(eps) magnifies."""
    torch.testing.assert_close(y, layer.bias.detach().view(1, -1, 1, 1).expand_as(y), atol=1e-4, rtol=0)


@pytest.mark.parametrize("cls", [DARBatchNorm2d, AuxBatchNorm2d], ids=["darbn", "aux"])
def test_one_natural_value_per_channel_is_beta_and_leaves_the_statistics(cls):
    layer = _layer(cls)
    before = copy.deepcopy(layer.state_dict())
    x = torch.randn(4, 3, 1, 1, requires_grad=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(2):  # warned once per layer, not once per batch
            with noise_routing(layer, 3):
                y = layer(x)
    assert [str(w.message) for w in caught if "one value per channel" in str(w.message)] != []
    assert len([w for w in caught if "running statistics" in str(w.message)]) == 1
    _is_beta(layer, y[:1])
    y.sum().backward()  # beta still learns from the natural row
    assert torch.equal(layer.bias.grad, torch.ones(3)) and torch.isfinite(x.grad).all()
    for k, v in layer.state_dict().items():  # natural running statistics and count unchanged
        assert k.startswith("aux_bn.") or torch.equal(v, before[k]), k


def test_training_batch_of_one_row_at_1x1_without_noise():
    layer = _layer()
    x = torch.randn(1, 3, 1, 1)
    with pytest.warns(UserWarning, match="one value per channel"):
        y = layer(x)  # nn.BatchNorm2d raises "Expected more than 1 value per channel"
    _is_beta(layer, y)
    assert int(layer.num_batches_tracked) == 0


def test_resnet18_batch_of_four_with_one_natural_row_trains():
    from purenoise.engine.step import train_step
    from purenoise.models import create_model

    torch.manual_seed(0)
    model = convert_darbn(create_model("resnet18", 4)).train()  # 1x1 maps in its last stages at 32x32
    running = {k: v.clone() for k, v in model.state_dict().items() if "running_var" in k}
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    images, labels = torch.randn(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = train_step(model, images, labels, criterion=F.cross_entropy, optimizer=opt,
                         noise=lambda im, lab, generator=None: (im, lab, 3))
    assert torch.isfinite(out.loss) and out.n_noise == 3
    moved = [k for k, v in model.state_dict().items() if k in running and not torch.equal(v, running[k])]
    assert "bn1.running_var" in moved  # 16x16 maps: one row is many values, statistics update
    assert "layer4.1.bn2.running_var" not in moved  # 1x1: the lone row leaves them as they were
    assert all(torch.isfinite(v).all() and (v > 0).all() for k, v in model.state_dict().items() if k in running)


def test_compiled_layer_handles_a_lone_natural_row_as_eager_does():
    dynamo = pytest.importorskip("torch._dynamo")
    dynamo.reset()
    eager = _layer()
    compiled_layer = copy.deepcopy(eager)
    compiled = torch.compile(compiled_layer, backend="eager")
    x = torch.randn(6, 3, 1, 1)
    outs = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for model in (eager, compiled):
            with noise_routing(model, 5) if model is eager else noise_routing(compiled_layer, 5):
                outs.append(model(x))
    torch.testing.assert_close(outs[1], outs[0], atol=1e-6, rtol=1e-6)
    for a, b in zip(eager.state_dict().values(), compiled_layer.state_dict().values()):
        assert torch.equal(a, b)  # no zero variance in running_var under compile
    assert torch.equal(compiled_layer.running_var, torch.tensor([2.0, 0.5, 1.5]))


def _plain_bn_net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1), nn.BatchNorm2d(4),
                         nn.Flatten(), nn.Linear(4, 2)).train()


def test_plain_batchnorm_given_one_value_per_channel_in_a_step_is_a_config_error():
    from purenoise.engine.step import train_step

    model = _plain_bn_net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ConfigError, match="'batch_size'.*2 or more"):
        train_step(model, torch.randn(1, 3, 5, 5), torch.tensor([0]), criterion=F.cross_entropy, optimizer=opt)


def test_batch_size_one_with_plain_batchnorm_is_refused_at_set_up():
    from purenoise.engine.step import check_batch_size

    model = _plain_bn_net()
    with pytest.raises(ConfigError, match=r"'batch_size' is 1.*\(1, 3\)"):
        check_batch_size(model, 1)
    check_batch_size(model, 2)
    check_batch_size(convert_darbn(model), 1)  # DAR-BN layers handle it
    check_batch_size(convert_darbn(model, bn_mode="aux"), 1)  # their auxiliary branches too


@pytest.mark.parametrize("noise_grad", ["classifier", "features"])
@pytest.mark.parametrize("n_nat", [0, 3])
def test_fused_layer_is_twice_differentiable(noise_grad, n_nat):
    from purenoise.darbn.functional import _DARBatchNormFn

    gen = torch.Generator().manual_seed(n_nat)
    x = torch.randn(5, 2, 2, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    # Noise rows use gamma's value but give it no gradient, also in second order: where their
    # input gradient (which gamma scales) is kept ("features"), gamma and beta are constants here.
    constant = noise_grad == "features"
    w = torch.tensor([0.7, 1.3], dtype=torch.float64, requires_grad=not constant)
    b = torch.tensor([0.2, -0.1], dtype=torch.float64, requires_grad=not constant)
    fn = lambda x, w, b: _DARBatchNormFn.apply(x, w, b, None, None, n_nat, 0.1, 1e-5,  # noqa: E731
                                               noise_grad == "features")
    assert torch.autograd.gradgradcheck(fn, (x, w, b))


@pytest.mark.parametrize("noise_grad", ["classifier", "features"])
def test_gradient_penalty_through_darbn_equals_the_reference_path(noise_grad, monkeypatch):
    def penalized_grads(fast: bool):
        if not fast:
            monkeypatch.setattr(DARBatchNorm2d, "_fast_path_ok", lambda self, x: False)
        torch.manual_seed(0)
        model = convert_darbn(nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Tanh(), nn.Flatten(),
                                            nn.Linear(27, 2)), noise_grad=noise_grad).train()
        x = torch.randn(6, 2, 5, 5, generator=torch.Generator().manual_seed(1), requires_grad=True)
        with noise_routing(model, 2):
            loss = model(x).square().sum()
        (gx,) = torch.autograd.grad(loss, x, create_graph=True)
        (loss + gx.square().sum()).backward()
        monkeypatch.undo()
        return [p.grad for p in model.parameters()]

    for fused, ref in zip(penalized_grads(True), penalized_grads(False)):
        torch.testing.assert_close(fused, ref, atol=1e-5, rtol=1e-5)


@pytest.fixture
def world_of_one(tmp_path):
    """A gloo process group of this one process (a file store: no network)."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("bn_mode", ["darbn", "aux", "standard"])
def test_float64_sync_layers_compute_in_float64(world_of_one, bn_mode):
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(7, 3, 4, 4, generator=gen, dtype=torch.float64) * 3 + 2)
    dy = torch.randn(7, 3, 4, 4, generator=gen, dtype=torch.float64)
    ref = _layer(nn.BatchNorm2d, torch.float64)
    if bn_mode != "standard":
        convert_darbn(ref, noise_grad="features", bn_mode=bn_mode)
    synced = convert_sync_darbn(copy.deepcopy(ref))
    results = []
    for layer in (ref, synced):
        xi = x.clone().requires_grad_()
        with noise_routing(layer, 3):
            y = layer(xi)
        y.backward(dy)
        results.append([y, xi.grad] + [p.grad for p in layer.parameters()] + list(layer.buffers()))
    assert type(synced).__name__.startswith("Sync")
    for a, b in zip(*results):
        assert a.dtype == b.dtype == (torch.int64 if a.dtype == torch.int64 else torch.float64)
        torch.testing.assert_close(b, a, atol=1e-12, rtol=1e-12)


def test_sync_layer_lone_natural_row_is_beta_and_leaves_the_statistics(world_of_one):
    layer = convert_sync_darbn(_layer())
    x = torch.randn(3, 3, 1, 1)
    with pytest.warns(UserWarning, match="one value per channel"), noise_routing(layer, 2):
        y = layer(x)
    _is_beta(layer, y[:1])
    assert torch.equal(layer.running_var, torch.tensor([2.0, 0.5, 1.5])) and int(layer.num_batches_tracked) == 0


def test_routed_forward_of_one_natural_row_matches_layer_by_layer():
    # The joint pass is kept for one natural row; its 1x1 layers leave their statistics alone.
    torch.manual_seed(0)
    model = convert_darbn(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.AdaptiveAvgPool2d(1),
                                        nn.BatchNorm2d(4), nn.Flatten())).train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        y = routed_forward(model, torch.randn(3, 3, 5, 5), 2)
    assert torch.isfinite(y).all() and torch.equal(model[3].running_var, torch.ones(4))
    assert int(model[1].num_batches_tracked) == 1 and int(model[3].num_batches_tracked) == 0
