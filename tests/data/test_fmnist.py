import gzip
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

import purenoise.data.fmnist as fm
from purenoise.data import as_uint8_tensor, create_dataset, get_targets, longtail_counts, longtail_indices
from purenoise.data.fmnist import read_idx
from purenoise.errors import DataError, DataNotFoundError

from tests.helpers.references import ldam_reference
from tests.helpers.writers import idx_bytes, write_fmnist


def test_fmnist_lt_from_gz_fixture(fmnist_gz):
    folder, data = fmnist_gz
    images, labels = data["train"]
    bundle = create_dataset("fmnist_lt", folder, ratio=5)
    counts = longtail_counts(30, 10, 5)
    assert bundle.class_counts == counts and len(bundle.train) == sum(counts)
    assert isinstance(bundle.train, torchvision.datasets.FashionMNIST)
    idx = longtail_indices(labels, counts, seed=0)
    assert torch.equal(bundle.train.data, torch.from_numpy(images[idx]))
    assert get_targets(bundle.train) == labels[idx].tolist()
    img, label = bundle.train[0]
    assert isinstance(img, Image.Image) and img.mode == "L" and img.size == (28, 28)
    assert np.array_equal(np.asarray(img), images[idx[0]]) and label == labels[idx[0]]
    info = bundle.info
    assert (info.channels, info.image_size, info.num_classes) == (1, (28, 28), 10)
    assert info.class_names[0] == "T-shirt/top" and len(info.mean) == 1
    assert np.isclose(info.mean[0], images[idx].mean() / 255)
    x, y = as_uint8_tensor(bundle.train)
    assert x.shape == (sum(counts), 1, 28, 28) and torch.equal(x[:, 0], bundle.train.data)
    assert len(bundle.test) == 40


def test_torchvision_layout_with_raw_files(tmp_path):
    data = write_fmnist(tmp_path / "FashionMNIST" / "raw", gz=False)
    bundle = create_dataset("fmnist", tmp_path, stats=False)
    assert bundle.class_counts == [30] * 10
    # torchvision's own class reads this layout too: the fixture is the real format.
    ref = torchvision.datasets.FashionMNIST(str(tmp_path), train=True)
    assert torch.equal(ref.data, bundle.train.data) and torch.equal(ref.targets, bundle.train.targets)
    assert np.array_equal(bundle.train.data.numpy(), data["train"][0])


def test_read_idx_gz_and_raw_agree(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(arr))
    with gzip.open(tmp_path / "a.gz", "wb") as f:
        f.write(idx_bytes(arr))
    assert np.array_equal(read_idx(tmp_path / "a"), arr) and np.array_equal(read_idx(tmp_path / "a.gz"), arr)


def test_truncated_idx_names_the_file(tmp_path):
    write_fmnist(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="train-images-idx3-ubyte.*truncated"):
        create_dataset("fmnist_lt", tmp_path, ratio=5)


def test_missing_files_names_both_options(tmp_path, monkeypatch):
    with pytest.raises(DataNotFoundError) as e:
        create_dataset("fmnist_lt", tmp_path)
    msg = str(e.value)
    assert "apt-get install dataset-fashion-mnist" in msg and "download=True" in msg
    assert str(tmp_path / "FashionMNIST" / "raw") in msg
    # Without a root and without the Debian package, the default places are named.
    monkeypatch.setattr(fm, "DEBIAN_FMNIST_DIR", str(tmp_path / "no-debian"))
    with pytest.raises(DataNotFoundError, match="no-debian"):
        create_dataset("fmnist_lt")


debian = pytest.mark.skipif(
    not os.path.isfile(os.path.join(fm.DEBIAN_FMNIST_DIR, "train-images-idx3-ubyte.gz")),
    reason="Debian's dataset-fashion-mnist package is not installed",
)


@debian
def test_real_debian_fashion_mnist_lt():
    bundle = create_dataset("fmnist_lt")  # no root: the Debian files, read in place
    assert bundle.info.root == fm.DEBIAN_FMNIST_DIR
    assert len(bundle.train) == 14886
    assert bundle.class_counts == [6000, 3596, 2156, 1292, 774, 464, 278, 166, 100, 60]
    full = read_idx(os.path.join(fm.DEBIAN_FMNIST_DIR, "train-labels-idx1-ubyte.gz"))
    assert full.shape == (60000,) and np.bincount(full).tolist() == [6000] * 10
    reference = ldam_reference(full, bundle.class_counts, seed=0)  # LDAM-DRW's rule, global RNG
    assert get_targets(bundle.train) == full[reference].tolist()
    images = read_idx(os.path.join(fm.DEBIAN_FMNIST_DIR, "train-images-idx3-ubyte.gz"))
    assert np.array_equal(bundle.train.data.numpy(), images[reference])
    assert len(bundle.test) == 10000
    # Real images: the published pixel statistics of Fashion-MNIST's training set, and clothes
    # are darker at the border than in the middle.
    balanced = create_dataset("fmnist", stats=False).train.data.double() / 255
    assert abs(balanced.mean().item() - 0.2860) < 5e-4 and abs(balanced.std().item() - 0.3530) < 5e-4
    x, _ = as_uint8_tensor(bundle.train)
    assert x[:, :, 10:18, 10:18].float().mean() > 3 * x[:, :, :2, :].float().mean()
    assert bundle.info.mean[0] == pytest.approx(x.double().mean().item() / 255, abs=1e-9)
    assert not os.path.exists(os.path.join(fm.DEBIAN_FMNIST_DIR, ".purenoise_cache"))


def test_download_true_goes_through_torchvision(tmp_path, monkeypatch):
    calls = []

    def fake_download(root, train=True, download=False, **kwargs):  # stands in for the network
        calls.append((root, download))
        write_fmnist(Path(root) / "FashionMNIST" / "raw", gz=False)

    monkeypatch.setattr(torchvision.datasets, "FashionMNIST", fake_download)
    bundle = create_dataset("fmnist_lt", tmp_path, download=True, ratio=5, stats=False)
    assert calls == [(str(tmp_path), True)] and len(bundle.train) == sum(longtail_counts(30, 10, 5))
    clone = pickle.loads(pickle.dumps(bundle.train))  # DataLoader workers
    assert torch.equal(clone.data, bundle.train.data)
