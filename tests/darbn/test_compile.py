"""DAR-BN under torch.compile: one graph for every noise count, same results as eager.

OPeN changes the number of noise rows every batch. An int attribute of a module is a constant
to dynamo (one graph per value, and after 8 of them the model silently runs eagerly), so the
routing layers hand the count to compiled code as the length of a tensor marked dynamic. These
tests run ~20 steps with a varying count (0 included) and check the number of graphs.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from purenoise import DARBatchNorm2d, convert_darbn, noise_routing
from purenoise.darbn.layers import _compiled_routed
from purenoise.engine.step import train_step

torch_dynamo = pytest.importorskip("torch._dynamo")
from torch._dynamo.utils import counters  # noqa: E402

BATCH = 16
# ERM batches (0), then OPeN batches with varying counts; 1 and 16 (all noise) are left out:
# dynamo specializes sizes 0 and 1 and an all-noise batch takes another branch.
COUNTS = [0, 0, 5, 3, 9, 4, 0, 7, 2, 6, 11, 8, 5, 0, 3, 10, 4, 6, 2, 9]


def _net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )


def _graphs() -> int:
    return int(counters["stats"]["unique_graphs"])


def _fixed_noise(k: int):
    """A noise transform that marks the last ``k`` rows of the batch as noise, for a chosen count."""
    return lambda images, labels, generator=None: (images, labels, k)


def _run(backend: str, noise_grad: str, atol: float) -> int:
    torch.manual_seed(0)
    eager = convert_darbn(_net(), noise_grad=noise_grad)
    compiled_model = copy.deepcopy(eager)
    torch_dynamo.reset()
    counters.clear()
    compiled = torch.compile(compiled_model, backend=backend)
    opts = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (eager, compiled_model)]
    gen = torch.Generator().manual_seed(1)
    for k in COUNTS:
        x = torch.randn(BATCH, 3, 8, 8, generator=gen)
        y = torch.randint(0, 4, (BATCH,), generator=gen)
        outs = []
        for model, opt in zip((eager, compiled), opts):
            # The trainer's step; one pass for all rows, as a compiled run keeps by default.
            res = train_step(model, x, y, criterion=nn.functional.cross_entropy, optimizer=opt,
                             noise=_fixed_noise(k), noise_pass="joint")
            assert res.n_noise == k
            outs.append((res.logits.detach(), [p.grad.clone() for p in model.parameters()]))
        torch.testing.assert_close(outs[1][0], outs[0][0], atol=atol, rtol=atol)
        for g_compiled, g_eager in zip(outs[1][1], outs[0][1]):
            torch.testing.assert_close(g_compiled, g_eager, atol=atol, rtol=atol)
    for a, b in zip(eager.state_dict().values(), compiled_model.state_dict().values()):
        torch.testing.assert_close(a, b, atol=10 * atol, rtol=10 * atol)
    return _graphs()


@pytest.mark.parametrize("noise_grad", ["classifier", "features"])
def test_compiled_darbn_matches_eager_without_recompiling(noise_grad):
    # aot_eager traces exactly what inductor gets (dynamo + AOTAutograd) without generating code.
    graphs = _run("aot_eager", noise_grad, atol=1e-5)
    assert graphs <= 3, f"{graphs} graphs for {len(set(COUNTS))} noise counts"
    assert graphs == 2  # one for k = 0, one for every k >= 2


@pytest.mark.slow
def test_inductor_compiled_darbn_matches_eager():
    graphs = _run("inductor", "classifier", atol=1e-4)
    assert graphs <= 3


def test_noise_count_is_readable_and_restored():
    model = convert_darbn(_net())
    layers = [m for m in model.modules() if hasattr(m, "_set_noise")]
    with noise_routing(model, 5):
        assert all(m.n_noise == 5 and m.__dict__["_noise_rows"].shape == (5,) for m in layers)
    assert all(m.n_noise == 0 for m in layers)
    layers[0].n_noise = 3  # direct assignment keeps the compiled view in step
    assert layers[0].__dict__["_noise_rows"].shape == (3,)


@pytest.mark.parametrize("noise_grad", ["classifier", "features"])
@pytest.mark.parametrize("n_noise", [1, 5, 11])
@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "bf16"])
def test_compiled_form_equals_the_eager_layer(noise_grad, n_noise, layout):
    """The form traced under torch.compile computes what the eager (fused) DAR-BN computes."""
    gen = torch.Generator().manual_seed(n_noise)
    layers = []
    for _ in range(2):
        layer = DARBatchNorm2d(6, noise_grad=noise_grad)
        with torch.no_grad():
            layer.weight.copy_(torch.linspace(0.5, 1.5, 6))
            layer.bias.copy_(torch.linspace(-0.5, 0.5, 6))
        layers.append(layer)
    x = torch.randn(12, 6, 5, 5, generator=gen) * 2 + 1
    x[12 - n_noise:] = torch.rand(n_noise, 6, 5, 5, generator=gen) * 5 - 3
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    dy = torch.randn(12, 6, 5, 5, generator=gen)
    results = []
    for i, layer in enumerate(layers):
        xi = x.clone().requires_grad_()
        inp = xi.to(torch.bfloat16) if layout == "bf16" else xi
        if i == 0:
            with noise_routing(layer, n_noise):
                y = layer(inp)
        else:
            y = _compiled_routed(layer, inp, 12 - n_noise, layer._natural_momentum(12 - n_noise),
                                 noise_grad == "features")
        assert y.dtype == inp.dtype
        if layout == "channels_last":
            assert y.is_contiguous(memory_format=torch.channels_last)
        y.float().backward(dy)
        results.append((y.float(), xi.grad, layer.weight.grad, layer.bias.grad, layer.running_mean.clone(),
                        layer.running_var.clone(), int(layer.num_batches_tracked)))
    tol = dict(atol=2e-2, rtol=2e-2) if layout == "bf16" else dict(atol=1e-5, rtol=1e-5)
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, **tol)
    if noise_grad == "classifier":
        assert torch.all(results[1][1][12 - n_noise:] == 0)  # noise rows pass no gradient back
