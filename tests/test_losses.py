"""Each loss against a value computed by hand from its formula, plus option validation."""
import math

import numpy as np
import pytest
import torch

from purenoise.errors import ConfigError
from purenoise.losses import class_balanced_weights, create_loss, list_losses

LOGITS = [[2.0, 1.0, 0.0], [0.0, 1.0, 3.0], [0.5, -0.2, 0.1], [1.0, 1.0, 1.0]]
LABELS = [0, 2, 1, 2]
COUNTS = [100, 10, 1]


def _logits():
    return torch.tensor(LOGITS)


def _labels():
    return torch.tensor(LABELS)


def _nll(row, y):
    """-log softmax(row)[y], written out."""
    return -(row[y] - math.log(sum(math.exp(v) for v in row)))


def _cb_weights(counts, beta):
    w = [(1 - beta) / (1 - beta**n) for n in counts]
    return [x / sum(w) * len(counts) for x in w]


def test_list_losses():
    assert list_losses() == ["balanced_softmax", "cb", "ce", "drw", "ldam", "logit_adjust"]


def test_ce_by_hand():
    expected = sum(_nll(r, y) for r, y in zip(LOGITS, LABELS)) / 4
    got = create_loss("ce", COUNTS)(_logits(), _labels())
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_ce_label_smoothing_by_hand():
    eps = 0.1
    total = 0.0
    for r, y in zip(LOGITS, LABELS):
        nlls = [_nll(r, c) for c in range(3)]
        total += (1 - eps) * nlls[y] + eps * sum(nlls) / 3
    got = create_loss("ce", COUNTS, label_smoothing=eps)(_logits(), _labels())
    assert got.item() == pytest.approx(total / 4, rel=1e-6)


def test_class_balanced_weights_by_hand():
    w = class_balanced_weights(COUNTS, 0.99)
    # (1 - 0.99) / (1 - 0.99**n) for n = 100, 10, 1, then scaled to sum to 3.
    raw = [0.01 / (1 - 0.99**100), 0.01 / (1 - 0.99**10), 1.0]
    expected = [x * 3 / sum(raw) for x in raw]
    assert w.tolist() == pytest.approx(expected, rel=1e-6)
    assert w.sum().item() == pytest.approx(3.0, rel=1e-6)
    assert class_balanced_weights(COUNTS, 0.0).tolist() == [1.0, 1.0, 1.0]


def test_cb_weighted_mean_by_hand():
    beta = 0.99
    w = _cb_weights(COUNTS, beta)
    num = sum(w[y] * _nll(r, y) for r, y in zip(LOGITS, LABELS))
    den = sum(w[y] for y in LABELS)
    got = create_loss("cb", COUNTS, beta=beta)(_logits(), _labels())
    assert got.item() == pytest.approx(num / den, rel=1e-6)


def test_cb_default_beta():
    loss = create_loss("cb", COUNTS)
    assert loss.beta == 0.9999
    assert loss.weight.tolist() == pytest.approx(_cb_weights(COUNTS, 0.9999), rel=1e-6)


def test_drw_switches_at_drw_epoch():
    loss = create_loss("drw", COUNTS, drw_epoch=3, beta=0.99)
    ce = sum(_nll(r, y) for r, y in zip(LOGITS, LABELS)) / 4
    w = _cb_weights(COUNTS, 0.99)
    cb = (sum(w[y] * _nll(r, y) for r, y in zip(LOGITS, LABELS))
          / sum(w[y] for y in LABELS))
    assert loss(_logits(), _labels()).item() == pytest.approx(ce, rel=1e-6)  # epoch 0
    loss.set_epoch(2)
    assert loss(_logits(), _labels()).item() == pytest.approx(ce, rel=1e-6)
    loss.set_epoch(3)
    assert loss(_logits(), _labels()).item() == pytest.approx(cb, rel=1e-6)
    loss.set_epoch(10)
    assert loss(_logits(), _labels()).item() == pytest.approx(cb, rel=1e-6)
    assert cb != pytest.approx(ce, rel=1e-3)


def test_drw_default_epoch_is_160():
    assert create_loss("drw", COUNTS).drw_epoch == 160


def test_ldam_by_hand():
    cos = [[0.9, 0.1, -0.3], [0.2, 0.5, 0.4], [-0.1, 0.3, 0.0], [0.0, 0.0, 0.0]]
    s, max_m = 30.0, 0.5
    # m_c proportional to n_c^(-1/4), the rarest class (n = 1) getting max_m.
    m = [max_m * n**-0.25 / 1**-0.25 for n in COUNTS]
    assert m == pytest.approx([0.5 / math.sqrt(10), 0.5 / 10**0.25, 0.5])
    total = 0.0
    for r, y in zip(cos, LABELS):
        adjusted = [s * (v - (m[y] if c == y else 0.0)) for c, v in enumerate(r)]
        total += _nll(adjusted, y)
    loss = create_loss("ldam", COUNTS)
    got = loss(torch.tensor(cos), _labels())
    assert got.item() == pytest.approx(total / 4, rel=1e-5)
    assert loss.wants_normed_classifier


def test_ldam_drw_by_hand():
    cos = [[0.9, 0.1, -0.3], [0.2, 0.5, 0.4], [-0.1, 0.3, 0.0], [0.0, 0.0, 0.0]]
    m = [0.2 * n**-0.25 for n in COUNTS]  # max_m 0.2, rarest class count 1
    w = _cb_weights(COUNTS, 0.9)
    num = den = 0.0
    for r, y in zip(cos, LABELS):
        adjusted = [10.0 * (v - (m[y] if c == y else 0.0)) for c, v in enumerate(r)]
        num += w[y] * _nll(adjusted, y)
        den += w[y]
    loss = create_loss("ldam", COUNTS, max_m=0.2, s=10.0, drw_epoch=1, beta=0.9)
    before = loss(torch.tensor(cos), _labels()).item()
    loss.set_epoch(1)
    assert loss(torch.tensor(cos), _labels()).item() == pytest.approx(num / den, rel=1e-5)
    assert before != pytest.approx(num / den, rel=1e-3)


def test_balanced_softmax_by_hand():
    prior = [n / sum(COUNTS) for n in COUNTS]
    total = sum(_nll([v + math.log(p) for v, p in zip(r, prior)], y)
                for r, y in zip(LOGITS, LABELS))
    got = create_loss("balanced_softmax", COUNTS)(_logits(), _labels())
    assert got.item() == pytest.approx(total / 4, rel=1e-6)


def test_logit_adjust_tau_by_hand():
    tau = 0.5
    prior = [n / sum(COUNTS) for n in COUNTS]
    total = sum(_nll([v + tau * math.log(p) for v, p in zip(r, prior)], y)
                for r, y in zip(LOGITS, LABELS))
    got = create_loss("logit_adjust", COUNTS, tau=tau)(_logits(), _labels())
    assert got.item() == pytest.approx(total / 4, rel=1e-6)


@pytest.mark.parametrize("name", ["cb", "drw", "balanced_softmax", "logit_adjust", "ldam"])
def test_uniform_counts_reduce_to_plain_ce(name):
    """With equal class counts every re-weighting and prior shift is a no-op."""
    kwargs = {"drw_epoch": 0} if name in ("drw", "ldam") else {}
    loss = create_loss(name, [7, 7, 7], **kwargs)
    if name == "ldam":
        # Equal margins shift every row equally on its true class: compare with CE by hand.
        adjusted = [[30 * (v - (0.5 if c == y else 0)) for c, v in enumerate(r)]
                    for r, y in zip(LOGITS, LABELS)]
        expected = sum(_nll(r, y) for r, y in zip(adjusted, LABELS)) / 4
    else:
        expected = sum(_nll(r, y) for r, y in zip(LOGITS, LABELS)) / 4
    assert loss(_logits(), _labels()).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("name", list_losses())
def test_every_loss_has_set_epoch_and_backprops(name):
    loss = create_loss(name, np.array(COUNTS))  # numpy counts are accepted
    loss.set_epoch(5)
    z = _logits().requires_grad_()
    out = loss(z, _labels())
    assert out.ndim == 0 and out.dtype == torch.float32
    out.backward()
    assert torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_bfloat16_logits_give_float32_loss():
    out = create_loss("ce", COUNTS)(_logits().bfloat16(), _labels())
    assert out.dtype == torch.float32


def test_ce_ignores_set_epoch():
    loss = create_loss("ce", COUNTS)
    a = loss(_logits(), _labels()).item()
    loss.set_epoch(1000)
    assert loss(_logits(), _labels()).item() == a


@pytest.mark.parametrize(
    "name, counts, kwargs, words",
    [
        ("nope", COUNTS, {}, ["unknown loss", "ce", "ldam"]),
        ("ce", [10, 0, 3], {}, ["class_counts", "positive", "class 1"]),
        ("ce", [10, -2, 3], {}, ["class_counts"]),
        ("ce", [], {}, ["class_counts"]),
        ("ce", [10, float("nan")], {}, ["class_counts"]),
        ("cb", COUNTS, {"beta": 1.0}, ["beta", "[0.0, 1.0)"]),
        ("cb", COUNTS, {"beta": -0.1}, ["beta", "[0.0, 1.0)"]),
        ("drw", COUNTS, {"beta": 1.5}, ["beta"]),
        ("drw", COUNTS, {"drw_epoch": -1}, ["drw_epoch", ">= 0"]),
        ("drw", COUNTS, {"drw_epoch": 1.5}, ["drw_epoch"]),
        ("ldam", COUNTS, {"max_m": 0.0}, ["max_m", "(0.0, inf]"]),
        ("ldam", COUNTS, {"s": -1}, ["s must be"]),
        ("ce", COUNTS, {"label_smoothing": 1.0}, ["label_smoothing", "[0.0, 1.0)"]),
        ("logit_adjust", COUNTS, {"tau": float("inf")}, ["tau"]),
        ("ce", COUNTS, {"beta": 0.9}, ["unknown option", "beta", "label_smoothing"]),
        ("balanced_softmax", COUNTS, {"tau": 2.0}, ["unknown option", "tau"]),
    ],
)
def test_invalid_options_raise_config_error(name, counts, kwargs, words):
    with pytest.raises(ConfigError) as e:
        create_loss(name, counts, **kwargs)
    for w in words:
        assert w in str(e.value)


def test_wrong_number_of_classes_in_logits():
    loss = create_loss("ce", [5, 5])
    with pytest.raises(ConfigError, match="built for 2 classes"):
        loss(_logits(), _labels())


def test_balanced_softmax_is_logit_adjustment_at_tau_one():
    """Balanced Softmax adds log n_c, logit adjustment tau*log(prior): the same loss at tau = 1."""
    import torch

    from purenoise.losses import create_loss

    counts = [500, 120, 30, 7]
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 4, generator=g)
    labels = torch.randint(0, 4, (16,), generator=g)
    bs = create_loss("balanced_softmax", class_counts=counts)(logits, labels)
    la = create_loss("logit_adjust", class_counts=counts, tau=1.0)(logits, labels)
    half = create_loss("logit_adjust", class_counts=counts, tau=0.5)(logits, labels)
    assert torch.allclose(bs, la) and not torch.allclose(bs, half)
