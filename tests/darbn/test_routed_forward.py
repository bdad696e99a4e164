"""Routing (``purenoise.darbn.routing``): noise_routing's context, and routed_forward, whose noise
rows in their own forward pass give what one routed pass gives."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from purenoise import convert_darbn, noise_routing, routed_forward
from purenoise.darbn import routed_layers, split_blockers
from purenoise.models import create_model

from tests.helpers.darbn import seeded_resnet18


def _batch(channels=3, size=16, batch=24, seed=0):
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(batch, channels, size, size, generator=gen)
    images[batch - 7:] = torch.rand(7, channels, size, size, generator=gen) * 4 - 2  # noise rows last
    return images, torch.randint(0, 10, (batch,), generator=gen), 7


def _step(model, images, labels, k, noise_pass):
    calls = []
    hook = model.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    logits = routed_forward(model, images, k, noise_pass=noise_pass)
    hook.remove()
    F.cross_entropy(logits, labels).backward()
    return logits, calls


MODELS = {
    "resnet_small": lambda: create_model("resnet_small", 10, in_chans=3),
    "wrn16_1": lambda: create_model("wrn", 10, depth=16, width=1),  # pre-activation, dropout-free
    "torchvision_resnet18": lambda: torchvision.models.resnet18(num_classes=10),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_split_equals_joint(name):
    torch.manual_seed(0)
    base = convert_darbn(MODELS[name]())
    joint, split = base, copy.deepcopy(base)
    images, labels, k = _batch(size=32 if "torchvision" in name else 16)
    out_j, calls_j = _step(joint, images, labels, k, "joint")
    out_s, calls_s = _step(split, images, labels, k, "auto")
    assert calls_j == [24] and calls_s == [17, 7]  # auto chose two passes: natural, then noise
    torch.testing.assert_close(out_s, out_j, rtol=1e-5, atol=1e-5)
    for (n, p_j), p_s in zip(joint.named_parameters(), split.parameters()):
        assert (p_j.grad is None) == (p_s.grad is None), n
        if p_j.grad is not None:
            torch.testing.assert_close(p_s.grad, p_j.grad, rtol=1e-4, atol=1e-6, msg=n)
    for (n, b_j), b_s in zip(joint.named_buffers(), split.buffers()):
        assert torch.equal(b_s, b_j), n  # running statistics and counts: natural rows only, once


def test_noise_rows_reach_only_the_classifier_in_split_pass():
    torch.manual_seed(0)
    model = convert_darbn(create_model("resnet_small", 10, in_chans=3))
    images, labels, k = _batch()
    logits = routed_forward(model, images, k, noise_pass="split")
    # A loss on noise rows alone trains the classifier and nothing else.
    F.cross_entropy(logits[-k:], labels[-k:]).backward()
    trained = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert trained == {"fc.weight", "fc.bias"}


def _calls(model, k=7, noise_pass="auto"):
    images, _, _ = _batch()
    calls = []
    hook = model.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    routed_forward(model, images, k, noise_pass=noise_pass)
    hook.remove()
    return calls


def _calls_with(model, noise_pass="auto", blockers=None):
    images, _, _ = _batch()
    calls = []
    hook = model.register_forward_pre_hook(lambda m, args: calls.append(args[0].shape[0]))
    routed_forward(model, images, 7, noise_pass=noise_pass, blockers=blockers)
    hook.remove()
    return calls


def test_auto_runs_jointly_where_a_split_would_change_the_result():
    make = lambda: create_model("resnet_small", 10, in_chans=3)  # noqa: E731
    assert split_blockers(convert_darbn(make())) == []
    standard = make()  # bn_mode standard: noise shares the BatchNorm statistics
    features = convert_darbn(make(), noise_grad="features")
    aux = convert_darbn(make(), bn_mode="aux")  # early noise branches: zero gradients vs none
    head = convert_darbn(make())
    head.fc = nn.Sequential(nn.BatchNorm1d(64), nn.Linear(64, 10))  # mixes rows, not routed
    for model, why in [(standard, "no DAR-BN"), (features, "features"), (aux, "auxiliary"), (head, "fc.0")]:
        reasons = split_blockers(model)
        assert any(why in r for r in reasons), reasons
        assert _calls(model) == [24]
        with pytest.raises(ValueError, match="noise_pass='split' would change"):
            _calls(model, noise_pass="split")
    compiled = torch.compile(convert_darbn(make()))  # exact either way (not run here)
    assert split_blockers(compiled) == []

    class LikeCompiled(nn.Module):  # what auto looks at: torch.compile's wrapper keeps _orig_mod
        def __init__(self, m):
            super().__init__()
            self._orig_mod = m

        def forward(self, x):
            return self._orig_mod(x)

    # Blockers worked out once by the caller are used as given (a training loop's per-step path).
    assert _calls(convert_darbn(make()), noise_pass="auto") == [17, 7]
    assert _calls_with(convert_darbn(make()), blockers=["given"]) == [24]
    with pytest.raises(ValueError, match="given"):
        _calls_with(convert_darbn(make()), noise_pass="split", blockers=["given"])

    wrapped = LikeCompiled(convert_darbn(make()))
    assert _calls(wrapped) == [24] and _calls(wrapped, noise_pass="split") == [17, 7]
    # Nothing to split, or a single natural row (left to DAR-BN's own error for 1x1 maps).
    model = convert_darbn(make())
    assert _calls(model, k=0) == [24] and _calls(model, k=23) == [24] and _calls(model, k=22) == [2, 22]
    with pytest.raises(ValueError, match="noise_pass must be one of"):
        _calls(model, noise_pass="twice")


def test_split_needs_a_tensor_output():
    class TupleOut(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten())

        def forward(self, x):
            return self.body(x), x.mean()

    with pytest.raises(TypeError, match="returned tuple, not a tensor"):
        _calls(convert_darbn(TupleOut()), noise_pass="split")


def test_layers_with_running_statistics_block_the_split():
    # Two passes would update the running statistics of an InstanceNorm twice a step.
    def make(**norm):
        model = convert_darbn(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.InstanceNorm2d(4, **norm),
                                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)))
        return model.train()

    tracking = make(track_running_stats=True)
    reasons = split_blockers(tracking)
    assert len(reasons) == 1 and "running statistics" in reasons[0] and ": 2" in reasons[0], reasons
    assert _calls(tracking) == [24]
    with pytest.raises(ValueError, match="running statistics"):
        _calls(tracking, noise_pass="split")
    # The statistics moved once: as far as one pass over the batch moves them.
    images, _, _ = _batch()
    a = make(track_running_stats=True)
    b = copy.deepcopy(a)
    routed_forward(a, images, 7)
    routed_forward(b, images, 7, noise_pass="joint")
    torch.testing.assert_close(a[2].running_mean, b[2].running_mean, atol=0, rtol=0)

    class RunningMean(nn.Module):  # any layer with running_* buffers, not only norm layers
        def __init__(self):
            super().__init__()
            self.register_buffer("running_mean", torch.zeros(4))

        def forward(self, x):
            if self.training:
                self.running_mean.lerp_(x.mean((0, 2, 3)).detach(), 0.1)
            return x

    custom = convert_darbn(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), RunningMean(), nn.Flatten()))
    assert any("2" in r and "running statistics" in r for r in split_blockers(custom))
    # Per-sample normalization without running statistics splits exactly.
    assert split_blockers(make(affine=True)) == []


def test_routing_context_restores_and_validates():
    model = convert_darbn(seeded_resnet18())
    layers = routed_layers(model)
    with pytest.raises(RuntimeError):
        with noise_routing(model, 2):
            assert all(m.n_noise == 2 for m in layers)
            raise RuntimeError("boom")
    assert all(m.n_noise == 0 for m in layers)
    with pytest.raises(ValueError, match=">= 0"):
        with noise_routing(model, -1):
            pass
    with pytest.raises(TypeError):
        with noise_routing(model, 1.5):
            pass
    model.train()
    with pytest.raises(ValueError, match="noise rows but this batch has 4 rows"):
        with noise_routing(model, 9):
            model(torch.randn(4, 3, 32, 32))


def _one_noise_row_at_1x1(bn_mode: str, noise_pass: str) -> torch.Tensor:
    model = convert_darbn(seeded_resnet18(), bn_mode=bn_mode)
    model.train()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, 32, 32, generator=gen)
    x[-1] = torch.rand(3, 32, 32, generator=gen) * 4 - 2
    y = routed_forward(model, x, 1, noise_pass=noise_pass)
    y.sum().backward()  # no error in backward either
    return y.detach()


def test_one_noise_row_at_1x1_gives_beta_in_every_path():
    # resnet18's last stage sees 1x1 maps at 32x32: one noise row is one value per channel.
    joint = _one_noise_row_at_1x1("darbn", "joint")
    split = _one_noise_row_at_1x1("darbn", "split")
    aux = _one_noise_row_at_1x1("aux", "joint")  # the auxiliary branch starts as a copy of the layer
    # Convolutions of 5 and 1 rows round differently: equal to float rounding.
    torch.testing.assert_close(split, joint, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(aux, joint, atol=1e-4, rtol=1e-4)
