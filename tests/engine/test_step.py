"""``train_step`` against a hand-written reference of the same step.

The reference spells the step out on a deep copy of the model: the same noise draw (a generator
seeded alike), one routed forward, cross-entropy on float32 logits, ``torch.autograd.grad``,
clipping by the total norm, SGD with momentum and weight decay written out, and the learning rate
of a scheduler that halves it every call. Models are float64 so that the two agree to rounding.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from purenoise import ConfigError, OPeN, PureNoise, convert_darbn, noise_routing
from purenoise.engine.step import StepResult, train_step
from purenoise.open import NoiseAugment

LR, MOMENTUM, WD = 0.1, 0.9, 1e-3
STEPS = 3
BATCH = 12
MEAN, STD = (0.5, 0.4, 0.45), (0.25, 0.2, 0.3)


def _net(dtype: torch.dtype = torch.float64) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    return convert_darbn(net).to(dtype)


def _transform(kind: str):
    if kind == "open":  # class 0 is never replaced, classes 1 and 2 almost always
        return OPeN([100, 10, 1], delta=1.0, noise=PureNoise(MEAN, STD), normalize=(MEAN, STD))
    return NoiseAugment(3, ratio=0.5, normalize=(MEAN, STD))


def _batches(dtype: torch.dtype = torch.float64) -> list[tuple[torch.Tensor, torch.Tensor]]:
    gen = torch.Generator().manual_seed(3)
    labels = torch.arange(BATCH) % 3
    return [(torch.randn(BATCH, 3, 6, 6, generator=gen, dtype=dtype), labels) for _ in range(STEPS)]


def _halving(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 ** step)


def _sgd(model: nn.Module) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)


def _reference(model: nn.Module, batches, noise, *, clip: float | None = None, amp: str = "none"):
    """The step written out: (losses, logits, noisy batches) of ``STEPS`` steps on ``model``."""
    params = list(model.parameters())
    bufs: list[torch.Tensor | None] = [None] * len(params)
    gen = torch.Generator().manual_seed(7)
    out = []
    for i, (images, labels) in enumerate(batches):
        k = 0
        if noise is not None:
            images, labels, k = noise(images, labels, generator=gen)
        dtype = torch.float16 if amp == "fp16" else torch.bfloat16
        with torch.autocast("cpu", dtype=dtype, enabled=amp != "none"), noise_routing(model, k):
            logits = model(images)
        loss = F.cross_entropy(logits.float(), labels)
        grads = torch.autograd.grad(loss, params)
        if clip is not None:
            norm = torch.sqrt(sum((g.double() ** 2).sum() for g in grads)).item()
            grads = [g * min(1.0, clip / (norm + 1e-6)) for g in grads]
        lr = LR * 0.5 ** i
        with torch.no_grad():
            for j, (p, g) in enumerate(zip(params, grads)):
                d = g + WD * p
                bufs[j] = d.clone() if bufs[j] is None else MOMENTUM * bufs[j] + d
                p -= lr * bufs[j]
        out.append((loss.detach(), logits.detach(), images, labels, k))
    return out


def _run(model: nn.Module, batches, noise, **kw) -> tuple[list[StepResult], torch.optim.Optimizer, object]:
    optimizer = _sgd(model)
    scheduler = _halving(optimizer)
    gen = torch.Generator().manual_seed(7)
    results = [train_step(model, images, labels, criterion=F.cross_entropy, optimizer=optimizer, noise=noise,
                          generator=gen, scheduler=scheduler, **kw) for images, labels in batches]
    return results, optimizer, scheduler


def _assert_same_model(a: nn.Module, b: nn.Module, tol: float) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=tol, atol=tol, msg=lambda m: f"{name}: {m}")


def _forward_count(model: nn.Module) -> list[int]:
    calls = [0]
    model.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("kind", ["open", "augment"])
@pytest.mark.parametrize("noise_pass", ["joint", "split"])
def test_step_matches_the_reference(kind, noise_pass):
    model = _net()
    ref_model = copy.deepcopy(model)
    batches = _batches()
    calls = _forward_count(model)
    results, _, _ = _run(model, batches, _transform(kind), noise_pass=noise_pass)
    reference = _reference(ref_model, batches, _transform(kind))
    assert calls[0] == STEPS * (2 if noise_pass == "split" else 1)  # the pass asked for
    for res, (loss, logits, images, labels, k) in zip(results, reference):
        assert res.n_noise == k > 0
        assert torch.equal(res.images, images) and torch.equal(res.labels, labels)
        torch.testing.assert_close(res.loss.detach(), loss, rtol=1e-6, atol=1e-8)
        torch.testing.assert_close(res.logits.detach(), logits, rtol=1e-6, atol=1e-8)
    _assert_same_model(model, ref_model, 1e-7)


def test_step_without_noise_and_with_clipping():
    model = _net()
    ref_model = copy.deepcopy(model)
    batches = _batches()
    results, _, _ = _run(model, batches, None, grad_clip=0.05)
    reference = _reference(ref_model, batches, None, clip=0.05)
    assert [r.n_noise for r in results] == [0] * STEPS
    _assert_same_model(model, ref_model, 1e-7)
    unclipped = _net()  # the clip is small enough to change the result
    _run(unclipped, batches, None)
    with pytest.raises(AssertionError):
        _assert_same_model(model, unclipped, 1e-4)
    torch.testing.assert_close(results[0].loss.detach(), reference[0][0])


@pytest.mark.parametrize("clip", [None, 0.05])
def test_scaled_step_equals_the_unscaled_reference(clip):
    """A GradScaler (enabled on the CPU) changes nothing but the loss scale; clipping unscales first."""
    model = _net()
    ref_model = copy.deepcopy(model)
    batches = _batches()
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 12)
    _run(model, batches, _transform("open"), noise_pass="split", scaler=scaler, grad_clip=clip)
    _reference(ref_model, batches, _transform("open"), clip=clip)
    assert scaler.get_scale() == 2.0 ** 12  # no step was skipped
    _assert_same_model(model, ref_model, 1e-7)


@pytest.mark.parametrize("amp", ["bf16", "fp16"])
def test_autocast_step_matches_the_reference_under_autocast(amp):
    model = _net(torch.float32)
    ref_model = copy.deepcopy(model)
    batches = _batches(torch.float32)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 4) if amp == "fp16" else None
    results, _, _ = _run(model, batches, _transform("open"), noise_pass="joint", amp=amp, scaler=scaler,
                         grad_clip=1.0)
    reference = _reference(ref_model, batches, _transform("open"), clip=1.0, amp=amp)
    assert results[0].logits.dtype == (torch.bfloat16 if amp == "bf16" else torch.float16)
    torch.testing.assert_close(results[-1].loss.detach(), reference[-1][0], rtol=1e-3, atol=1e-4)
    _assert_same_model(model, ref_model, 1e-4)


def test_scheduler_steps_once_per_call():
    model = _net()
    _, optimizer, scheduler = _run(model, _batches(), None)
    assert scheduler.last_epoch == STEPS
    assert optimizer.param_groups[0]["lr"] == pytest.approx(LR * 0.5 ** STEPS)


def test_noise_rows_come_last():
    images, labels = _batches()[0]
    res = train_step(_net(), images, labels, criterion=F.cross_entropy, optimizer=_sgd(_net()),
                     noise=_transform("open"), generator=torch.Generator().manual_seed(7))
    k = res.n_noise
    n_nat = BATCH - k
    assert 0 < k < BATCH and res.images.shape == images.shape and res.labels.shape == labels.shape
    assert (res.labels[n_nat:] != 0).all()  # OPeN never replaces the majority class
    same = (res.images[:, None] == images[None]).flatten(2).all(-1)  # [result row, input row]
    assert same[:n_nat].any(1).all() and not same[n_nat:].any()  # natural rows first, then noise
    kept = same[:n_nat].float().argmax(1)
    assert torch.equal(res.labels[:n_nat], labels[kept]) and (kept.diff() > 0).all()  # in order


def test_one_value_per_channel_is_a_config_error():
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 4), nn.BatchNorm1d(4), nn.Linear(4, 3))
    with pytest.raises(ConfigError, match="batch_size") as info:
        train_step(model, torch.randn(1, 3, 2, 2), torch.tensor([1]), criterion=F.cross_entropy,
                   optimizer=_sgd(model), where=" at epoch 2, step 5")
    assert "at epoch 2, step 5" in str(info.value)


def test_other_value_errors_pass_through():
    model = nn.Linear(12, 3)
    with pytest.raises(ValueError, match="noise_pass") as info:
        train_step(model, torch.randn(2, 12), torch.tensor([0, 1]), criterion=F.cross_entropy,
                   optimizer=_sgd(model), noise_pass="sideways")
    assert not isinstance(info.value, ConfigError)
