"""A run folder belongs to one run: a run writes and deletes only its own files, in its own folder.

Every case goes through the CLI in this process (``purenoise.cli.main``) on a tiny image folder,
and checks the exit code, the one message the user sees and what is left on disk.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
from pathlib import Path

import pytest
import torch
import yaml

import purenoise.engine.trainer as trainer_module
from purenoise.cli import main
from purenoise.engine.checkpoint import load_checkpoint

from ..engine.conftest import tiny_config, write_folder

# Four steps per epoch (batch 8, at most 4 batches), one thread: a run takes about a second.
QUICK = {"epochs": 2, "limit_batches": 4, "batch_size": 8, "memorization": False}
TIMING = ("time_s", "images_per_s")


@pytest.fixture(autouse=True)
def _one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return write_folder(tmp_path_factory.mktemp("trust_data"))


@pytest.fixture
def config(tmp_path, folder):
    """Write a config file of the tiny run with ``overrides``; return its path."""
    def write(file: str = "cfg.yaml", **overrides) -> Path:
        path = tmp_path / file
        path.write_text(yaml.safe_dump(tiny_config(folder, **{**QUICK, **overrides})))
        return path
    return write


def _cli(capsys, *argv) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _error(code: int, err: str, expected: int = 2) -> str:
    assert code == expected, err
    assert err.count("purenoise: error:") == 1 and "Traceback" not in err, err
    return err


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _without_timing(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ============================================================================== where a run writes
@pytest.mark.parametrize("name", ["ABSOLUTE", "../escaped", "a/b", "..", "", "a\\b"])
def test_a_run_name_that_is_a_path_is_refused(name, config, tmp_path, capsys, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    if name == "ABSOLUTE":
        name = str(tmp_path / "elsewhere")
    code, _, err = _cli(capsys, "train", "-c", config(name=name))
    err = _error(code, err)
    assert f"config key 'name' (from {tmp_path / 'cfg.yaml'}) is {name!r}" in err
    assert "a run's name is a name, not a path" in err and "--out" in err
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "escaped").exists()
    assert list(work.iterdir()) == []


def test_an_out_folder_holding_other_files_is_refused_unless_reused(config, tmp_path, capsys):
    out = tmp_path / "project"
    out.mkdir()
    mine = {"notes.txt": b"my notes", "config.yaml": b"my: config\n", "model.pt": b"my model",
            "eval.json": b"{}", ".editor.tmp": b"my temporary file"}
    for name, data in mine.items():
        (out / name).write_bytes(data)
    cfg = config()
    code, _, err = _cli(capsys, "train", "-c", cfg, "-o", out)
    err = _error(code, err)
    assert f"the output folder {out} is not a purenoise run folder" in err
    assert ".editor.tmp, notes.txt" in err and "--reuse" in err
    assert _tree(out) == mine
    # Told to reuse it, the run replaces its own files there and deletes only its own temporary files.
    (out / ".model.pt.k2j4x9ab.tmp").write_bytes(b"half a model")
    code, _, err = _cli(capsys, "train", "-c", cfg, "-o", out, "--reuse")
    assert code == 0, err
    assert (out / "notes.txt").read_bytes() == b"my notes"
    assert (out / ".editor.tmp").read_bytes() == b"my temporary file"
    assert not (out / ".model.pt.k2j4x9ab.tmp").exists()
    assert load_checkpoint(out / "model.pt")["kind"] == "model"
    # From now on it is a run folder (it carries the marker): no --reuse needed.
    code, _, err = _cli(capsys, "train", "-c", cfg, "-o", out, "--resume", "auto")
    assert code == 0, err


def test_run_folders_of_the_previous_version_are_accepted(config, tmp_path, capsys):
    out = tmp_path / "old_run"
    out.mkdir()
    (out / "config.yaml").write_text("name: old\n")
    (out / "metrics.jsonl").write_text(json.dumps({"epoch": 0, "train_loss": 1.0}) + "\n")
    (out / "report.md").write_text("# a report written into the run folder\n")
    code, _, err = _cli(capsys, "train", "-c", config(), "-o", out)
    assert code == 0, err
    assert [m["epoch"] for m in _metrics(out)] == [0, 1]
    assert (out / "report.md").exists()


@pytest.mark.parametrize("link", ["checkpoints", "model.pt", "checkpoints/last.pt"])
def test_a_run_never_writes_or_deletes_through_a_symlink(link, config, tmp_path, capsys):
    cfg = config()
    run = tmp_path / "received"
    assert main(["train", "-c", str(cfg), "-o", str(run)]) == 0
    outside = tmp_path / "outside"
    outside.mkdir()
    target = outside / Path(link).name
    (run / link).rename(target)
    (run / link).symlink_to(target)
    stray = (target if target.is_dir() else outside) / ".last.pt.keepme.tmp"
    stray.write_bytes(b"not the run's")
    before = _tree(outside)
    code, _, err = _cli(capsys, "train", "-c", cfg, "-o", run, "--resume", "auto")
    err = _error(code, err)
    assert f"the run folder {run} holds symbolic links where a run writes its files ({link})" in err
    assert _tree(outside) == before


# ============================================================================== one run at a time
def _hold_lock(run: Path) -> int:
    """Lock the run folder as another purenoise process would (the test process holds it)."""
    run.mkdir(parents=True, exist_ok=True)
    fd = os.open(run / ".purenoise-run", os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps({"purenoise_run": 1, "pid": 4242, "host": "node7", "started": "noon"}).encode())
    return fd


def test_a_second_run_into_a_folder_in_use_is_refused(config, tmp_path, capsys):
    run = tmp_path / "run"
    fd = _hold_lock(run)
    try:
        code, _, err = _cli(capsys, "train", "-c", config(), "-o", run)
    finally:
        os.close(fd)
    err = _error(code, err)
    assert f"the run folder {run} is in use by another purenoise run (pid 4242 on node7, started noon)" in err
    assert not (run / "config.yaml").exists() and not (run / "metrics.jsonl").exists()
    # The run releases its lock when it ends: the folder can be locked again.
    code, _, err = _cli(capsys, "train", "-c", config(), "-o", run)
    assert code == 0, err
    assert json.loads((run / ".purenoise-run").read_text())["pid"] == os.getpid()
    os.close(_hold_lock(run))


def test_a_new_run_in_a_used_folder_clears_the_previous_results(config, tmp_path, capsys):
    run = tmp_path / "run"
    code, _, err = _cli(capsys, "train", "-c", config(method="open", defer_epoch=1), "-o", run)
    assert code == 0, err
    assert all((run / f).exists() for f in ("eval.json", "model.pt", "samples.pt", "checkpoints/epoch_0001.pt"))
    # A new run that diverges at once leaves nothing of the previous one that `report` could take as its.
    code, out, err = _cli(capsys, "train", "-c", config(), "-o", run, "--set", "lr=1e30")
    err = _error(code, err, expected=3)
    assert "no checkpoint was written yet" in err
    assert "removed the previous run's eval.json, model.pt, samples.pt, checkpoints/last.pt" in out
    assert sorted(p.name for p in run.rglob("*")) == [".purenoise-run", "checkpoints", "config.yaml",
                                                      "metrics.jsonl"]
    assert (run / "metrics.jsonl").read_text() == ""


# ============================================================================== signals
def _signal_at(monkeypatch, global_step: int, *, poison: bool = False) -> None:
    """SIGTERM arrives during ``global_step``, as the signal handler would note it; with ``poison``
    that step also leaves a NaN in the weights (a diverging run whose loss was still finite)."""
    real = trainer_module.Trainer.train_step
    calls = []

    def step(self, *args, **kwargs):
        result = real(self, *args, **kwargs)
        calls.append(1)
        if len(calls) - 1 == global_step:
            if poison:
                with torch.no_grad():
                    next(self.module.parameters()).view(-1)[0] = float("nan")
            self.signals.received = signal.SIGTERM
        return result

    monkeypatch.setattr(trainer_module.Trainer, "train_step", step)


@pytest.mark.parametrize("global_step", [5, 7], ids=["mid-epoch", "last-step"])
def test_a_signal_after_divergence_keeps_the_last_good_checkpoint(global_step, config, tmp_path, capsys,
                                                                  monkeypatch):
    run = tmp_path / "run"
    _signal_at(monkeypatch, global_step, poison=True)  # in epoch 2; last.pt of epoch 1 is good
    code, _, err = _cli(capsys, "train", "-c", config(), "-o", run)
    err = _error(code, err, expected=3)
    last = run / "checkpoints" / "last.pt"
    assert "SIGTERM received, but the run diverged: the weights or optimizer state are NaN or infinite" in err
    assert f"no checkpoint was written; the last good checkpoint is {last}" in err
    assert "saved a resumable checkpoint" not in err
    state = load_checkpoint(last)
    assert (state["epoch"], state["batch"]) == (1, 0)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_a_signal_in_an_epochs_last_step_keeps_its_metrics_line(config, tmp_path, capsys, monkeypatch):
    cfg = config(epochs=3)
    straight, run = tmp_path / "straight", tmp_path / "run"
    assert main(["train", "-c", str(cfg), "-o", str(straight)]) == 0
    _signal_at(monkeypatch, 7)  # the last step of epoch 2
    code, _, err = _cli(capsys, "train", "-c", cfg, "-o", run)
    assert code == 128 + signal.SIGTERM, err
    assert "saved a resumable checkpoint at the start of epoch 3" in err
    assert [m["epoch"] for m in _metrics(run)] == [0, 1]
    monkeypatch.undo()
    code, out, err = _cli(capsys, "train", "-c", cfg, "-o", run, "--resume", "auto")
    assert code == 0, err
    assert _without_timing(_metrics(run)) == _without_timing(_metrics(straight))
    a, b = load_checkpoint(straight / "checkpoints/last.pt")["model"], load_checkpoint(run / "checkpoints/last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


# ============================================================================== damaged files
@pytest.mark.parametrize("text, line", [("not json\n", 1), ('{"epoch": 0}\n{"epoch": 1\n', 2),
                                        ('{"epoch": 0}\n[1, 2]\n', 2), (b"\xff\xfe\x00", None)])
@pytest.mark.parametrize("resume", [False, True], ids=["new-run", "resume"])
def test_a_damaged_metrics_file_is_named_with_its_line(text, line, resume, config, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("name: x\n")
    (run / "metrics.jsonl").write_bytes(text if isinstance(text, bytes) else text.encode())
    code, _, err = _cli(capsys, "train", "-c", config(), "-o", run, *(["--resume", "auto"] if resume else []))
    err = _error(code, err)
    where = f"line {line}: not a metrics record" if line else "byte 0: not UTF-8 text"
    assert f"{run / 'metrics.jsonl'}, {where}" in err and "Move it away" in err
