"""Fixtures for the data tests: small datasets written in their real on-disk formats."""
from __future__ import annotations

import pytest

from tests.helpers.writers import write_cifar10, write_fmnist


@pytest.fixture
def cifar10_root(tmp_path):
    images, labels = write_cifar10(tmp_path)
    return tmp_path, images, labels


@pytest.fixture
def fmnist_gz(tmp_path):
    data = write_fmnist(tmp_path / "fm", gz=True)
    return tmp_path / "fm", data
