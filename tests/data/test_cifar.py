import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from tests.helpers.writers import CIFAR10_NAMES, write_cifar10, write_cifar100
from purenoise.data import as_uint8_tensor, create_dataset, get_targets, longtail_counts, longtail_indices
from purenoise.errors import ConfigError, DataError, DataNotFoundError


def test_cifar10_lt_from_fixture(cifar10_root):
    root, images, labels = cifar10_root
    bundle = create_dataset("cifar10_lt", root, ratio=10, verify=False)
    counts = longtail_counts(20, 10, 10)
    assert bundle.class_counts == counts
    assert isinstance(bundle.train, torchvision.datasets.CIFAR10)
    assert len(bundle.train) == sum(counts)
    assert bundle.train.classes == CIFAR10_NAMES == bundle.info.class_names
    # The subset is LDAM's selection of the file-order images, grouped by class.
    expected = longtail_indices(labels, counts, seed=0)
    assert np.array_equal(bundle.train.data, images[expected])
    assert get_targets(bundle.train) == labels[expected].tolist()
    img, label = bundle.train[3]
    assert isinstance(img, Image.Image) and img.size == (32, 32) and label == labels[expected[3]]
    assert len(bundle.test) == 30 and bundle.test.train is False
    info = bundle.info
    assert (info.num_classes, info.image_size, info.channels) == (10, (32, 32), 3)
    assert info.options["ratio"] == 10.0 and info.options["n_max"] == 20 and info.options["seed"] == 0


def test_cifar10_lt_stats_are_those_of_the_subset(cifar10_root):
    root, images, labels = cifar10_root
    bundle = create_dataset("cifar10_lt", root, ratio=10, verify=False)
    subset = images[longtail_indices(labels, longtail_counts(20, 10, 10))].astype(np.float64) / 255
    assert np.allclose(bundle.info.mean, subset.mean(axis=(0, 1, 2)), atol=1e-9)
    assert np.allclose(bundle.info.std, subset.std(axis=(0, 1, 2)), atol=1e-9)


def test_as_uint8_tensor_cifar(cifar10_root):
    root, images, labels = cifar10_root
    bundle = create_dataset("cifar10", root, verify=False, stats=False)
    x, y = as_uint8_tensor(bundle.train)
    assert x.dtype == torch.uint8 and x.shape == (200, 3, 32, 32)
    assert torch.equal(x, torch.from_numpy(images).permute(0, 3, 1, 2))
    assert y.dtype == torch.int64 and y.tolist() == labels.tolist()
    assert bundle.class_counts == [20] * 10
    sub = torch.utils.data.Subset(bundle.train, [5, 1])
    xs, ys = as_uint8_tensor(sub)
    assert torch.equal(xs, x[[5, 1]]) and ys.tolist() == [labels[5], labels[1]]
    assert get_targets(sub) == [labels[5], labels[1]]


def test_transform_is_set(cifar10_root):
    root, _, _ = cifar10_root
    bundle = create_dataset("cifar10_lt", root, ratio=10, verify=False, stats=False,
                            transform=lambda im: "train", test_transform=lambda im: "test")
    assert bundle.train[0][0] == "train" and bundle.test[0][0] == "test"


def test_md5_verification_rejects_non_official_files(cifar10_root):
    root, _, _ = cifar10_root
    with pytest.raises(DataError, match="official CIFAR-10 checksum.*verify=False"):
        create_dataset("cifar10_lt", root)


def test_missing_files_message(tmp_path):
    with pytest.raises(DataNotFoundError) as e:
        create_dataset("cifar10_lt", tmp_path)
    msg = str(e.value)
    assert str(tmp_path / "cifar-10-batches-py") in msg and "download=True" in msg
    assert "cifar-10-python.tar.gz" in msg


def test_root_may_be_the_extracted_folder(cifar10_root):
    root, _, _ = cifar10_root
    bundle = create_dataset("cifar10_lt", root / "cifar-10-batches-py", ratio=10, verify=False, stats=False)
    assert len(bundle.train) == sum(longtail_counts(20, 10, 10))


def test_damaged_pickle(cifar10_root):
    root, _, _ = cifar10_root
    (root / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="data_batch_3"):
        create_dataset("cifar10_lt", root, ratio=10, verify=False)


def test_cifar100_lt_from_fixture(tmp_path):
    data = write_cifar100(tmp_path)
    bundle = create_dataset("cifar100_lt", tmp_path, ratio=3, verify=False, stats=False)
    counts = longtail_counts(6, 100, 3)
    assert bundle.class_counts == counts and len(bundle.train) == sum(counts)
    assert isinstance(bundle.train, torchvision.datasets.CIFAR100)
    assert bundle.info.class_names[:2] == ["fine00", "fine01"] and bundle.info.num_classes == 100
    images, fine = data["train"]
    idx = longtail_indices(fine, counts)
    assert np.array_equal(bundle.train.data, images[idx])
    assert get_targets(bundle.train) == fine[idx].tolist()  # fine labels, not coarse
    assert len(bundle.test) == 200


def test_step_profile_and_class_order(cifar10_root):
    root, _, labels = cifar10_root
    bundle = create_dataset("cifar10_lt", root, ratio=4, profile="step", class_order="reverse",
                            verify=False, stats=False)
    assert bundle.class_counts == [5] * 5 + [20] * 5
    assert np.bincount(get_targets(bundle.train), minlength=10).tolist() == bundle.class_counts


def test_bad_options(cifar10_root):
    root, _, _ = cifar10_root
    with pytest.raises(ConfigError, match="no option 'ratoi'.*valid options"):
        create_dataset("cifar10_lt", root, ratoi=10)
    with pytest.raises(ConfigError, match="ratio"):
        create_dataset("cifar10_lt", root, ratio=0.5, verify=False)
    with pytest.raises(ConfigError, match="n_max=50 asks for more images"):
        create_dataset("cifar10_lt", root, ratio=10, n_max=50, verify=False)


def test_fixture_is_readable_by_torchvision_itself(cifar10_root, monkeypatch):
    # The fixture must be the real format: torchvision's own class (md5 check bypassed) reads the
    # same pixels and labels as purenoise.
    root, images, labels = cifar10_root
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    ref = torchvision.datasets.CIFAR10(str(root), train=True)
    assert np.array_equal(ref.data, images) and ref.targets == labels.tolist()
    assert ref.classes == CIFAR10_NAMES


def test_download_true_goes_through_torchvision(tmp_path, monkeypatch):
    calls = []

    class FakeDownload(torchvision.datasets.CIFAR10):  # stands in for the network download
        def __init__(self, root, train=True, download=False, **kwargs):
            calls.append((root, download))
            write_cifar10(Path(root))

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeDownload)
    with pytest.raises(DataNotFoundError):
        create_dataset("cifar10_lt", tmp_path)
    assert calls == []  # never downloads unless asked
    bundle = create_dataset("cifar10_lt", tmp_path, download=True, ratio=10, verify=False, stats=False)
    assert calls == [(str(tmp_path), True)] and len(bundle.train) == sum(longtail_counts(20, 10, 10))


def test_datasets_pickle_for_dataloader_workers(cifar10_root):
    root, _, _ = cifar10_root
    train = create_dataset("cifar10_lt", root, ratio=10, verify=False, stats=False).train
    clone = pickle.loads(pickle.dumps(train))
    assert np.array_equal(clone.data, train.data) and clone.targets == train.targets


def test_verify_false_warns_that_unchecked_pickles_are_loaded(cifar10_root, monkeypatch):
    import warnings

    from purenoise.data import cifar

    root, _, _ = cifar10_root
    with pytest.warns(UserWarning, match=r"CIFAR-10: verify=False unpickles the files in .*cifar-10-batches-py "
                                         r"without checking .* can run code"):
        create_dataset("cifar10_lt", root, ratio=10, verify=False, stats=False)
    # Verified loading (checksums made to match) is silent and checks every file it unpickles.
    checked = []
    monkeypatch.setattr(cifar, "check_integrity", lambda path, md5: checked.append(Path(path).name) or True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        create_dataset("cifar10_lt", root, ratio=10, stats=False)
    batches = [f"data_batch_{i}" for i in range(1, 6)]
    assert sorted(checked) == sorted([*batches, "test_batch", "batches.meta", "batches.meta"])
