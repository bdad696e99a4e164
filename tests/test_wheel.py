"""The package as a user installs it: a wheel in a fresh virtual environment, used outside the repository.

The wheel carries the shipped configs, so ``purenoise train --config fmnist_lt_r100/erm`` works
without a clone. The fresh environment gets the wheel only; its dependencies (torch, ...) come
from this test's interpreter through a path file, so nothing is downloaded.
"""
from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from tests.helpers.writers import write_fmnist

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A fresh venv with the purenoise wheel built from this checkout installed into it."""
    tmp = tmp_path_factory.mktemp("wheel")
    # Built from a copy of the sources only: a build/ folder left in the checkout by an earlier
    # build would otherwise put modules that no longer exist into the wheel.
    source = tmp / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                          "-w", str(tmp / "dist"), str(source)], capture_output=True, text=True, cwd=tmp)
    assert out.returncode == 0, out.stderr[-2000:]
    wheel = next((tmp / "dist").glob("purenoise-*.whl"))
    env_dir = tmp / "env"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    out = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                         capture_output=True, text=True, cwd=tmp)
    assert out.returncode == 0, out.stderr[-2000:]
    target = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    # The dependencies, and not this checkout's purenoise (an editable install is a finder hook, not a path).
    (Path(target) / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    return env_dir, tmp


def _run(env_dir: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([str(env_dir / "bin" / "purenoise"), *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=300)


@pytest.mark.slow
def test_wheel_trains_a_shipped_config_by_name_outside_the_repository(installed):
    env_dir, tmp = installed
    where = subprocess.run([str(env_dir / "bin" / "python"), "-c", "import purenoise; print(purenoise.__file__)"],
                           capture_output=True, text=True, cwd=tmp, env={"PATH": os.environ.get("PATH", "")})
    assert str(env_dir) in where.stdout, where.stdout + where.stderr  # the wheel's copy, not the checkout
    listed = _run(env_dir, tmp, "configs")
    assert listed.returncode == 0 and "fmnist_lt_r100/erm" in listed.stdout.splitlines()
    keys = _run(env_dir, tmp, "config", "keys")
    assert keys.returncode == 0 and "defer_epoch:" in keys.stdout
    write_fmnist(tmp / "fm", per_class=30, test_per_class=4)
    out = _run(env_dir, tmp, "train", "--config", "fmnist_lt_r100/erm", "--out", str(tmp / "run"),
               "--set", f"data_root={tmp / 'fm'}", "--set", "epochs=1", "--set", "defer_epoch=1",
               "--set", "milestones=[]", "--set", "warmup_epochs=0", "--set", "ratio=10",
               "--set", "dataset_options.n_max=30", "--set", "batch_size=16", "--set", "progress=false")
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert (tmp / "run" / "eval.json").is_file()
    missing = _run(env_dir, tmp, "train", "--config", "fmnist_lt_r100/nope")
    assert missing.returncode == 2 and "fmnist_lt_r100/" in missing.stderr and "Traceback" not in missing.stderr


def test_wheel_holds_exactly_the_package_modules(installed):
    """Every module of src/purenoise is in the wheel, and nothing else is (no moved-away module)."""
    _, tmp = installed
    wheel = next((tmp / "dist").glob("purenoise-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        packed = {n for n in z.namelist() if n.startswith("purenoise/") and n.endswith(".py")}
    src = REPO / "src"
    here = {p.relative_to(src).as_posix() for p in (src / "purenoise").rglob("*.py")}
    assert packed == here, (sorted(packed - here), sorted(here - packed))
