import numpy as np
import pytest
import torch
import torch.distributed as dist
from scipy import stats
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

from purenoise.data import (
    ClassAwareSampler,
    ClassBalancedSampler,
    SquareRootSampler,
    create_sampler,
    longtail_counts,
    sampler_for_epoch,
)
from purenoise.errors import ConfigError
from purenoise.schemes import noise_for_epoch, sampling_for_epoch

COUNTS = longtail_counts(5000, 10, 100)  # CIFAR-10-LT
P_STRICT = 1e-6


@pytest.fixture(scope="module")
def labels():
    return np.random.default_rng(0).permutation(np.repeat(np.arange(10), COUNTS))


def class_freq(labels, draw):
    return np.bincount(labels[draw], minlength=10)


def test_balanced_class_frequencies(labels):
    s = ClassBalancedSampler(labels, num_samples=200_000, seed=1)
    draw = np.fromiter(iter(s), dtype=np.int64)
    assert len(draw) == len(s) == 200_000
    assert stats.chisquare(class_freq(labels, draw)).pvalue > P_STRICT
    # the same test has the power to reject instance sampling's frequencies
    inst = ClassAwareSampler(labels, num_samples=200_000, seed=1, power=1.0).global_draw()
    assert stats.chisquare(class_freq(labels, inst)).pvalue < P_STRICT
    assert stats.chisquare(class_freq(labels, inst), f_exp=np.array(COUNTS) / sum(COUNTS) * 200_000).pvalue > P_STRICT


def test_uniform_within_the_rarest_class(labels):
    draw = ClassBalancedSampler(labels, num_samples=200_000, seed=2).global_draw()
    rare = draw[labels[draw] == 9]
    members = np.flatnonzero(labels == 9)
    assert set(rare.tolist()) <= set(members.tolist())
    freq = np.array([np.sum(rare == m) for m in members])
    assert stats.chisquare(freq).pvalue > P_STRICT


def test_square_root_sampling(labels):
    s = SquareRootSampler(labels, num_samples=200_000, seed=3)
    expected = np.sqrt(COUNTS) / np.sqrt(COUNTS).sum()
    assert np.allclose(s.class_probs, expected)
    assert stats.chisquare(class_freq(labels, s.global_draw()), f_exp=expected * 200_000).pvalue > P_STRICT


def test_default_epoch_length_is_dataset_size(labels):
    assert len(ClassBalancedSampler(labels)) == len(labels) == 12406


def test_deterministic_per_seed_and_epoch(labels):
    a, b = ClassBalancedSampler(labels, seed=5), ClassBalancedSampler(labels, seed=5)
    first = list(a)
    assert list(b) == first
    a.set_epoch(1)
    assert list(a) != first
    a.set_epoch(0)
    assert list(a) == first
    assert list(ClassBalancedSampler(labels, seed=6)) != first
    # No global RNG is used: reseeding or drawing from them changes nothing.
    torch.manual_seed(123)
    np.random.seed(123)
    assert list(ClassBalancedSampler(labels, seed=5)) == first


@pytest.mark.parametrize("replicas, num_samples", [(3, 1000), (4, 12406), (2, 7)])
def test_ddp_shares_are_disjoint_and_cover_the_global_draw(labels, replicas, num_samples):
    ranks = [ClassBalancedSampler(labels, num_samples, seed=9, num_replicas=replicas, rank=r) for r in range(replicas)]
    for s in ranks:
        s.set_epoch(4)
    shares = [list(s) for s in ranks]
    per_rank = -(-num_samples // replicas)
    assert all(len(sh) == len(s) == per_rank for sh, s in zip(shares, ranks))
    glob = ranks[0].global_draw(4)
    assert len(glob) == per_rank * replicas >= num_samples
    interleaved = np.empty(len(glob), dtype=np.int64)
    for r, sh in enumerate(shares):
        interleaved[r::replicas] = sh  # positions r, r + R, ...: disjoint by construction
    assert np.array_equal(interleaved, glob)
    single = ClassBalancedSampler(labels, per_rank * replicas, seed=9)
    single.set_epoch(4)
    assert np.array_equal(single.global_draw(), glob)  # the union is one seeded global draw


def test_replicas_default_from_torch_distributed(labels, tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        s = ClassBalancedSampler(labels)
        assert (s.num_replicas, s.rank) == (1, 0)
    finally:
        dist.destroy_process_group()
    with pytest.raises(ConfigError, match="rank must be in"):
        ClassBalancedSampler(labels, num_replicas=2, rank=2)


def test_many_classes_and_images():
    # More than 2**24 categories would break torch.multinomial; this sampler draws class and member.
    n = 2**24 + 5
    labels = np.arange(n, dtype=np.int64) % (2**22)
    s = ClassBalancedSampler(labels, num_samples=100_000, seed=0)
    draw = s.global_draw()
    assert draw.min() >= 0 and draw.max() < n and s.classes.size == 2**22


def test_schedule():
    assert [sampling_for_epoch("erm", e) for e in (0, 199)] == ["instance"] * 2
    assert [sampling_for_epoch("rs", e) for e in (0, 199)] == ["balanced"] * 2
    for scheme in ("drs", "open"):
        assert sampling_for_epoch(scheme, 159, defer_epoch=160) == "instance"
        assert sampling_for_epoch(scheme, 160, defer_epoch=160) == "balanced"
        assert sampling_for_epoch(scheme, 0) == "balanced"
    assert sampling_for_epoch("noise_aug", 10) == "instance"
    assert sampling_for_epoch("rs", 3, class_aware="sqrt") == "sqrt"
    assert sampling_for_epoch("drs", 3, 5, class_aware="sqrt") == "instance"
    assert sampling_for_epoch("drs", 5, 5, class_aware="sqrt") == "sqrt"
    assert [noise_for_epoch("open", e, 160) for e in (159, 160)] == [False, True]
    assert noise_for_epoch("noise_aug", 0) and not noise_for_epoch("drs", 190, 160)
    with pytest.raises(ConfigError, match="unknown training scheme 'ldam'"):
        sampling_for_epoch("ldam", 0)
    with pytest.raises(ConfigError, match="class-aware sampling 'instance'"):
        sampling_for_epoch("rs", 0, class_aware="instance")
    with pytest.raises(ConfigError, match="epoch must be a non-negative integer"):
        noise_for_epoch("open", -1)


def test_create_sampler_kinds(labels):
    inst = create_sampler("instance", labels, seed=3, epoch=2)
    assert isinstance(inst, DistributedSampler) and sorted(inst) == list(range(len(labels)))
    again = create_sampler("instance", labels, seed=3, epoch=2)
    assert list(inst) == list(again) != list(create_sampler("instance", labels, seed=3, epoch=3))
    halves = [list(create_sampler("instance", labels, seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
    assert not set(halves[0]) & set(halves[1]) and sorted(halves[0] + halves[1]) == list(range(len(labels)))
    bal = create_sampler("balanced", labels, seed=3, epoch=2)
    assert isinstance(bal, ClassBalancedSampler) and bal.epoch == 2
    assert isinstance(create_sampler("sqrt", labels), SquareRootSampler)
    s = sampler_for_epoch("drs", 170, labels, defer_epoch=160, seed=3)
    ref = ClassBalancedSampler(labels, seed=3)
    ref.set_epoch(170)
    assert isinstance(s, ClassBalancedSampler) and list(s) == list(ref)
    assert isinstance(sampler_for_epoch("drs", 10, labels, defer_epoch=160), DistributedSampler)
    with pytest.raises(ConfigError):
        create_sampler("random", labels)


def test_sampler_with_dataloader_and_dataset_labels():
    y = torch.tensor([0] * 90 + [1] * 10)
    ds = TensorDataset(torch.arange(100), y)
    ds.targets = y  # the sampler reads labels from the dataset without indexing it
    loader = DataLoader(ds, batch_size=50, sampler=ClassBalancedSampler(ds, num_samples=4000, seed=0))
    seen = torch.cat([b[1] for b in loader])
    assert len(seen) == 4000 and abs(seen.float().mean().item() - 0.5) < 0.05


def test_bad_arguments(labels):
    with pytest.raises(ConfigError):
        ClassBalancedSampler([])
    with pytest.raises(ConfigError):
        ClassBalancedSampler([0.5, 1.0])
    with pytest.raises(ConfigError):
        ClassBalancedSampler(labels, num_samples=0)
    with pytest.raises(ConfigError):
        ClassBalancedSampler(labels).set_epoch(-1)


def test_consecutive_passes_draw_new_epochs_without_set_epoch():
    """A plain loop over a DataLoader gets a new order each epoch; the orders repeat by seed and epoch."""
    labels = [0] * 50 + [1] * 20 + [2] * 5
    s = ClassBalancedSampler(labels, seed=3)
    first, second = list(s), list(s)
    assert first != second
    ref = ClassBalancedSampler(labels, seed=3)
    ref.set_epoch(1)
    assert list(ref) == second  # the second pass is epoch 1
    loader = torch.utils.data.DataLoader(list(range(len(labels))), batch_size=75,
                                         sampler=ClassBalancedSampler(labels, seed=3))
    e0, e1 = (next(iter(loader)).tolist() for _ in range(2))
    assert e0 == first and e1 == second
    s.set_epoch(0)
    assert list(s) == first  # set_epoch still chooses the epoch (a resume)
