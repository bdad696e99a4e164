"""End-to-end runs through the CLI on a tiny fixture folder: every scheme and BN mode."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from purenoise.cli import main
from purenoise.engine.checkpoint import load_checkpoint

from tests.helpers.checkpoints import assert_same_weights as _assert_same_weights
from tests.helpers.checkpoints import weights as _weights

from .conftest import COUNTS, TEST_PER_CLASS


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _check_run(run: Path, epochs: int) -> dict:
    for name in ("config.yaml", "metrics.jsonl", "eval.json", "model.pt", "checkpoints/last.pt"):
        assert (run / name).exists(), name
    lines = _metrics(run)
    assert [m["epoch"] for m in lines] == list(range(epochs))
    ev = json.loads((run / "eval.json").read_text())
    per_class = ev["per_class_acc"]
    assert len(per_class) == len(COUNTS)
    assert ev["balanced_acc"] == pytest.approx(sum(per_class) / len(per_class))
    # The test set is balanced, so top-1 equals balanced accuracy.
    assert ev["top1"] == pytest.approx(ev["balanced_acc"])
    assert ev["num_samples"] == TEST_PER_CLASS * len(COUNTS)
    assert ev["class_counts"] == COUNTS
    assert sum(map(sum, ev["confusion"])) == ev["num_samples"]
    # The shot groups split by training counts: 48 > 100? no -> medium (20..100) holds 48, 24.
    assert ev["medium"] == pytest.approx((per_class[0] + per_class[1]) / 2)
    assert ev["few"] == pytest.approx((per_class[2] + per_class[3]) / 2)
    assert ev["many"] is None
    return ev


@pytest.mark.parametrize("method", ["erm", "rs", "drs", "open", "noise_aug"])
def test_every_scheme_end_to_end(method, write_config, tmp_path):
    run = tmp_path / method
    assert main(["train", "--config", str(write_config(method=method)), "--out", str(run)]) == 0
    ev = _check_run(run, 2)
    assert ev["method"] == method
    lines = _metrics(run)
    sampling = [m["sampling"] for m in lines]
    expected = {"erm": ["instance"] * 2, "rs": ["balanced"] * 2, "drs": ["instance", "balanced"],
                "open": ["instance", "balanced"], "noise_aug": ["instance"] * 2}[method]
    assert sampling == expected
    noise = [m["noise_frac"] for m in lines]
    if method == "open":
        assert noise[0] == 0 and noise[1] > 0
        assert (run / "samples.pt").exists()
    elif method == "noise_aug":
        # 4 noise rows per 16 natural: 4 / 20 of all rows.
        assert noise == [pytest.approx(0.2)] * 2
    else:
        assert noise == [0, 0]
    assert all(math.isfinite(m["train_loss"]) for m in lines)


@pytest.mark.parametrize("bn_mode", ["darbn", "aux", "standard"])
@pytest.mark.parametrize("noise_grad", ["classifier", "features"])
def test_open_bn_modes(bn_mode, noise_grad, write_config, tmp_path):
    run = tmp_path / f"{bn_mode}_{noise_grad}"
    cfg = write_config(method="open", bn_mode=bn_mode, noise_grad=noise_grad, defer_epoch=0, epochs=1)
    assert main(["train", "-c", str(cfg), "-o", str(run)]) == 0
    _check_run(run, 1)
    # The exported model has plain BatchNorm layers whatever the mode (no aux branches).
    exported = load_checkpoint(run / "model.pt")["model"]
    assert not any("aux_bn" in k for k in exported)
    state = load_checkpoint(run / "checkpoints" / "last.pt")["model"]
    assert any("aux_bn" in k for k in state) == (bn_mode == "aux")


def test_exactly_one_optimizer_step_per_iteration(write_config, tmp_path, monkeypatch):
    from purenoise.engine.trainer import Trainer
    from purenoise.config import load_config

    calls = []
    original = torch.optim.SGD.step

    def counting_step(self, *a, **kw):
        calls.append(1)
        return original(self, *a, **kw)

    monkeypatch.setattr(torch.optim.SGD, "step", counting_step)
    cfg = load_config(write_config(method="open", limit_batches=3, epochs=2))
    trainer = Trainer(cfg, tmp_path / "run")
    trainer.fit()
    assert trainer.steps_per_epoch == 3
    assert len(calls) == 6
    assert trainer.scheduler.last_epoch == 6


def test_resume_is_bit_identical(write_config, tmp_path):
    """4 epochs straight == 2 epochs, then resume for 2 more (CPU)."""
    cfg = write_config(method="open", epochs=4, defer_epoch=2)
    straight = tmp_path / "straight"
    assert main(["train", "-c", str(cfg), "-o", str(straight)]) == 0
    # The straight run kept its state at the start of epoch 3 (the defer epoch) on the way.
    resumed = tmp_path / "resumed"
    assert main(["train", "-c", str(cfg), "-o", str(resumed), "--resume",
                 str(straight / "checkpoints" / "epoch_0002.pt")]) == 0
    _assert_same_weights(_weights(straight / "checkpoints/last.pt"), _weights(resumed / "checkpoints/last.pt"))
    assert json.loads((straight / "eval.json").read_text())["per_class_acc"] == \
        json.loads((resumed / "eval.json").read_text())["per_class_acc"]


def test_resume_refuses_a_changed_config(write_config, tmp_path):
    cfg = write_config(epochs=2, defer_epoch=1)
    run = tmp_path / "run"
    assert main(["train", "-c", str(cfg), "-o", str(run)]) == 0
    code = main(["train", "-c", str(cfg), "-o", str(tmp_path / "r2"), "--set", "lr=0.2",
                 "--resume", str(run / "checkpoints/epoch_0001.pt")])
    assert code == 2


def test_branch_from_erm_equals_straight_open(write_config, tmp_path):
    """OPeN branched from an ERM run at the defer epoch == OPeN trained from scratch."""
    erm = tmp_path / "erm"
    assert main(["train", "-c", str(write_config(method="erm", epochs=3, defer_epoch=2)), "-o", str(erm)]) == 0
    assert (erm / "checkpoints" / "epoch_0002.pt").exists()
    open_cfg = write_config(method="open", epochs=3, defer_epoch=2)
    branched, straight = tmp_path / "branched", tmp_path / "straight"
    assert main(["train", "-c", str(open_cfg), "-o", str(branched), "--init-from", str(erm)]) == 0
    assert main(["train", "-c", str(open_cfg), "-o", str(straight)]) == 0
    _assert_same_weights(_weights(branched / "checkpoints/last.pt"), _weights(straight / "checkpoints/last.pt"))
    ev = json.loads((branched / "eval.json").read_text())
    assert ev["branch"]["epoch"] == 2 and ev["branch"]["from"].endswith("epoch_0002.pt")
    lines = _metrics(branched)
    assert [m["epoch"] for m in lines] == [0, 1, 2]
    assert lines[:2] == _metrics(erm)[:2]  # the shared phase's metrics come from the parent


def test_branch_refuses_mismatched_parent(write_config, tmp_path):
    erm = tmp_path / "erm"
    assert main(["train", "-c", str(write_config(epochs=3, defer_epoch=2)), "-o", str(erm)]) == 0
    bad = write_config(method="open", epochs=3, defer_epoch=2, lr=0.2)
    assert main(["train", "-c", str(bad), "-o", str(tmp_path / "b"), "--init-from", str(erm)]) == 2
    other_defer = write_config(method="open", epochs=3, defer_epoch=1)
    assert main(["train", "-c", str(other_defer), "-o", str(tmp_path / "c"), "--init-from", str(erm)]) == 2


def test_eval_and_predict_commands(write_config, tmp_path, tiny_folder, capsys):
    run = tmp_path / "run"
    assert main(["train", "-c", str(write_config(method="open", epochs=1, defer_epoch=0)), "-o", str(run)]) == 0
    out = tmp_path / "again.json"
    # The recorded data folder is outside the default one: eval reads it only when named.
    assert main(["eval", "--checkpoint", str(run / "model.pt"), "--out", str(out), "--workers", "0"]) == 2
    assert "--data-root " + str(tiny_folder) in capsys.readouterr().err
    root = ["--data-root", str(tiny_folder)]
    assert main(["eval", "--checkpoint", str(run / "model.pt"), "--out", str(out), "--workers", "0", *root]) == 0
    again = json.loads(out.read_text())
    first = json.loads((run / "eval.json").read_text())
    assert again["per_class_acc"] == first["per_class_acc"]
    # A full training checkpoint evaluates the same.
    assert main(["eval", "--checkpoint", str(run / "checkpoints/last.pt"), "--out", str(out), "--workers", "0",
                 *root]) == 0
    assert json.loads(out.read_text())["per_class_acc"] == first["per_class_acc"]
    capsys.readouterr()
    image = next((tiny_folder / "test" / "class0").glob("*.png"))
    assert main(["predict", "--checkpoint", str(run / "model.pt"), str(image), "--json"]) == 0
    preds = json.loads(capsys.readouterr().out)[0]["predictions"]
    assert len(preds) == 3 and preds[0]["class"].startswith("class")
    assert sum(p["prob"] for p in preds) <= 1.0 + 1e-6


def test_tensorboard_logs_every_epoch(write_config, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "tb"
    assert main(["train", "-c", str(write_config(method="open", tensorboard=True)), "-o", str(run)]) == 0
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    loss = events.Scalars("train_loss")
    assert [e.step for e in loss] == [1, 2]
    assert [e.value for e in loss] == pytest.approx([m["train_loss"] for m in _metrics(run)])
    assert "noise_frac" in events.Tags()["scalars"]


def test_bf16_channels_last_grad_clip_run(write_config, tmp_path):
    run = tmp_path / "amp"
    cfg = write_config(method="open", amp="bf16", channels_last=True, grad_clip=1.0, epochs=1, defer_epoch=0)
    assert main(["train", "-c", str(cfg), "-o", str(run)]) == 0
    ev = _check_run(run, 1)
    assert 0.0 <= ev["top1"] <= 1.0
    assert _metrics(run)[0]["noise_frac"] > 0


def test_noise_pass_split_and_joint_train_the_same_model(write_config, tmp_path):
    """The default (auto) forwards noise rows on their own: same training as one joint pass."""
    runs = {}
    for noise_pass in ("auto", "joint"):
        runs[noise_pass] = tmp_path / noise_pass
        cfg = write_config(method="open", epochs=2, defer_epoch=1, noise_pass=noise_pass)
        assert main(["train", "-c", str(cfg), "-o", str(runs[noise_pass])]) == 0
    a, b = _weights(runs["auto"] / "model.pt"), _weights(runs["joint"] / "model.pt")
    assert a.keys() == b.keys()
    for k in a:  # float rounding differs (other batch sizes per kernel call), nothing else
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    assert _metrics(runs["auto"])[1]["noise_frac"] == _metrics(runs["joint"])[1]["noise_frac"] > 0


def test_noise_pass_split_refused_where_not_exact(write_config, tmp_path, capsys):
    cfg = write_config(method="open", bn_mode="standard", noise_pass="split", epochs=1, defer_epoch=0)
    assert main(["train", "-c", str(cfg), "-o", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert "noise_pass" in err and "no DAR-BN" in err and "Traceback" not in err


def test_batch_of_one_with_plain_batchnorm_is_refused_before_training(write_config, tmp_path, capsys):
    """ERM's plain BatchNorm cannot train on one row: exit 2 naming batch_size, before any step."""
    code = main(["train", "-c", str(write_config(method="erm", epochs=1, batch_size=1)), "-o", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "batch_size" in err and "Traceback" not in err
    assert not (tmp_path / "r" / "metrics.jsonl").exists() or not (tmp_path / "r" / "metrics.jsonl").read_text()
