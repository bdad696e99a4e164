"""Metrics against hand-computed values on small examples, and their invariants."""
import json
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from purenoise.errors import DataError
from purenoise.metrics import compute_metrics, frequency_groups, shot_groups

# 3 classes, 6 test images: class 0 -> predictions 0, 0, 1; class 1 -> 1, 2; class 2 -> 2.
LABELS = [0, 0, 0, 1, 1, 2]
PREDS = [0, 0, 1, 1, 2, 2]


def _onehot_logits(preds, num_classes, high=2.0):
    z = torch.zeros(len(preds), num_classes)
    z[torch.arange(len(preds)), torch.tensor(preds)] = high
    return z


def test_small_example_by_hand():
    z = _onehot_logits(PREDS, 3)
    m = compute_metrics(z, torch.tensor(LABELS), [500, 50, 5])
    assert m["num_samples"] == 6 and m["num_classes"] == 3
    assert m["confusion"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["per_class_count"] == [3, 2, 1]
    assert m["top1"] == pytest.approx(4 / 6)
    assert m["top5"] is None  # C <= 5
    assert m["per_class_acc"] == pytest.approx([2 / 3, 1 / 2, 1.0])
    assert m["balanced_acc"] == pytest.approx((2 / 3 + 1 / 2 + 1) / 3)
    assert m["many"] == pytest.approx(2 / 3)
    assert m["medium"] == pytest.approx(1 / 2)
    assert m["few"] == pytest.approx(1.0)
    assert m["gmean"] == pytest.approx((2 / 3 * 1 / 2 * 1.0) ** (1 / 3))
    # Softmax of (2, 0, 0): true-class probability e^2/(e^2+2) or 1/(e^2+2).
    p_hi = math.exp(2) / (math.exp(2) + 2)
    p_lo = 1 / (math.exp(2) + 2)
    assert m["nll"] == pytest.approx(-(4 * math.log(p_hi) + 2 * math.log(p_lo)) / 6)
    # Every confidence is p_hi (one bin): ECE = |accuracy - p_hi|.
    assert m["ece"] == pytest.approx(abs(4 / 6 - p_hi))
    # groups5 of 3 classes: [0], [1], [2], then two empty groups.
    assert m["groups5_classes"] == [[0], [1], [2], [], []]
    assert m["groups5"] == pytest.approx([2 / 3, 1 / 2, 1.0, None, None])
    assert m["class_counts"] == [500, 50, 5]
    json.dumps(m, allow_nan=False)


def test_ece_two_bins_by_hand():
    # Probabilities as input: two images at confidence 0.9 (one right), two at 0.6 (both right).
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    labels = torch.tensor([0, 1, 0, 1])
    m = compute_metrics(probs, labels, [10, 10])
    # bins (13/15, 14/15] and (8/15, 9/15]: 0.5 * |0.5 - 0.9| + 0.5 * |1.0 - 0.6|
    assert m["ece"] == pytest.approx(0.4)
    assert m["nll"] == pytest.approx(-(math.log(0.9) + math.log(0.1) + 2 * math.log(0.6)) / 4)
    # Bins are closed on the right: a confidence of exactly 0.6 = 9/15 shares the bin
    # (8/15, 9/15] with 0.55, so ECE = |0.5 - 0.575| (float64 input keeps 0.6 exact).
    edge = np.array([[0.6, 0.4], [0.55, 0.45]])
    assert compute_metrics(edge, np.array([0, 1]), [1, 1])["ece"] == pytest.approx(0.075)
    # With a single bin, ECE = |mean accuracy - mean confidence| = |0.75 - 0.75|.
    assert compute_metrics(probs, labels, [10, 10], num_bins=1)["ece"] == pytest.approx(0.0)


def test_probabilities_and_logits_give_the_same_metrics():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(40, 8, generator=g)
    y = torch.randint(0, 8, (40,), generator=g)
    counts = [300, 150, 90, 60, 30, 15, 8, 2]
    a = compute_metrics(z, y, counts)
    b = compute_metrics(torch.softmax(z, 1), y, counts)
    c = compute_metrics(torch.softmax(z, 1).numpy(), y.numpy(), counts, is_probs=True)
    for k in a:
        if isinstance(a[k], float):
            assert b[k] == pytest.approx(a[k], rel=1e-6), k
            assert c[k] == pytest.approx(a[k], rel=1e-6), k
        else:
            assert b[k] == a[k], k


def test_top5_by_hand():
    z = torch.tensor([
        [7.0, 6, 5, 4, 3, 2, 1],   # true 4: 4 classes above it -> in top 5
        [7.0, 6, 5, 4, 3, 2, 1],   # true 5: 5 above -> not
        [0.0, 0, 0, 0, 0, 0, 9],   # true 6: top-1
    ])
    m = compute_metrics(z, torch.tensor([4, 5, 6]), [1] * 7)
    assert m["top5"] == pytest.approx(2 / 3)
    assert m["top1"] == pytest.approx(1 / 3)


def test_absent_class_is_none_and_excluded_from_means():
    z = _onehot_logits([0, 1, 1, 3], 4)
    m = compute_metrics(z, torch.tensor([0, 1, 0, 3]), [200, 50, 5, 1])
    assert m["per_class_acc"] == [0.5, 1.0, None, 1.0]
    assert m["balanced_acc"] == pytest.approx(2.5 / 3)
    assert m["few"] == pytest.approx(1.0)  # class 2 (absent) is not counted as 0
    assert m["gmean"] == pytest.approx(0.5 ** (1 / 3))
    json.dumps(m, allow_nan=False)


def test_gmean_is_zero_when_a_recall_is_zero():
    m = compute_metrics(_onehot_logits([0, 0], 2), torch.tensor([0, 1]), [10, 10])
    assert m["per_class_acc"] == [1.0, 0.0]
    assert m["gmean"] == 0.0


def test_empty_shot_group_is_none():
    m = compute_metrics(_onehot_logits([0, 1], 2), torch.tensor([0, 1]), [500, 300])
    assert m["many"] == 1.0 and m["medium"] is None and m["few"] is None


def test_shot_groups_boundaries():
    assert shot_groups([101, 100, 20, 19, 1000, 0]) == {
        "many": [0, 4], "medium": [1, 2], "few": [3, 5]}


def test_frequency_groups_order_and_sizes():
    counts = [5, 50, 500, 1, 20, 200, 10]  # 7 classes: group sizes 2, 2, 1, 1, 1
    assert frequency_groups(counts) == [[2, 5], [1, 4], [6], [0], [3]]
    # Ties keep class order.
    assert frequency_groups([3, 3, 3, 3, 3]) == [[0], [1], [2], [3], [4]]


def test_class_names_are_returned():
    m = compute_metrics(_onehot_logits([0, 1], 2), torch.tensor([0, 1]), [1, 1],
                        class_names=["cat", "dog"])
    assert m["class_names"] == ["cat", "dog"]


@pytest.mark.parametrize(
    "logits, labels, counts, match",
    [
        (torch.zeros(3, 2), torch.tensor([0, 1, 2]), [1, 1], "labels must be in"),
        (torch.zeros(3, 2), torch.tensor([0, 1, -1]), [1, 1], "labels must be in"),
        (torch.zeros(3, 2), torch.tensor([0, 1, 0]), [1, 1, 1], "class_counts has 3"),
        (torch.zeros(3, 2), torch.tensor([0, 1]), [1, 1], "labels must have shape"),
        (torch.zeros(0, 2), torch.zeros(0, dtype=torch.long), [1, 1], "empty"),
        (torch.zeros(3), torch.tensor([0, 1, 0]), [1, 1], r"\[N, C\]"),
        (torch.tensor([[0.0, float("nan")]]), torch.tensor([0]), [1, 1], "NaN"),
        (torch.zeros(2, 2), torch.tensor([0.0, 1.0]), [1, 1], "integers"),
    ],
)
def test_bad_inputs_raise_data_error(logits, labels, counts, match):
    with pytest.raises(DataError, match=match):
        compute_metrics(logits, labels, counts)


@settings(max_examples=40, deadline=None)
@given(
    num_classes=st.integers(2, 12),
    per_class=st.integers(1, 6),
    seed=st.integers(0, 2**31 - 1),
)
def test_invariants_on_balanced_test_sets(num_classes, per_class, seed):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(num_classes), per_class)
    logits = rng.normal(size=(len(labels), num_classes)) * 3
    counts = rng.integers(1, 400, size=num_classes).tolist()
    m = compute_metrics(logits, labels, counts)
    accs = m["per_class_acc"]
    assert None not in accs
    assert m["balanced_acc"] == pytest.approx(float(np.mean(accs)))
    assert m["top1"] == pytest.approx(m["balanced_acc"])  # balanced test set
    confusion = np.array(m["confusion"])
    assert confusion.sum() == len(labels)
    assert np.diag(confusion) / confusion.sum(1) == pytest.approx(accs)
    assert 0.0 <= m["gmean"] <= m["balanced_acc"] + 1e-12  # AM-GM
    assert 0.0 <= m["ece"] <= 1.0 and m["nll"] > 0
    if m["top5"] is not None:
        assert m["top5"] >= m["top1"]
    groups = shot_groups(counts)
    for name in ("many", "medium", "few"):
        if groups[name]:
            assert m[name] == pytest.approx(float(np.mean([accs[c] for c in groups[name]])))
        else:
            assert m[name] is None
    sizes = [len(g) for g in m["groups5_classes"]]
    assert sum(sizes) == num_classes and max(sizes) - min(sizes) <= 1
    json.dumps(m, allow_nan=False)
