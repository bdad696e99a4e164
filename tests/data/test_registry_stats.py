import json

import numpy as np
import pytest
import torch
from torch.utils.data import ConcatDataset, Dataset, Subset

import purenoise.data.stats as stats_mod
from purenoise.data import (
    DatasetBundle,
    DatasetInfo,
    create_dataset,
    dataset_options,
    get_targets,
    list_datasets,
    register_dataset,
)
from purenoise.data.registry import _REGISTRY
from purenoise.data.stats import compute_channel_stats, stats_cache_dirs
from purenoise.errors import ConfigError


def test_list_datasets():
    assert set(list_datasets()) >= {"cifar10_lt", "cifar100_lt", "cifar10", "cifar100", "fmnist_lt", "fmnist",
                                    "imagenet_lt", "places_lt", "celeba5", "folder"}


def test_unknown_name_suggests_and_aliases(cifar10_root):
    with pytest.raises(ConfigError, match="unknown dataset 'cifar10lt'; did you mean cifar10_lt"):
        create_dataset("cifar10lt")
    root, _, _ = cifar10_root
    assert create_dataset("CIFAR10-LT", root, ratio=10, verify=False, stats=False).info.name == "cifar10_lt"


def test_dataset_options():
    opts = dataset_options("cifar10_lt")
    assert opts["ratio"] == 100 and opts["profile"] == "exp" and opts["seed"] == 0
    assert "stats_max_images" in opts and dataset_options("imagenet_lt")["stats_max_images"] == 20000


class Tiny(Dataset):
    def __init__(self, n, value):
        self.x = torch.full((n, 1, 4, 4), value, dtype=torch.uint8)
        self.targets = [i % 2 for i in range(n)]

    def __len__(self):
        return len(self.targets)

    def __getitem__(self, i):
        return self.x[i], self.targets[i]


@pytest.fixture
def tiny_registered(tmp_path):
    @register_dataset("tiny_test")
    def tiny(root, *, download=False, n: int = 6, value: int = 51):
        """A tiny in-memory dataset."""
        info = DatasetInfo("tiny_test", 2, ["a", "b"], (4, 4), 1, options={"n": n, "value": value}, root=str(tmp_path))
        return DatasetBundle(Tiny(n, value), None, [n - n // 2, n // 2], info)

    yield tmp_path
    del _REGISTRY["tiny_test"]


def test_custom_dataset_and_generic_stats(tiny_registered):
    bundle = create_dataset("tiny_test", value=102)
    assert bundle.test is None and bundle.class_counts == [3, 3]
    assert bundle.info.mean == pytest.approx((0.4,)) and bundle.info.std == pytest.approx((0.0,), abs=1e-7)
    with pytest.raises(ConfigError, match="no option 'colour'.*valid options: mean, n, stats"):
        create_dataset("tiny_test", colour=1)


def test_stats_cached_next_to_data_and_reused(tiny_registered, monkeypatch):
    root = tiny_registered
    first = create_dataset("tiny_test")
    files = list((root / ".purenoise_cache" / "stats").glob("tiny_test-*.json"))
    assert len(files) == 1 and not list(files[0].parent.glob("*.tmp"))
    entry = json.loads(files[0].read_text())
    assert entry["mean"] == list(first.info.mean) and entry["class_counts"] == [3, 3]

    def boom(*a, **k):
        raise AssertionError("statistics recomputed despite the cache")

    monkeypatch.setattr(stats_mod, "compute_channel_stats", boom)
    assert create_dataset("tiny_test").info.mean == first.info.mean  # read from the cache
    with pytest.raises(AssertionError, match="recomputed"):
        create_dataset("tiny_test", value=7)  # other options: another key, so a miss


def test_damaged_cache_is_recomputed(tiny_registered):
    root = tiny_registered
    create_dataset("tiny_test")
    path = next((root / ".purenoise_cache" / "stats").glob("tiny_test-*.json"))
    path.write_text("{not json")
    assert create_dataset("tiny_test").info.mean == pytest.approx((0.2,))
    assert json.loads(path.read_text())["mean"] == pytest.approx([0.2])


def test_cache_falls_back_to_user_cache(tiny_registered, monkeypatch, tmp_path_factory):
    user = tmp_path_factory.mktemp("fallback")
    monkeypatch.setenv("PURENOISE_CACHE_DIR", str(user))
    real_write = stats_mod._write_atomic

    def write(path, payload):
        if ".purenoise_cache" in str(path):
            raise PermissionError(13, "Permission denied", str(path))
        real_write(path, payload)

    monkeypatch.setattr(stats_mod, "_write_atomic", write)
    create_dataset("tiny_test")
    assert len(list((user / "stats").glob("tiny_test-*.json"))) == 1


def test_system_folders_are_never_cache_locations(monkeypatch, tmp_path):
    monkeypatch.setenv("PURENOISE_CACHE_DIR", str(tmp_path))
    assert stats_cache_dirs("/usr/share/datasets/fashion-mnist") == [tmp_path / "stats"]
    assert stats_cache_dirs(str(tmp_path / "d"))[0] == tmp_path / "d" / ".purenoise_cache" / "stats"


def test_explicit_and_disabled_stats(tiny_registered):
    b = create_dataset("tiny_test", mean=[0.5], std=[0.25])
    assert (b.info.mean, b.info.std) == ((0.5,), (0.25,))
    assert create_dataset("tiny_test", stats=False).info.mean is None
    with pytest.raises(ConfigError, match="both mean and std"):
        create_dataset("tiny_test", mean=[0.5])
    with pytest.raises(ConfigError, match="1 finite value"):
        create_dataset("tiny_test", mean=[0.5, 0.5], std=[0.2, 0.2])
    with pytest.raises(ConfigError, match="std must be positive"):
        create_dataset("tiny_test", mean=[0.5], std=[0.0])


def test_stats_on_a_seeded_subset(cifar10_root):
    root, images, _ = cifar10_root
    train = create_dataset("cifar10", root, verify=False, stats=False).train
    full = compute_channel_stats(train)
    assert np.allclose(full[0], images.reshape(-1, 3).mean(0) / 255)
    a, b = compute_channel_stats(train, max_images=50), compute_channel_stats(train, max_images=50)
    assert a == b and a != full


def test_get_targets_variants(cifar10_root):
    root, _, labels = cifar10_root
    train = create_dataset("cifar10", root, verify=False, stats=False).train
    assert get_targets(ConcatDataset([train, Subset(train, [3])])) == labels.tolist() + [labels[3]]
    with pytest.raises(TypeError, match="targets"):
        get_targets(torch.utils.data.TensorDataset(torch.zeros(2)))
