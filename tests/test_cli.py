"""The ``purenoise`` entry point: exit codes and output, in one process and under torchrun."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

_ENTRY = """
import atexit, sys
atexit.register(print, "interpreter finalized")
sys.argv = ["purenoise", *sys.argv[1:]]
from purenoise.cli import entry
entry()
"""


def _run(world_size: int, *args: str) -> subprocess.CompletedProcess:
    # Block-buffered pipes (no PYTHONUNBUFFERED): output survives only if entry() flushes it.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    env.update(WORLD_SIZE=str(world_size), RANK="0")
    return subprocess.run([sys.executable, "-c", _ENTRY, *args], capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.mark.parametrize("world_size", [1, 2])
def test_entry_flushes_output_and_keeps_the_exit_code(world_size, tmp_path):
    listed = _run(world_size, "data", "list")
    assert listed.returncode == 0, listed.stderr
    assert "cifar10_lt" in listed.stdout and "fmnist_lt" in listed.stdout
    # A torchrun worker skips interpreter finalization (atexit never runs); a lone process does not.
    assert ("interpreter finalized" in listed.stdout) == (world_size == 1)

    failed = _run(world_size, "train", "-c", str(tmp_path / "missing.yaml"))
    assert failed.returncode == 2
    assert "purenoise: error:" in failed.stderr and "missing.yaml" in failed.stderr
