"""Test-wide settings: nothing a test does writes outside its temporary folders."""
from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Statistics caches and the default data root go to temporary folders, never to $HOME."""
    monkeypatch.setenv("PURENOISE_CACHE_DIR", str(tmp_path_factory.mktemp("user_cache")))
    monkeypatch.setenv("PURENOISE_DATA", str(tmp_path_factory.mktemp("default_data")))
