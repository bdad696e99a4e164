import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from purenoise.data import longtail_counts, longtail_indices
from purenoise.data.longtail import ordered_counts, resolve_class_order
from purenoise.errors import ConfigError, DataError

from tests.helpers.references import ldam_reference


def test_counts_cifar10_lt_ratio_100_exact():
    counts = longtail_counts(5000, 10, 100)
    assert counts == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    assert sum(counts) == 12406


@pytest.mark.parametrize(
    "n_max, classes, ratio, total",
    [(5000, 10, 100, 12406), (5000, 10, 50, 13996), (500, 100, 100, 10847), (500, 100, 50, 12608),
     (6000, 10, 100, 14886)],
)
def test_counts_published_totals(n_max, classes, ratio, total):
    assert sum(longtail_counts(n_max, classes, ratio)) == total


def test_counts_cifar100_ends():
    counts = longtail_counts(500, 100, 100)
    assert counts[0] == 500 and counts[-1] == 5 and counts == sorted(counts, reverse=True)


def test_step_profile():
    assert longtail_counts(5000, 10, 100, "step") == [5000] * 5 + [50] * 5
    # odd number of classes: the first C // 2 are the head
    assert longtail_counts(100, 5, 10, "step") == [100, 100, 10, 10, 10]


def test_ratio_one_is_balanced_and_single_class():
    assert longtail_counts(7, 4, 1) == [7, 7, 7, 7]
    assert longtail_counts(7, 1, 100) == [7]


@pytest.mark.parametrize("kwargs", [dict(ratio=0.5), dict(ratio="100"), dict(profile="linear"),
                                    dict(ratio=1000)])
def test_counts_bad_arguments(kwargs):
    args = dict(n_max=500, num_classes=10, ratio=100, profile="exp") | kwargs
    with pytest.raises(ConfigError):
        longtail_counts(**args)


def test_indices_equal_ldam_reference_on_cifar_sized_labels():
    rng = np.random.default_rng(123)
    targets = rng.permutation(np.repeat(np.arange(10), 5000))
    counts = longtail_counts(5000, 10, 100)
    ours = longtail_indices(targets, counts, seed=0)
    assert ours.tolist() == ldam_reference(targets, counts, 0)
    assert np.bincount(targets[ours], minlength=10).tolist() == counts
    assert len(set(ours.tolist())) == len(ours) == 12406


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(0, 4), max_size=200), st.integers(0, 2**31 - 1), st.data())
def test_indices_equal_reference_property(extra, seed, data):
    labels = [0, 1, 2, 3, 4] + extra  # every class present, as in LDAM's loop over np.unique
    present = np.bincount(labels, minlength=5)
    counts = [data.draw(st.integers(0, int(n))) for n in present]
    assert longtail_indices(labels, counts, seed).tolist() == ldam_reference(labels, counts, seed)


def test_indices_keep_caller_numpy_state():
    np.random.seed(99)
    expected = np.random.rand(3)
    np.random.seed(99)
    longtail_indices(np.repeat(np.arange(3), 10), [10, 5, 2], seed=0)
    assert np.allclose(np.random.rand(3), expected)


def test_indices_deterministic_and_seed_dependent():
    targets = np.repeat(np.arange(4), 50)
    a = longtail_indices(targets, [50, 20, 8, 3], seed=0)
    b = longtail_indices(targets, [50, 20, 8, 3], seed=0)
    c = longtail_indices(targets, [50, 20, 8, 3], seed=1)
    assert a.tolist() == b.tolist()
    assert a.tolist() != c.tolist()


def test_indices_too_many_requested():
    with pytest.raises(DataError, match="class 1 should keep 5 images but the data has only 2"):
        longtail_indices([0, 0, 0, 1, 1], [3, 5])


def test_class_order():
    names = ["a", "b", "c"]
    assert resolve_class_order(None, names) == [0, 1, 2]
    assert resolve_class_order("reverse", names) == [2, 1, 0]
    assert resolve_class_order(["c", 0, "b"], names) == [2, 0, 1]
    assert sorted(resolve_class_order("random", names, seed=3)) == [0, 1, 2]
    assert ordered_counts([100, 10, 1], [2, 0, 1]) == [10, 1, 100]
    with pytest.raises(ConfigError, match="exactly once"):
        resolve_class_order([0, 0, 1], names)
    with pytest.raises(ConfigError, match="class names are"):
        resolve_class_order(["a", "b", "zebra"], names)
