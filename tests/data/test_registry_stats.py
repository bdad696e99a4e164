import json
import os
import pickle
import warnings

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
from purenoise.data.stats import compute_channel_stats, stats_cache_dir
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


def _cache_files(name: str) -> list:
    return sorted(stats_cache_dir().glob(f"{name}-*.json"))


def test_stats_cached_in_the_user_cache_and_reused(tiny_registered, monkeypatch):
    root = tiny_registered
    first = create_dataset("tiny_test")
    files = _cache_files("tiny_test")
    assert len(files) == 1 and not list(files[0].parent.glob("*.tmp"))
    assert not (root / ".purenoise_cache").exists()  # never in the data folder
    entry = json.loads(files[0].read_text())
    assert entry["mean"] == list(first.info.mean) and entry["class_counts"] == [3, 3]

    def boom(*a, **k):
        raise AssertionError("statistics recomputed despite the cache")

    monkeypatch.setattr(stats_mod, "compute_channel_stats", boom)
    assert create_dataset("tiny_test").info.mean == first.info.mean  # read from the cache
    with pytest.raises(AssertionError, match="recomputed"):
        create_dataset("tiny_test", value=7)  # other options: another key, so a miss


def test_cache_location_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("PURENOISE_CACHE_DIR", str(tmp_path / "mine"))
    assert stats_cache_dir() == tmp_path / "mine" / "stats"
    monkeypatch.delenv("PURENOISE_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert stats_cache_dir() == tmp_path / "xdg" / "purenoise" / "stats"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert stats_cache_dir() == tmp_path / "home" / ".cache" / "purenoise" / "stats"


def test_damaged_cache_is_recomputed_with_a_warning(tiny_registered):
    create_dataset("tiny_test")
    path = _cache_files("tiny_test")[0]
    path.write_text("{not json")
    with pytest.warns(UserWarning, match=r"statistics cache entry .* cannot be read"):
        assert create_dataset("tiny_test").info.mean == pytest.approx((0.2,))
    assert json.loads(path.read_text())["mean"] == pytest.approx([0.2])


def test_edited_cache_entry_is_not_used(tiny_registered):
    first = create_dataset("tiny_test").info
    path = _cache_files("tiny_test")[0]
    entry = json.loads(path.read_text())
    entry["mean"], entry["std"] = [0.9], [5.0]
    path.write_text(json.dumps(entry))
    with pytest.warns(UserWarning, match=r"statistics cache entry .* does not match its digest"):
        again = create_dataset("tiny_test").info
    assert (again.mean, again.std) == (first.mean, first.std)
    assert json.loads(path.read_text())["mean"] == list(first.mean)  # the entry is rewritten
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert create_dataset("tiny_test").info.mean == first.mean


def test_changed_pixels_or_image_files_are_a_cache_miss(cifar10_root, tmp_path):
    from PIL import Image

    root, _, _ = cifar10_root
    a = create_dataset("cifar10", root, verify=False)
    b = create_dataset("cifar10", root, verify=False)
    assert len(_cache_files("cifar10")) == 1 and (a.info.mean, a.info.std) == (b.info.mean, b.info.std)
    # The same description (name, options, root, size, counts) over other pixels: another entry.
    batch = root / "cifar-10-batches-py" / "data_batch_1"
    content = pickle.loads(batch.read_bytes())
    content["data"] = 255 - content["data"]
    batch.write_bytes(pickle.dumps(content))
    c = create_dataset("cifar10", root, verify=False)
    assert len(_cache_files("cifar10")) == 2 and c.info.mean != a.info.mean
    # An image file rewritten in place (same path): its size and time change the key.
    folder = tmp_path / "imgs"
    for split in ("train", "test"):
        for k in range(2):
            (folder / split / f"c{k}").mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (4, 4), (40 * k, 0, 0)).save(folder / split / f"c{k}" / "0.png")
    first = create_dataset("folder", folder).info.mean
    image = folder / "train" / "c0" / "0.png"
    Image.new("RGB", (4, 4), (255, 255, 255)).save(image)
    os.utime(image, ns=(10**18, 10**18))
    assert create_dataset("folder", folder).info.mean != first
    assert len(_cache_files("folder")) == 2


def test_cache_write_failure_warns(tiny_registered, monkeypatch):
    def fail(path, payload, **_):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(stats_mod, "atomic_write_json", fail)
    with pytest.warns(UserWarning, match="could not cache the statistics of tiny_test.*PURENOISE_CACHE_DIR"):
        assert create_dataset("tiny_test").info.mean == pytest.approx((0.2,))


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
