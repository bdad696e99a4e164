"""Checkpoints load with weights_only: crafted files are refused, older files still resume."""
from __future__ import annotations

import datetime
import io
import os
import random
import shlex
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import purenoise.data
import purenoise.engine.setup
from purenoise.cli import main
from purenoise.engine.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from purenoise.engine.seeding import _numpy_tuple, rng_state, set_rng_state
from purenoise.errors import ConfigError, ModelError

from .conftest import tiny_config


class _RunsCommand:
    """Unpickling this runs a shell command (what a malicious checkpoint would do)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def _cli(capsys, *argv) -> tuple[int, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def _assert_refused(code: int, err: str, path: Path) -> None:
    assert code == 2, err
    assert err.count("purenoise: error:") == 1 and "Traceback" not in err, err
    assert f"{path} is not a purenoise checkpoint, or not one from a trusted source" in err
    assert "nothing in it was executed" in err


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_folder) -> tuple[Path, Path]:
    """A finished two-epoch OPeN run (branch point at epoch 1) and its config file."""
    base = tmp_path_factory.mktemp("trained")
    cfg = base / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(tiny_folder, method="open", epochs=2, defer_epoch=1)))
    run = base / "run"
    assert main(["train", "-c", str(cfg), "-o", str(run)]) == 0
    return run, cfg


@pytest.fixture
def crafted(tmp_path, tiny_folder) -> tuple[Path, Path]:
    """A checkpoint-shaped file whose loading would create ``marker``, and that marker's path."""
    marker = tmp_path / "marker"
    payload = _RunsCommand(f"touch {shlex.quote(str(marker))}")
    state = {"format": CHECKPOINT_FORMAT, "kind": "model", "config": tiny_config(tiny_folder), "model": {},
             "epoch": 1, "batch": 0, "payload": payload}
    path = tmp_path / "crafted.pt"
    torch.save(state, path)
    # The payload is live: unrestricted unpickling runs it.
    torch.load(path, weights_only=False)
    assert marker.exists()
    marker.unlink()
    return path, marker


def test_every_saved_checkpoint_loads_with_plain_weights_only(trained):
    run, _ = trained
    for path in (run / "checkpoints" / "last.pt", run / "checkpoints" / "epoch_0001.pt", run / "model.pt"):
        state = torch.load(path, weights_only=True)  # no extra allowed globals
        assert state["format"] == CHECKPOINT_FORMAT


def test_crafted_checkpoint_is_refused_by_every_entry_point(crafted, capsys, tmp_path, trained):
    path, marker = crafted
    _, cfg = trained
    image = tmp_path / "image.png"
    from PIL import Image

    Image.new("RGB", (16, 16)).save(image)
    commands = [
        ("eval", "--checkpoint", path, "--workers", "0"),
        ("predict", "--checkpoint", path, image),
        ("train", "--resume", path, "-o", tmp_path / "resumed"),
        ("train", "-c", cfg, "--resume", path, "-o", tmp_path / "resumed_cfg"),
        ("train", "-c", cfg, "--init-from", path, "-o", tmp_path / "branched"),
    ]
    for argv in commands:
        code, err = _cli(capsys, *argv)
        _assert_refused(code, err, path)
        assert not marker.exists(), argv
    with pytest.raises(ModelError):
        load_checkpoint(path)
    assert not marker.exists()


def _old_format(path: Path, dest: Path) -> Path:
    """``path`` rewritten as the earlier code wrote it: NumPy's state as np.random.get_state()."""
    state = load_checkpoint(path)
    state["rng"]["numpy"] = _numpy_tuple(state["rng"]["numpy"])
    assert isinstance(state["rng"]["numpy"][1], np.ndarray)
    torch.save(state, dest)  # not save_checkpoint: it refuses the ndarray
    return dest


def test_old_format_checkpoint_still_resumes_exactly(trained, tmp_path, capsys):
    run, cfg = trained
    old = _old_format(run / "checkpoints" / "epoch_0001.pt", tmp_path / "old.pt")
    with pytest.raises(Exception):
        torch.load(old, weights_only=True)  # needs the NumPy allowance
    loaded = load_checkpoint(old)
    reference = load_checkpoint(run / "checkpoints" / "epoch_0001.pt")["rng"]["numpy"]
    assert np.array_equal(loaded["rng"]["numpy"][1], reference["key"].numpy().astype(np.uint32))
    resumed = tmp_path / "resumed"
    assert main(["train", "-c", str(cfg), "--resume", str(old), "-o", str(resumed)]) == 0
    a = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(resumed / "checkpoints" / "last.pt")["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_rng_state_round_trips_through_weights_only_and_the_old_tuple():
    np.random.seed(3)
    np.random.standard_normal()  # leaves a cached Gaussian in the state
    random.seed(4)
    state = rng_state()
    buf = io.BytesIO()
    torch.save(state, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    expected = np.random.standard_normal(7), random.random(), torch.rand(3)
    for restored in (loaded, {**loaded, "numpy": _numpy_tuple(loaded["numpy"])}):
        set_rng_state(restored)
        again = np.random.standard_normal(7), random.random(), torch.rand(3)
        assert np.array_equal(expected[0], again[0]) and expected[1] == again[1]
        assert torch.equal(expected[2], again[2])


def test_saving_refuses_what_weights_only_cannot_load(tmp_path):
    with pytest.raises(ConfigError, match=r"config key 'model_options\.when' is datetime\.date"):
        save_checkpoint(tmp_path / "a.pt", {"config": {"model_options": {"when": datetime.date(2024, 1, 31)}}})
    with pytest.raises(TypeError, match=r"checkpoint entry 'class_counts\[1\]' is a numpy\.int64"):
        save_checkpoint(tmp_path / "b.pt", {"class_counts": [3, np.int64(2)]})
    assert not (tmp_path / "a.pt").exists() and not (tmp_path / "b.pt").exists()


def _no_data(*args, **kwargs):
    raise AssertionError("a dataset was built")


def test_predict_builds_no_dataset(trained, tmp_path, capsys, monkeypatch, tiny_folder):
    run, _ = trained
    image = next((tiny_folder / "test" / "class1").glob("*.png"))
    monkeypatch.setattr(purenoise.engine.setup, "create_dataset", _no_data)  # build_data's
    monkeypatch.setattr(purenoise.engine.setup, "build_data", _no_data)
    code, _ = _cli(capsys, "predict", "--checkpoint", run / "model.pt", image)
    assert code == 0
    # A training checkpoint lacks the classes and normalization: refused, no dataset is read.
    code, err = _cli(capsys, "predict", "--checkpoint", run / "checkpoints" / "last.pt", image)
    assert code == 2 and "is a training checkpoint" in err and "model.pt" in err


def _with_config(path: Path, dest: Path, **changes) -> Path:
    state = load_checkpoint(path)
    state["config"] = {**state["config"], **changes}
    save_checkpoint(dest, {k: v for k, v in state.items() if k != "format"})
    return dest


def test_eval_never_downloads_and_prefers_the_users_root(trained, tmp_path, capsys, monkeypatch, tiny_folder):
    run, _ = trained
    calls = []
    real = purenoise.engine.setup.create_dataset  # the name build_data calls

    def recording(name, root=None, **kwargs):
        calls.append((root, kwargs.get("download")))
        return real(name, root, **kwargs)

    monkeypatch.setattr(purenoise.engine.setup, "create_dataset", recording)
    for source in (run / "model.pt", run / "checkpoints" / "last.pt"):
        # The file asks for a download into a folder of its choosing: neither happens.
        elsewhere = _with_config(source, tmp_path / source.name, download=True, data_root=str(tmp_path / "x"))
        calls.clear()
        code, err = _cli(capsys, "eval", "--checkpoint", elsewhere, "--data-root", tiny_folder, "--workers", "0")
        assert code == 0, err
        assert calls == [(str(tiny_folder), False)]
        # Without --data-root the file's own data_root is read only inside the default data
        # folder, still without downloading.
        own = _with_config(source, tmp_path / f"own_{source.name}", download=True)
        monkeypatch.setenv("PURENOISE_DATA", str(tiny_folder.parent))
        calls.clear()
        code, err = _cli(capsys, "eval", "--checkpoint", own, "--workers", "0")
        assert code == 0, err
        assert calls == [(str(tiny_folder), False)]
        monkeypatch.setenv("PURENOISE_DATA", str(tmp_path / "default"))
        calls.clear()
        code, err = _cli(capsys, "eval", "--checkpoint", own, "--workers", "0")
        assert code == 2 and f"--data-root {tiny_folder}" in err, err
        assert calls == [(None, False)]
    assert not (tmp_path / "x").exists()


def test_resume_from_the_old_format_run_folder(trained, tmp_path, capsys):
    """``--resume auto`` on a run folder whose last.pt has the old NumPy state continues to the end."""
    run, cfg = trained
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    _old_format(run / "checkpoints" / "epoch_0001.pt", copy / "checkpoints" / "last.pt")
    assert main(["train", "-c", str(cfg), "--resume", "auto", "-o", str(copy)]) == 0
    a = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(copy / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
