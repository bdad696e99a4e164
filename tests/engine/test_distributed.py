"""Two CPU processes under torchrun (gloo): training runs, weights stay identical, files once."""
from __future__ import annotations

import json

import pytest

from purenoise.engine.checkpoint import load_checkpoint

from tests.helpers.torchrun import outcome, torchrun

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("sync_bn, bn_mode", [(False, "darbn"), (True, "darbn"), (True, "aux"), (True, "standard")])
def test_two_process_gloo_training(write_config, tmp_path, sync_bn, bn_mode):
    # sync_bn keeps each bn_mode: its own synchronized layers for darbn, aux and standard.
    cfg = write_config(method="open", epochs=2, defer_epoch=1, batch_size=8, sync_bn=sync_bn, bn_mode=bn_mode)
    out = tmp_path / "ddp"
    proc = torchrun("train", "-c", str(cfg), "-o", str(out))
    assert proc.returncode == 0, outcome(proc)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [0, 1]  # written once, by rank 0
    assert all(m["ranks_in_sync"] for m in lines)
    assert lines[1]["noise_frac"] > 0
    ev = json.loads((out / "eval.json").read_text())
    assert ev["balanced_acc"] == pytest.approx(sum(ev["per_class_acc"]) / len(ev["per_class_acc"]))
    state = load_checkpoint(out / "checkpoints" / "last.pt")
    assert state["world_size"] == 2
    # No stray temporary files from the atomic writes.
    assert not [p for p in out.rglob("*.tmp")]
