"""OPeNSchedule: the deferred OPeN schedule of a plain loop (sampler, noise, routing) by construction."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from purenoise import OPeNSchedule, PureNoise, convert_darbn


def _data(n_per=(40, 12, 4)):
    labels = [c for c, n in enumerate(n_per) for _ in range(n)]
    g = torch.Generator().manual_seed(0)
    images = torch.rand(len(labels), 1, 6, 6, generator=g)
    return torch.utils.data.TensorDataset(images, torch.tensor(labels)), labels


def _model():
    torch.manual_seed(0)
    return convert_darbn(nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(),
                                       nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3)))


def test_instance_order_before_the_defer_epoch_class_balanced_noise_from_it():
    ds, labels = _data()
    s = OPeNSchedule(ds, labels, defer_epoch=2, delta=1.0, noise=PureNoise([0.5], [0.2]), batch_size=8)
    model = _model()
    seen = torch.cat([y for _, y in s.loader(0)])
    assert torch.bincount(seen, minlength=3).tolist() == [40, 12, 4]  # one pass in instance order
    assert seen.tolist() != sorted(labels)  # shuffled
    for x, y in s.loader(1):
        logits, out = s.forward(model, x, y)
        assert s.n_noise == 0 and torch.equal(out, y) and logits.shape == (8, 3)
    drawn, noise = [], 0
    for x, y in s.loader(2):
        logits, out = s.forward(model, x, y)
        drawn.append(y)
        noise += s.n_noise
        assert logits.shape[0] == out.shape[0] == x.shape[0]
    counts = torch.bincount(torch.cat(drawn), minlength=3)
    assert counts.min() > 8  # class-balanced: the 4-image class is drawn as often as the others
    assert noise > 0 and s.noise_on() and not s.noise_on(1)


def test_new_order_every_epoch_and_repeatable_by_seed():
    ds, labels = _data()
    kw = dict(defer_epoch=0, noise=PureNoise([0.5], [0.2]), batch_size=8)
    a, b = OPeNSchedule(ds, labels, seed=3, **kw), OPeNSchedule(ds, labels, seed=3, **kw)
    e0 = [y.tolist() for _, y in a.loader(0)]
    e1 = [y.tolist() for _, y in a.loader(1)]
    assert e0 != e1
    assert [y.tolist() for _, y in b.loader(0)] == e0
    m1, m2 = _model(), _model()
    outs = []
    for s, m in ((a, m1), (b, m2)):
        x, y = next(iter(s.loader(5)))
        outs.append(s.forward(m, x, y))
    assert torch.equal(outs[0][0], outs[1][0]) and torch.equal(outs[0][1], outs[1][1])


def test_normalize_is_applied_and_bad_arguments_say_what_is_wrong():
    ds, labels = _data()
    s = OPeNSchedule(ds, labels, defer_epoch=10, normalize=([0.5], [0.25]), batch_size=4)
    x, y = next(iter(s.loader(0)))
    seen = {}
    probe = nn.Sequential(nn.Flatten())
    probe.register_forward_hook(lambda m, i, o: seen.update(x=i[0]))
    s.forward(probe, x, y)
    assert torch.allclose(seen["x"], (x - 0.5) / 0.25)
    with pytest.raises(ValueError, match="defer_epoch"):
        OPeNSchedule(ds, labels, defer_epoch=-1)
    with pytest.raises(ValueError, match="one label per item"):
        OPeNSchedule(ds, labels[:-1], defer_epoch=0)
