"""Reliability: bad input, interruptions, divergence, full disks and failing ranks cost no run.

Every case goes through the CLI (``purenoise.cli.main`` in this process, or ``python -m
purenoise`` / torchrun in a subprocess where a real signal or a second process is the point) and
checks what the user sees (exit code, one message naming what is wrong) and what is left on disk.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import torch
import yaml

from purenoise.cli import main
from purenoise.engine.checkpoint import load_checkpoint, save_checkpoint
from purenoise.errors import ModelError

from tests.helpers.torchrun import outcome, torchrun
from .conftest import tiny_config, write_folder


@contextlib.contextmanager
def _threads(n: int):
    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@pytest.fixture(autouse=True)
def _one_thread():
    # Two OpenMP threads per process spin against each other on a busy 2-core machine (20x
    # slower); subprocesses get OMP_NUM_THREADS=1, so results also match bit for bit.
    with _threads(1):
        yield


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _write_cfg(folder: Path, tmp_path: Path, name: str = "cfg.yaml", **overrides) -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(tiny_config(folder, **overrides)))
    return path


def _cli(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _clean_error(code: int, err: str, expected_code: int = 2) -> str:
    assert code == expected_code, err
    assert err.count("purenoise: error:") == 1 and "Traceback" not in err, err
    return err


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


def _assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def _metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


@contextlib.contextmanager
def _reaped(proc: subprocess.Popen):
    """Kill ``proc`` (and its process group, where it leads one) if a check fails first."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                if os.getpgid(proc.pid) == proc.pid:
                    os.killpg(proc.pid, signal.SIGKILL)
                else:
                    proc.kill()
            proc.wait()


# ============================================================================== model and checkpoints
def test_unknown_model_lists_registered_ones(capsys, tmp_path, tiny_folder):
    code, _, err = _cli(capsys, "train", "-c", _write_cfg(tiny_folder, tmp_path, model="resnet_smal"),
                        "-o", tmp_path / "run")
    err = _clean_error(code, err)
    assert "unknown model 'resnet_smal'. Did you mean: resnet_small" in err
    assert "purenoise models: resnet110, resnet20, resnet32" in err and "wrn28_10" in err
    assert "torchvision classification model" in err


def test_batch_larger_than_the_data_is_a_config_error(capsys, tmp_path, tiny_folder):
    code, _, err = _cli(capsys, "train", "-c", _write_cfg(tiny_folder, tmp_path, batch_size=1000),
                        "-o", tmp_path / "run")
    assert "config key 'batch_size' is 1000" in _clean_error(code, err) and "lower batch_size" in err


def test_open_on_a_model_without_batchnorm_warns_what_it_means(capsys, tmp_path, tiny_folder):
    # SqueezeNet 1.1 (torchvision) has no BatchNorm layer at all.
    cfg = _write_cfg(tiny_folder, tmp_path, model="squeezenet1_1", method="open", defer_epoch=0, epochs=1,
                     limit_batches=1, dataset_options={"image_size": 32})
    with pytest.warns(UserWarning) as caught:
        code, _, err = _cli(capsys, "train", "-c", cfg, "-o", tmp_path / "run")
    assert code == 0, err
    message = " ".join(str(w.message) for w in caught)
    assert "'squeezenet1_1' has no BatchNorm2d layers, so DAR-BN has nothing to route" in message
    assert "noise_grad: classifier has no effect" in message and "use a model with BatchNorm" in message


def test_checkpoint_from_another_class_count_names_the_shapes(capsys, tmp_path, tiny_folder):
    run = tmp_path / "run"
    cfg = _write_cfg(tiny_folder, tmp_path, epochs=1, limit_batches=1)
    assert _cli(capsys, "train", "-c", cfg, "-o", run)[0] == 0
    five = shutil.copytree(tiny_folder, tmp_path / "five")
    for split in ("train", "test"):
        shutil.copytree(five / split / "class3", five / split / "class4")
    code, _, err = _cli(capsys, "train", "-c", cfg, "-o", run, "--resume", "auto", "--set", f"data_root={five}")
    err = _clean_error(code, err)
    assert f"checkpoint {run / 'checkpoints' / 'last.pt'} does not fit this model" in err
    assert "fc.weight (4, 64) vs (5, 64)" in err and "fc.bias (4,) vs (5,)" in err
    assert "another model or number of classes" in err


def test_checkpoint_from_another_model_names_the_keys():
    from purenoise.engine.setup import load_model_state
    from purenoise.models import create_model

    small = create_model("resnet_small", 4).state_dict()
    with pytest.raises(ModelError) as e:
        load_model_state(create_model("resnet32", 4), small, "small.pt")
    msg = str(e.value)
    assert "checkpoint small.pt does not fit this model" in msg
    assert "missing in the checkpoint: conv1.weight" in msg and "not in the model: stem.0.weight" in msg


def test_truncated_or_foreign_checkpoint(capsys, tmp_path, tiny_folder):
    cfg = _write_cfg(tiny_folder, tmp_path)
    torn = tmp_path / "torn.pt"
    save_checkpoint(torn, {"model": {"w": torch.zeros(1000)}})
    torn.write_bytes(torn.read_bytes()[:500])
    code, _, err = _cli(capsys, "train", "-c", cfg, "-o", tmp_path / "run", "--resume", torn)
    assert f"checkpoint {torn} cannot be read" in _clean_error(code, err) and "truncated" in err
    foreign = tmp_path / "foreign.pt"
    torch.save({"state_dict": {}}, foreign)
    code, _, err = _cli(capsys, "eval", "--checkpoint", foreign)
    assert f"{foreign} is not a purenoise checkpoint" in _clean_error(code, err)


# ============================================================================== divergence
def test_nan_loss_stops_with_epoch_and_step(capsys, tmp_path, tiny_folder):
    cfg = _write_cfg(tiny_folder, tmp_path, epochs=2)
    code, _, err = _cli(capsys, "train", "-c", cfg, "-o", tmp_path / "run", "--set", "lr=1e30")
    err = _clean_error(code, err, expected_code=3)
    assert "the loss became NaN or infinite at epoch 1, step 2 (global step 1)" in err
    assert "no checkpoint was written yet" in err
    assert "lower lr or raise warmup_epochs" in err and "--detect-anomaly" in err
    assert not (tmp_path / "run" / "eval.json").exists()


class _InfAt(torch.nn.Module):
    """A loss that is infinite at one training step (counted from 0), as a bad batch would make it."""

    def __init__(self, inner: torch.nn.Module, at: int) -> None:
        super().__init__()
        self.inner, self.at, self.calls = inner, at, 0

    def set_epoch(self, epoch: int) -> None:
        getattr(self.inner, "set_epoch", lambda e: None)(epoch)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = self.inner(logits, labels)
        self.calls += 1
        return loss * float("inf") if self.calls - 1 == self.at else loss


def test_divergence_keeps_the_last_good_checkpoint(capsys, tmp_path, tiny_folder, monkeypatch):
    import purenoise.engine.trainer

    real = purenoise.engine.trainer.create_loss
    # 4 steps per epoch: step 6 (from 0) is the third step of the second epoch.
    monkeypatch.setattr(purenoise.engine.trainer, "create_loss", lambda *a, **kw: _InfAt(real(*a, **kw), 6))
    run = tmp_path / "run"
    cfg = _write_cfg(tiny_folder, tmp_path, epochs=3, limit_batches=4, batch_size=8)
    code, _, err = _cli(capsys, "train", "-c", cfg, "-o", run)
    err = _clean_error(code, err, expected_code=3)
    last = run / "checkpoints" / "last.pt"
    assert f"at epoch 2, step 3 (global step 6); training stopped and the last good checkpoint is {last}" in err
    state = load_checkpoint(last)
    assert state["epoch"] == 1 and state["batch"] == 0
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert [m["epoch"] for m in _metrics(run)] == [0]
    assert not (run / "eval.json").exists() and not (run / "model.pt").exists()


def test_detect_anomaly_names_the_step(capsys, tmp_path, tiny_folder):
    cfg = _write_cfg(tiny_folder, tmp_path, epochs=1)
    with pytest.warns(UserWarning, match="Error detected in"):  # torch's forward trace
        code, _, err = _cli(capsys, "train", "-c", cfg, "-o", tmp_path / "run", "--set", "lr=1e30",
                            "--detect-anomaly")
    err = _clean_error(code, err, expected_code=3)
    assert "autograd anomaly detection stopped training at epoch 1, step 2" in err
    assert "returned nan values" in err


# ============================================================================== output folder
def test_unwritable_output_folder_is_reported_before_training(capsys, tmp_path, tiny_folder, monkeypatch):
    import purenoise.engine.trainer as trainer

    def no_data(*a, **kw):
        raise AssertionError("the data was built before the output folder was checked")

    monkeypatch.setattr(trainer, "build_data", no_data)
    cfg = _write_cfg(tiny_folder, tmp_path)
    # A path under a regular file, and /proc: neither can be written, even by root.
    (tmp_path / "a-file").write_text("")
    for out, reason in ((tmp_path / "a-file" / "run", "Not a directory"), (Path("/proc/purenoise-run"), "")):
        code, _, err = _cli(capsys, "train", "-c", cfg, "-o", out)
        err = _clean_error(code, err)
        assert f"cannot write to the output folder {out} ({reason}" in err and "choose another with --out" in err


def test_read_only_output_folder(capsys, tmp_path, tiny_folder, monkeypatch):
    """A folder the user may not write to (EACCES; simulated, since tests may run as root)."""
    import errno

    real_write = Path.write_bytes

    def denied(self, data):
        if self.name == ".write-test":
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", denied)
    out = tmp_path / "ro" / "run"
    code, _, err = _cli(capsys, "train", "-c", _write_cfg(tiny_folder, tmp_path), "-o", out)
    err = _clean_error(code, err)
    assert f"cannot write to the output folder {out} (Permission denied" in err


def test_disk_full_during_training_keeps_the_previous_checkpoint(capsys, tmp_path, tiny_folder, monkeypatch):
    """The second save of last.pt meets a full disk (/dev/full: every write fails with ENOSPC)."""
    real_mkstemp = tempfile.mkstemp
    saves = []

    def mkstemp(*args, **kwargs):
        fd, name = real_mkstemp(*args, **kwargs)
        if Path(name).name.startswith(".last.pt."):
            saves.append(name)
            if len(saves) == 2:
                os.close(fd)
                fd = os.open("/dev/full", os.O_WRONLY)
        return fd, name

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    run = tmp_path / "run"
    cfg = _write_cfg(tiny_folder, tmp_path, epochs=3, limit_batches=2, batch_size=8)
    code, _, err = _cli(capsys, "train", "-c", cfg, "-o", run)
    err = _clean_error(code, err)
    last = run / "checkpoints" / "last.pt"
    assert f"cannot write {last} (No space left on device); the disk is full: free some space" in err
    assert "the previous last.pt, if any, is intact" in err and "--resume auto" in err
    assert load_checkpoint(last)["epoch"] == 1
    assert not list(run.rglob("*.tmp"))
    # Space is back: the run continues from the kept checkpoint (a stale temporary file from a
    # killed save is cleared on the way).
    monkeypatch.setattr(tempfile, "mkstemp", real_mkstemp)
    (run / "checkpoints" / ".last.pt.stale.tmp").write_bytes(b"half a checkpoint")
    code, out, err = _cli(capsys, "train", "-c", cfg, "-o", run, "--resume", "auto")
    assert code == 0, err
    assert "resumed from" in out and "epoch 2, batch 0" in out
    assert [m["epoch"] for m in _metrics(run)] == [0, 1, 2]
    assert not list(run.rglob("*.tmp")) and (run / "eval.json").exists()


def test_atomic_files_are_readable_by_others(tmp_path):
    from purenoise.fileio import atomic_write_text

    path = atomic_write_text(tmp_path / "eval.json", "{}")
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


# ============================================================================== signals
@pytest.fixture(scope="module")
def signal_setup(tmp_path_factory):
    """A folder big enough for 75 steps per epoch, its config, and an uninterrupted run."""
    base = tmp_path_factory.mktemp("signals")
    folder = write_folder(base / "data", counts=[160, 80, 40, 20], test_per_class=2)
    cfg = _write_cfg(folder, base, method="open", epochs=2, defer_epoch=1, batch_size=4)
    straight = base / "straight"
    with _threads(1):
        assert main(["train", "-c", str(cfg), "-o", str(straight)]) == 0
    return cfg, straight


@pytest.mark.slow
@pytest.mark.parametrize("signum, group, workers", [
    (signal.SIGINT, False, 0),  # to the main process alone
    (signal.SIGTERM, True, 2),  # to the whole process group, DataLoader workers included (scancel)
], ids=["SIGINT-main-process", "SIGTERM-process-group"])
def test_signal_mid_epoch_saves_and_resume_is_bit_identical(signal_setup, tmp_path, capsys, signum, group,
                                                             workers):
    cfg, straight = signal_setup
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "purenoise", "train", "-c", str(cfg), "-o", str(run),
                             "--set", f"workers={workers}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=_env(), start_new_session=True)
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 240
    with _reaped(proc):
        # The first epoch's line is written just before epoch 2 starts: signal then, early in it.
        while not (metrics.exists() and metrics.read_text().strip()):
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "the run did not finish its first epoch"
            time.sleep(0.005)
        if group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signum, err
    assert f"{signum.name} received: saved a resumable checkpoint at epoch 2, batch " in err
    assert "--resume auto" in err and "Traceback" not in err
    state = load_checkpoint(run / "checkpoints" / "last.pt")
    assert state["epoch"] == 1 and 0 < state["batch"] < 75, "not interrupted in the middle of epoch 2"
    assert state["epoch_state"]["rows"] > 0
    code, out, err = _cli(capsys, "train", "-c", cfg, "-o", run, "--resume", "auto")
    assert code == 0, err
    assert f"epoch 2, batch {state['batch']}" in out
    _assert_same_weights(_weights(straight / "checkpoints/last.pt"), _weights(run / "checkpoints/last.pt"))
    # The epoch's running sums were saved too: the resumed epoch reports the same loss.
    assert [m["train_loss"] for m in _metrics(run)] == [m["train_loss"] for m in _metrics(straight)]


_SAVER = textwrap.dedent("""
    import sys, torch
    from purenoise.engine.checkpoint import save_checkpoint
    path, i = sys.argv[1], int(sys.argv[2])
    big = torch.empty(50_000_000)  # 200 MB
    while True:
        i += 1
        big.fill_(i)
        save_checkpoint(path, {"i": i, "big": big})
        print(i, flush=True)
""")


@pytest.mark.slow
def test_sigkill_during_a_save_leaves_the_previous_checkpoint(tmp_path):
    path = tmp_path / "checkpoints" / "last.pt"
    save_checkpoint(path, {"i": 0, "big": torch.zeros(10)})
    rng = random.Random(7)
    last = 0
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", _SAVER, str(path), str(last)], stdout=subprocess.PIPE,
                                text=True, env=_env())
        with _reaped(proc):
            first = proc.stdout.readline()  # one save done: the loop is running
            assert first.strip() == str(last + 1)
            time.sleep(rng.uniform(0.0, 0.8))  # about one save: serializing, writing, fsync or rename
            proc.kill()
            done = [int(x) for x in (first + proc.communicate()[0]).split()]
        state = load_checkpoint(path)  # never torn
        # The file is the last save reported, or the one renamed into place just before the kill.
        assert state["i"] in (done[-1], done[-1] + 1)
        assert torch.equal(state["big"], torch.full((50_000_000,), float(state["i"])))
        assert [p.name for p in path.parent.iterdir() if not p.name.endswith(".tmp")] == ["last.pt"]
        last = state["i"]


def test_one_report_per_run_under_torchrun(tmp_path, monkeypatch, capsys):
    """Ranks that fail together (a bad config) print one message: the first to fail."""
    from purenoise.engine.distributed import report_once

    attempt = tmp_path / "attempt_0"
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank in (1, 0):
        monkeypatch.setenv("RANK", str(rank))
        (attempt / str(rank)).mkdir(parents=True)  # torchrun makes one folder per worker
        monkeypatch.setenv("TORCHELASTIC_ERROR_FILE", str(attempt / str(rank) / "error.json"))
        assert report_once("purenoise: error: {prefix}bad config") == (rank == 1)
    assert capsys.readouterr().err == "purenoise: error: [rank 1] bad config\n"
    # Errors every rank agreed on (divergence, a signal) are reported by rank 0, which saved.
    for rank in (1, 0):
        monkeypatch.setenv("RANK", str(rank))
        report_once("purenoise: error: {prefix}diverged", collective=True)
    assert capsys.readouterr().err == "purenoise: error: [rank 0] diverged\n"


# ============================================================================== torchrun
@pytest.mark.slow
def test_a_failing_rank_ends_all_ranks_with_its_error_once(tmp_path):
    """Rank 1 alone meets a truncated image in epoch 2: its error is printed once, rank 0 stops
    without a traceback of its own, and the run folder holds only whole, consistent files."""
    from purenoise.data import create_dataset, get_targets
    from purenoise.engine.batches import epoch_indices
    from purenoise.engine.seeding import derive_seed

    folder = write_folder(tmp_path / "data")
    labels = get_targets(create_dataset("folder", folder, stats=False).train)
    samples = create_dataset("folder", folder, stats=False).train.samples

    def read(rank: int, epoch: int) -> set[int]:  # limit_batches 2 x batch 8 images per rank and epoch
        order = epoch_indices("instance", labels, seed=derive_seed(0, "sampler"), epoch=epoch, rank=rank,
                              world_size=2)
        return set(order[:16].tolist())

    only_rank1_epoch1 = read(1, 1) - read(0, 0) - read(1, 0) - read(0, 1)
    victim = Path(samples[min(only_rank1_epoch1)][0])
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    # Explicit statistics: computing them would read the truncated file on every rank at set-up.
    # No memorization diagnostic: rank 0 would read the truncated image there first.
    cfg = _write_cfg(folder, tmp_path, epochs=2, batch_size=8, limit_batches=2, memorization=False,
                     dataset_options={"mean": [0.2] * 3, "std": [0.25] * 3})
    out = tmp_path / "ddp"
    proc = torchrun("train", "-c", str(cfg), "-o", str(out))
    text = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert text.count("purenoise: error:") == 1, outcome(proc)
    assert f"purenoise: error: [rank 1] cannot decode image {victim}" in text
    assert "[rank0]:" not in text and "[rank1]:" not in text, outcome(proc)  # no worker tracebacks
    assert "Connection closed by peer" not in text and "lost contact" not in text
    # Nothing half-written: the first epoch's files, complete, and nothing of the second.
    assert not list(out.rglob("*.tmp"))
    assert [m["epoch"] for m in _metrics(out)] == [0]
    assert load_checkpoint(out / "checkpoints" / "last.pt")["epoch"] == 1
    assert not (out / "eval.json").exists() and not (out / "model.pt").exists()
