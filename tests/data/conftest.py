"""Fixtures for the data tests: small datasets written in their real on-disk formats."""
from __future__ import annotations

import pytest

from ._writers import write_cifar10, write_fmnist


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Statistics caches and the default data root go to temporary folders, never to $HOME."""
    monkeypatch.setenv("PURENOISE_CACHE_DIR", str(tmp_path_factory.mktemp("user_cache")))
    monkeypatch.setenv("PURENOISE_DATA", str(tmp_path_factory.mktemp("default_data")))


@pytest.fixture
def cifar10_root(tmp_path):
    images, labels = write_cifar10(tmp_path)
    return tmp_path, images, labels


@pytest.fixture
def fmnist_gz(tmp_path):
    data = write_fmnist(tmp_path / "fm", gz=True)
    return tmp_path / "fm", data
