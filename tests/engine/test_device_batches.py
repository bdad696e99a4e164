"""The device loader (``loader: device``): draws, determinism, resumption, and training with it."""
from __future__ import annotations

import json
import signal

import numpy as np
import pytest
import torch
from scipy import stats

from purenoise.cli import main
from purenoise.config import load_config
from purenoise.data.batch_augment import create_batch_augment
from purenoise.engine.checkpoint import load_checkpoint
from purenoise.engine.device_batches import DeviceBatches, device_epoch_order
from purenoise.engine.trainer import Trainer, TrainingInterrupted
from purenoise.errors import ConfigError

CPU = torch.device("cpu")
ALPHA = 1e-3
COUNTS = [500, 200, 80, 20, 5]


def _labels(counts=COUNTS, seed=0):
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    return labels[torch.randperm(labels.numel(), generator=torch.Generator().manual_seed(seed))]


def _batches(seed=0, preset="cifar_simclr", **kw):
    labels = _labels()
    images = torch.randint(0, 256, (labels.numel(), 3, 16, 16), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(1))
    aug = create_batch_augment(preset, image_size=16, cutout_fill=(0.5, 0.4, 0.3))
    return DeviceBatches(images, labels, aug, batch_size=kw.pop("batch_size", 32), device=CPU, seed=seed, **kw)


def _epoch(db, epoch, kind, start=0):
    db.set_epoch(epoch, kind, start)
    return list(db)


def test_instance_draw_is_a_permutation_and_ranks_share_it():
    labels = _labels()
    full = device_epoch_order("instance", labels, seed=3, epoch=2)
    assert sorted(full.tolist()) == list(range(labels.numel()))
    assert not torch.equal(full, device_epoch_order("instance", labels, seed=3, epoch=3))
    shares = [device_epoch_order("instance", labels, seed=3, epoch=2, rank=r, world_size=3) for r in range(3)]
    assert len({s.numel() for s in shares}) == 1  # padded to a multiple of the world size
    union = torch.stack(shares, 1).reshape(-1)  # interleaved back: the one global draw, padded
    assert torch.equal(union[: labels.numel()], full)
    assert torch.equal(union[labels.numel():], full[: union.numel() - labels.numel()])


@pytest.mark.parametrize("kind,power", [("balanced", 0.0), ("sqrt", 0.5)])
def test_class_aware_draws_follow_the_sampler_distributions(kind, power):
    labels = _labels()
    drawn = torch.cat([device_epoch_order(kind, labels, seed=0, epoch=e) for e in range(20)])
    counts = np.bincount(labels[drawn].numpy(), minlength=len(COUNTS))
    probs = np.array(COUNTS, dtype=float) ** power
    assert stats.chisquare(counts, probs / probs.sum() * counts.sum()).pvalue > ALPHA
    # Within a class every image is equally likely (the 20 images of class 3).
    members = torch.nonzero(labels == 3).flatten()
    within = np.bincount(np.searchsorted(members.numpy(), drawn[labels[drawn] == 3].numpy()), minlength=20)
    assert stats.chisquare(within).pvalue > ALPHA
    # Ranks take disjoint positions of one global draw (805 draws: 5 ranks need no padding).
    shares = [device_epoch_order(kind, labels, seed=0, epoch=0, rank=r, world_size=5) for r in range(5)]
    assert torch.equal(torch.stack(shares, 1).reshape(-1), device_epoch_order(kind, labels, seed=0, epoch=0))


def test_batches_are_deterministic_per_seed_and_epoch():
    a = _epoch(_batches(seed=0), 1, "balanced")
    b = _epoch(_batches(seed=0), 1, "balanced")
    c = _epoch(_batches(seed=1), 1, "balanced")
    assert len(a) == 805 // 32
    for (xa, ya), (xb, yb) in zip(a, b):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert xa.dtype == torch.float32 and xa.shape == (32, 3, 16, 16) and 0 <= xa.min() and xa.max() <= 1
    assert not torch.equal(a[0][0], c[0][0])
    other_epoch = _epoch(_batches(seed=0), 2, "balanced")
    assert not torch.equal(a[0][0], other_epoch[0][0])


def test_mid_epoch_start_gives_exactly_the_remaining_batches():
    db = _batches(seed=4)
    whole = _epoch(db, 3, "instance")
    resumed = _epoch(_batches(seed=4), 3, "instance", start=7)
    assert len(resumed) == len(whole) - 7
    for (xa, ya), (xb, yb) in zip(whole[7:], resumed):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_compiled_augmentation_matches_eager_and_compiles_once():
    # What compile: true does on a GPU, run here with inductor's CPU backend: the same draws, the
    # same pixels to float rounding, one graph for all batches (they all have batch_size rows).
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    eager = _epoch(_batches(seed=5, limit_batches=4), 1, "balanced")
    before = int(counters["stats"]["unique_graphs"])
    compiled_db = _batches(seed=5, limit_batches=4, compile=True)
    compiled = _epoch(compiled_db, 1, "balanced") + _epoch(compiled_db, 2, "balanced")
    assert int(counters["stats"]["unique_graphs"]) - before == 1
    for (xa, ya), (xb, yb) in zip(eager, compiled):
        assert torch.equal(ya, yb)
        torch.testing.assert_close(xb, xa, rtol=0, atol=2e-5)
    again = _epoch(_batches(seed=5, limit_batches=4, compile=True), 2, "balanced")
    for (xa, _), (xb, _) in zip(compiled[4:], again):
        assert torch.equal(xa, xb)  # deterministic per seed, compiled too


def test_limit_batches_and_too_small_sets():
    db = _batches(limit_batches=3)
    assert len(db) == 3 and len(_epoch(db, 0, "instance")) == 3
    with pytest.raises(ValueError, match="fewer than one batch"):
        _batches(batch_size=1000)


def test_labels_match_the_images_drawn():
    # Each image's first pixel encodes its index, so a batch can be traced back to the data.
    labels = _labels()
    n = labels.numel()
    images = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    images.view(n, -1)[:, 0] = torch.arange(n) % 256
    images.view(n, -1)[:, 1] = torch.arange(n) // 256
    db = DeviceBatches(images, labels, None, batch_size=64, device=CPU, seed=0)
    for x, y in _epoch(db, 0, "balanced"):
        px = (x * 255).round().long().view(x.shape[0], -1)
        assert torch.equal(labels[px[:, 0] + 256 * px[:, 1]], y)


# ------------------------------------------------------------------ training with loader: device


def test_cli_train_with_the_device_loader(write_config, tmp_path):
    cfg = write_config(method="open", augment="cifar_simclr", epochs=2, defer_epoch=1)
    run = tmp_path / "device"
    assert main(["train", "-c", str(cfg), "-o", str(run), "--set", "loader=device"]) == 0
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [m["sampling"] for m in lines] == ["instance", "balanced"]
    assert lines[0]["noise_frac"] == 0 and lines[1]["noise_frac"] > 0
    assert json.loads((run / "eval.json").read_text())["num_samples"] == 24
    # Repeats bit for bit.
    again = tmp_path / "again"
    assert main(["train", "-c", str(cfg), "-o", str(again), "--set", "loader=device"]) == 0
    a, b = load_checkpoint(run / "checkpoints/last.pt")["model"], load_checkpoint(again / "checkpoints/last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_device_loader_resumes_mid_epoch_bit_identically(write_config, tmp_path, monkeypatch):
    cfg = load_config(write_config(method="open", augment="cifar_simclr", epochs=2, defer_epoch=1, loader="device"))
    straight = Trainer(cfg, tmp_path / "straight")
    straight.fit()
    # Stop in the middle of the OPeN epoch (after batch 2 of 5), as SIGTERM would, then resume.
    interrupted = Trainer(cfg, tmp_path / "run")
    original = interrupted.batches.batch

    def batch(b):
        if interrupted.batches._epoch == 1 and b == 2:
            interrupted.signals.received = signal.SIGTERM
        return original(b)

    monkeypatch.setattr(interrupted.batches, "batch", batch)
    with pytest.raises(TrainingInterrupted):
        interrupted.fit()
    state = load_checkpoint(tmp_path / "run" / "checkpoints" / "last.pt")
    assert (state["epoch"], state["batch"]) == (1, 3)
    Trainer(cfg, tmp_path / "run", resume="auto").fit()
    a = load_checkpoint(tmp_path / "straight" / "checkpoints/last.pt")["model"]
    b = load_checkpoint(tmp_path / "run" / "checkpoints/last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_device_loader_refuses_presets_it_cannot_run(write_config, tmp_path):
    cfg = load_config(write_config(augment="autoaugment", loader="device"))
    with pytest.raises(ConfigError, match="loader: torch"):
        Trainer(cfg, tmp_path / "run")
    # And the CLI says so in one line (exit code 2), as for any config error.
    assert main(["train", "-c", str(write_config(augment="autoaugment")), "-o", str(tmp_path / "r2"),
                 "--set", "loader=device"]) == 2


@pytest.mark.slow
def test_two_process_training_with_the_device_loader(write_config, tmp_path):
    """torchrun, 2 CPU processes (gloo): each rank draws its share on its device, weights stay equal."""
    from tests.helpers.torchrun import outcome, torchrun

    cfg = write_config(method="open", epochs=2, defer_epoch=1, batch_size=8, loader="device",
                       augment="cifar_simclr")
    out = tmp_path / "ddp"
    proc = torchrun("train", "-c", str(cfg), "-o", str(out))
    assert proc.returncode == 0, outcome(proc)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(m["ranks_in_sync"] for m in lines) and lines[1]["noise_frac"] > 0
