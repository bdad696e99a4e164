"""The library loop's traps say so: an OPeN batch forwarded without routing, a model with nothing to convert."""
from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from purenoise import OPeN, PureNoise, convert_darbn, noise_routing, revert_darbn, routed_forward


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                         nn.Flatten(), nn.Linear(4, 3))


def _open_batch():
    open_ = OPeN([50, 10, 2], delta=1.0, noise=PureNoise([0.5], [0.2]))
    g = torch.Generator().manual_seed(0)
    images, labels, k = open_(torch.rand(16, 1, 6, 6), torch.tensor([0, 1, 2, 2] * 4), generator=g)
    assert k > 0
    return images, labels, k


def test_an_open_batch_forwarded_without_routing_warns_once():
    model = convert_darbn(_model())
    images, _, k = _open_batch()
    with pytest.warns(UserWarning, match=f"{k} noise rows but no routing"):
        model(images)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model(images)  # once per model
        fresh = convert_darbn(_model())
        routed_forward(fresh, images, k)  # the right ways say nothing
        with noise_routing(fresh, k):
            fresh(images)
        fresh(torch.rand(16, 1, 6, 6))  # a batch OPeN did not make
        revert_darbn(fresh)(images)  # a reverted model checks nothing


def test_convert_darbn_warns_when_it_converts_nothing_naming_the_norms_it_found():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.GroupNorm(2, 4), nn.Flatten(), nn.LayerNorm(4 * 6 * 6))
    with pytest.warns(UserWarning, match="converted nothing.*GroupNorm, LayerNorm"):
        convert_darbn(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        convert_darbn(_model())
