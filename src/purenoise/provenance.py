"""Where a result came from: the code, the library versions and the machine that computed it.

Every run's eval.json carries :func:`provenance` under ``"provenance"``, so a number can be traced
to the purenoise version and, when the package runs from a git checkout, to the commit (and whether
the tree had uncommitted changes). CPU runs repeat bit for bit on one CPU model and thread count,
not across them, so both are recorded too.

Git is asked with fixed arguments in the package's own folder, never in a folder a received file
names; outside a checkout, or without git, the commit fields are None.
"""
from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["provenance", "cpu_model", "git_state"]

_PACKAGE_DIR = Path(__file__).resolve().parent


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=_PACKAGE_DIR, capture_output=True, text=True,
                             timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def git_state() -> dict[str, Any]:
    """``{"git_commit": sha | None, "git_dirty": bool | None}`` of the checkout purenoise runs from.

    Installed from a wheel (no checkout above the package) both are None. ``git_dirty`` counts
    tracked files with changes, not untracked ones (run folders and caches are untracked).
    """
    top = _git("rev-parse", "--show-toplevel")
    if top is None or not (Path(top) / "src" / "purenoise").resolve() == _PACKAGE_DIR:
        return {"git_commit": None, "git_dirty": None}
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


def provenance(device: Any = None) -> dict[str, Any]:
    """The fields eval.json records: versions, commit, CPU model, thread counts and the device.

    Args:
        device: The torch device the run computed on; a CUDA device is recorded by its name.
    """
    import torch

    from purenoise import __version__

    return {
        "purenoise": __version__,
        **git_state(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": (torch.cuda.get_device_name(device) if device is not None and torch.device(device).type == "cuda"
                   else str(device or "cpu")),
    }
