"""``purenoise compare``: defaults that fit the data, the plan of branched runs, resuming, the verdict in words.

The end-to-end tests train a tiny comparison (8x8 px images, 3 epochs) through ``purenoise.cli.main``
with the runs in this process (a new Python process per run costs seconds of imports each); the
process launcher itself is checked on its own.
"""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from purenoise import compare_plan
from purenoise.cli import main
from purenoise.compare_plan import Method, RunSpec, estimate_left, make_plan, parse_methods, run_command
from purenoise.compare_setup import base_config, fill_defaults, model_for_size, scaled_schedule, user_config
from purenoise.compare_verdict import (
    load_findings,
    nearest_cells,
    seeds_to_resolve,
    should_open_help,
    verdict_line,
)
from purenoise.errors import ConfigError
from purenoise.reporting.replicates import t_quantile

COUNTS = [24, 12, 6, 3]
TINY = ["--set", "batch_size=8", "--set", "progress=false", "--set", "memorization=true", "--set", "workers=0",
        "--set", "device=cpu"]


def write_folder(root: Path) -> Path:
    """A plain folder, ``root/<class>/*.png`` (8x8 grayscale), a long tail over four classes: the
    held-out images are split from it (a stratified fifth of each class)."""
    rng = np.random.default_rng(0)
    for split, counts in ((".", [n + n // 4 + 1 for n in COUNTS]),):
        for k, n in enumerate(counts):
            d = root / split / f"c{k}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                a = rng.integers(0, 50, (8, 8))
                a[2:6, 2:6] = 50 * k + 60
                Image.fromarray(a.astype(np.uint8), "L").save(d / f"{i}.png")
    return root


class Runner:
    """Trains a run in this process and records its arguments; ``fail`` names runs that fail once."""

    def __init__(self, fail=()):
        self.calls: list[list[str]] = []
        self.fail = set(fail)

    def __call__(self, argv):
        argv = list(argv)
        self.calls.append(argv)
        name = Path(argv[argv.index("--out") + 1]).name
        if name in self.fail:
            self.fail.discard(name)
            return 1
        return main(argv)

    def names(self) -> list[str]:
        return [Path(a[a.index("--out") + 1]).name for a in self.calls]


def run_compare(monkeypatch, data: Path, out: Path, runner: Runner, *extra: str) -> int:
    monkeypatch.setattr(compare_plan, "launch", runner)
    return main(["compare", "--data", str(data), "--seeds", "2", "--methods", "erm,drs,open", "--epochs", "3",
                 "--out", str(out), *TINY, *extra])


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished comparison (2 seeds of ERM, DRS, OPeN) and what it printed."""
    root = tmp_path_factory.mktemp("compare")
    data = write_folder(root / "data")
    mp = pytest.MonkeyPatch()
    mp.setenv("PURENOISE_CACHE_DIR", str(root / "cache"))
    runner = Runner()
    import contextlib
    import io

    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf):
            code = run_compare(mp, data, root / "out", runner)
    finally:
        mp.undo()
    return {"data": data, "out": root / "out", "code": code, "stdout": buf.getvalue(), "runner": runner}


def _copy(finished, tmp_path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(finished["out"], out)
    return out


# ------------------------------------------------------------------------------ defaults
def test_scaled_schedule_is_the_papers_shape():
    assert scaled_schedule(200) == {"warmup_epochs": 5, "schedule": "step", "milestones": [160, 180],
                                    "lr_decay": 0.01, "defer_epoch": 160}
    assert scaled_schedule(40)["warmup_epochs"] == 1 and scaled_schedule(40)["milestones"] == [32, 36]
    assert scaled_schedule(10)["warmup_epochs"] == 1  # at least one from 10 epochs on
    assert scaled_schedule(9)["warmup_epochs"] == 0
    assert scaled_schedule(100)["warmup_epochs"] == 3  # 2.5, rounded half up
    assert scaled_schedule(3)["milestones"] == [2] and scaled_schedule(3)["defer_epoch"] == 2
    assert scaled_schedule(2)["defer_epoch"] == 1  # the switch comes before the last epoch
    assert scaled_schedule(1) == {**scaled_schedule(1), "milestones": [], "defer_epoch": 0}


@pytest.mark.parametrize("size, expected", [
    ((8, 8), ("resnet_small", {})), ((28, 28), ("resnet_small", {})), ((64, 48), ("resnet_small", {})),
    ((96, 96), ("resnet18", {"small_input": True})), ((127, 100), ("resnet18", {"small_input": True})),
    ((128, 128), ("resnet18", {})), ((224, 224), ("resnet18", {}))])
def test_model_by_image_size(size, expected):
    assert model_for_size(size) == expected


def test_defaults_fill_only_what_the_user_did_not_set(tmp_path):
    cfg, notes = fill_defaults({"dataset": "folder", "epochs": 40, "milestones": [30], "model_options": {"small_input": False}},
                               image_size=(96, 96))
    assert cfg["milestones"] == [30]  # the user's
    assert cfg["warmup_epochs"] == 1 and cfg["defer_epoch"] == 32 and cfg["lr_decay"] == 0.01
    assert cfg["model"] == "resnet18" and cfg["model_options"] == {"small_input": False}
    schedule_note = next(n for n in notes if n.startswith("default schedule"))
    assert any(n.startswith("default model: resnet18 (images 96x96") for n in notes) and "milestones" not in schedule_note
    # A config file that names its model and schedule keeps them; method, seed and name are per run.
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"dataset": "folder", "data_root": "x", "model": "resnet_small", "method": "open",
                                    "seed": 7, "warmup_epochs": 2, "defer_epoch": 5}))
    base, notes = base_config(user_config(path, None, ["lr=0.05"], 10))
    assert (base.model, base.warmup_epochs, base.defer_epoch, base.milestones) == ("resnet_small", 2.0, 5, [8, 9])
    assert (base.method, base.seed, base.lr, base.epochs) == ("erm", 0, 0.05, 10)
    assert not any(n.startswith("default model") for n in notes)
    assert notes[0] == "not used: method: 'open', seed: 7 (compare sets the method, seed and name of each run)"


# ------------------------------------------------------------------------------ the plan
def test_methods_and_variants():
    methods = parse_methods("erm, drs,open,open:bn_mode=aux,open")
    assert [m.name for m in methods] == ["erm", "drs", "open", "open_bn_mode-aux"]
    assert methods[3].overrides() == ["method=open", "bn_mode=aux"] and methods[3].label == "OPeN (bn_mode=aux)"
    for bad in ("erm,mixup", "open:lr=0.2", "open:seed=3", "open:nonsense=1", ""):
        with pytest.raises(ConfigError):
            parse_methods(bad)


def test_plan_branches_from_erm_of_the_same_seed(tmp_path):
    plan = make_plan(parse_methods("rs,open,drs"), 2, defer_epoch=8)
    assert [(s.name, s.parent) for s in plan] == [
        ("erm_s0", None), ("open_s0", "erm_s0"), ("drs_s0", "erm_s0"), ("rs_s0", None),
        ("erm_s1", None), ("open_s1", "erm_s1"), ("drs_s1", "erm_s1"), ("rs_s1", None)]
    # A switch at epoch 0 has no branch point: everything from scratch, no ERM added.
    assert [(s.name, s.parent) for s in make_plan(parse_methods("drs"), 1, 0)] == [("drs_s0", None)]
    argv = run_command(plan[1], tmp_path, tmp_path / "c.yaml")
    assert argv[argv.index("--init-from") + 1] == str(tmp_path / "erm_s0") and "--resume" not in argv
    (tmp_path / "open_s0" / "checkpoints").mkdir(parents=True)
    (tmp_path / "open_s0" / "checkpoints" / "last.pt").write_bytes(b"")
    argv = run_command(plan[1], tmp_path, tmp_path / "c.yaml")
    assert argv[-2:] == ["--resume", "auto"] and "--init-from" not in argv


def test_time_left_by_kind():
    full, branch = RunSpec(Method("erm"), 0), RunSpec(Method("drs"), 0, "erm_s0")
    log = [{"kind": "full", "seconds": 100, "exit_code": 0}, {"kind": "full", "seconds": 300, "exit_code": 0},
           {"kind": "full", "seconds": 5, "exit_code": 1}]
    assert estimate_left([full, full], log) == 400
    assert estimate_left([full, branch], log) is None  # no branch finished yet: unknown
    assert estimate_left([full, branch], log + [{"kind": "branch", "seconds": 10, "exit_code": 0}]) == 210


def test_each_run_is_a_purenoise_process_of_its_own(monkeypatch):
    seen = {}

    class FakePopen:
        def __init__(self, argv, env):
            seen.update(argv=argv, env=env)

        def wait(self):
            return 3

    monkeypatch.setattr(subprocess, "Popen", FakePopen)
    assert compare_plan.launch(["train", "--out", "x"]) == 3
    assert seen["argv"] == [sys.executable, "-m", "purenoise", "train", "--out", "x"]
    src = str(Path(compare_plan.__file__).resolve().parents[1])
    assert seen["env"]["PYTHONPATH"].split(":")[0] == src


# ------------------------------------------------------------------------------ the verdict
def test_verdict_words():
    d = lambda mean, std, n: {"n": n, "mean": mean, "std": std,  # noqa: E731
                              "lo": mean - t_quantile(n - 1) * std / math.sqrt(n) if n > 1 else None,
                              "hi": mean + t_quantile(n - 1) * std / math.sqrt(n) if n > 1 else None}
    assert verdict_line("OPeN", "DRS", d(0.0186, 0.0046, 5)) == \
        "OPeN - DRS: +1.86 [+1.29, +2.43] points over 5 seeds: OPeN ahead"
    assert verdict_line("OPeN", "RS", d(-0.0275, 0.0063, 3)).endswith(": OPeN behind")
    line = verdict_line("OPeN", "DRS", d(-0.0011, 0.0011, 3))
    need = seeds_to_resolve(-0.11, 0.11)
    assert line == ("OPeN - DRS: -0.11 [-0.38, +0.16] points over 3 seeds: not resolved: the interval contains 0; "
                    f"at this spread about {need} seeds would resolve a difference of this size")
    assert t_quantile(need - 1) * 0.11 / math.sqrt(need) < 0.11 <= t_quantile(need - 2) * 0.11 / math.sqrt(need - 1)
    assert "one seed gives no interval" in verdict_line("OPeN", "DRS", d(0.01, None, 1))
    assert "no seed has both runs finished" in verdict_line("OPeN", "DRS", {"n": 0, "mean": None})
    assert "same accuracy on every seed" in verdict_line("A", "B", d(0.0, 0.0, 3))
    assert "more than 1000 seeds" in verdict_line("A", "B", d(0.0, 0.01, 3))


def _fake_run(folder: Path, method: str, seed: int, **ev) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"method": method, "seed": seed}))
    base = {"top1": 0.5, "per_class_acc": [0.9, 0.6, 0.3, 0.1], "class_counts": [100, 30, 10, 3],
            "class_names": ["a", "b", "c", "d"], "epoch": 10}
    (folder / "eval.json").write_text(json.dumps({**base, **ev}))
    return folder


def test_should_open_help_reads_the_diagnostic(tmp_path):
    erm = _fake_run(tmp_path / "erm_s0", "erm", 0, train_per_class_acc=[1.0, 1.0, 1.0, 0.98],
                    train_at_defer={"epoch": 8, "train_per_class_acc": [1.0, 0.9, 0.5, 0.0]})
    opn = _fake_run(tmp_path / "open_s0", "open", 0, noise_pred_hist=[950, 30, 20, 0])
    text = "\n".join(should_open_help([erm, opn]))
    assert "## Should OPeN help here?" in text
    assert "at the switch (epoch 8): 25.00% training accuracy" in text and "d (seed 0)" in text
    assert "99.00% training accuracy, 20.00% test accuracy (training +79.00 points above test)" in text
    nearest = nearest_cells(load_findings(), 99.0)[0]
    assert f"`{nearest['cell']}`" in text and "the study found" in text.lower()
    assert "nearly all noise goes to one class (a)" in text and "No cell of the study is near" not in text
    far = "\n".join(should_open_help([_fake_run(tmp_path / "erm_s1", "erm", 1, train_per_class_acc=[0.5] * 4)]))
    assert "No cell of the study is near your runs" in far


def test_should_open_help_quotes_the_evidence_verdicts(tmp_path, monkeypatch):
    import purenoise.compare_verdict as cv

    erm = _fake_run(tmp_path / "erm_s0", "erm", 0, train_per_class_acc=[1.0, 1.0, 1.0, 0.98])
    cell = {"cell": "c", "drs_train_minority_half": 99.0, "drs_gap_minority_half": 20.0,
            "open_minus_drs": {"mean": 1.0, "lo": 0.5, "hi": 1.5}, "seeds": 5, "verdict": "ahead"}
    evidence = {"memorization": "supported", "against_best_baseline": "OPeN behind", "best_baseline": "RS"}
    monkeypatch.setattr(cv, "load_findings", lambda: {"cells": [cell], "evidence": evidence})
    text = "\n".join(should_open_help([erm]))
    assert ("that memorization drives OPeN's gain over DRS, supported; OPeN against the best baseline, "
            "OPeN behind (the best baseline there: RS).") in text
    for broken in (None, "supported", {"memorization": 1, "against_best_baseline": "in progress"}):
        monkeypatch.setattr(cv, "load_findings", lambda: {"cells": [cell], "evidence": broken})
        text = "\n".join(should_open_help([erm]))
        assert "evidence study" not in text and "`c`" in text


def test_findings_ship_with_the_package():
    cells = load_findings()["cells"]
    assert cells and all({"cell", "drs_train_minority_half", "open_minus_drs", "verdict"} <= set(c) for c in cells)
    assert nearest_cells(load_findings(), 100.0)[0]["drs_train_minority_half"] == max(
        c["drs_train_minority_half"] for c in cells)
    evidence = load_findings()["evidence"]
    assert evidence["memorization"] in ("in progress", "supported", "partly supported", "refuted", "not resolved")


# ------------------------------------------------------------------------------ end to end
def test_compare_trains_branches_and_says_the_verdict(finished):
    out, text = finished["out"], finished["stdout"]
    assert finished["code"] == 0
    assert finished["runner"].names() == ["erm_s0", "drs_s0", "open_s0", "erm_s1", "drs_s1", "open_s1"]
    for seed in (0, 1):
        for m in ("drs", "open"):
            ev = json.loads((out / f"{m}_s{seed}" / "eval.json").read_text())
            assert ev["branch"]["parent"] == f"erm_s{seed}" and ev["branch"]["epoch"] == 2
            assert ev["method"] == m and "noise_pred_hist" in ev
            # A plain folder: the held-out split's size and seed are recorded in every run.
            assert any("held out" in n and "seed 0" in n for n in ev["data_notes"]), ev["data_notes"]
    cfg = yaml.safe_load((out / "erm_s0" / "config.yaml").read_text())
    assert (cfg["model"], cfg["defer_epoch"], cfg["milestones"], cfg["warmup_epochs"]) == ("resnet_small", 2, [2], 0)
    assert "compare: default model: resnet_small (images 8x8 px" in text
    assert "compare: run 2 of 6: drs_s0 (from erm_s0 at the switch epoch); 1 done, 5 left, time left unknown" in text
    assert "compare: run 4 of 6: erm_s1; 3 done, 3 left, time left about" in text
    log = [json.loads(line) for line in (out / "compare_log.jsonl").read_text().splitlines()]
    assert [(e["run"], e["exit_code"], e["kind"]) for e in log][:2] == [("erm_s0", 0, "full"), ("drs_s0", 0, "branch")]
    assert all(e["seconds"] >= 0 and e["command"].startswith("purenoise train") for e in log)
    verdict = (out / "verdict.md").read_text()
    for pair in ("OPeN - DRS: ", "OPeN - ERM: ", "DRS - ERM: "):
        assert pair in verdict and pair in text
    assert "over 2 seeds" in verdict and "- RS - ERM" not in verdict
    assert "## Should OPeN help here?" in verdict and "the study found" in verdict.lower() and "`fmnist_lt_r100" in verdict
    assert "What the OPeN runs predict for pure-noise images" in verdict


def test_second_invocation_skips_finished_runs(finished, tmp_path, monkeypatch, capsys):
    out = _copy(finished, tmp_path)
    runner = Runner()
    assert run_compare(monkeypatch, finished["data"], out, runner) == 0
    assert runner.calls == []
    printed = capsys.readouterr().out
    assert "6 of 6 runs already finished (skipped)" in printed and "OPeN - DRS: " in printed


def test_interrupted_run_resumes(finished, tmp_path, monkeypatch):
    out = _copy(finished, tmp_path)
    (out / "open_s0" / "eval.json").unlink()  # stopped after its last checkpoint, before its evaluation
    runner = Runner()
    assert run_compare(monkeypatch, finished["data"], out, runner) == 0
    assert runner.names() == ["open_s0"] and runner.calls[0][-2:] == ["--resume", "auto"]
    assert json.loads((out / "open_s0" / "eval.json").read_text())["branch"]["parent"] == "erm_s0"


def test_a_failed_run_does_not_stop_the_plan(finished, tmp_path, monkeypatch, capsys):
    out = _copy(finished, tmp_path)
    for name in ("erm_s1", "drs_s1", "open_s1"):
        shutil.rmtree(out / name)
    runner = Runner(fail={"erm_s1"})
    assert run_compare(monkeypatch, finished["data"], out, runner) == 1
    printed = capsys.readouterr().out
    assert "erm_s1 failed (exit code 1" in printed and "drs_s1 waits: its parent erm_s1 did not finish" in printed
    assert "Not finished: erm_s1, drs_s1, open_s1" in (out / "verdict.md").read_text()
    assert "over 1 seed: one seed gives no interval" in printed
    log = [json.loads(line) for line in (out / "compare_log.jsonl").read_text().splitlines()]
    assert (log[-1]["run"], log[-1]["exit_code"]) == ("erm_s1", 1)
    runner = Runner()
    assert run_compare(monkeypatch, finished["data"], out, runner) == 0  # the same command again
    assert runner.names() == ["erm_s1", "drs_s1", "open_s1"]
    assert "--init-from" in runner.calls[1]


def test_bad_input_is_refused_before_any_run(finished, tmp_path, monkeypatch, capsys):
    runner = Runner()
    out = _copy(finished, tmp_path)
    assert run_compare(monkeypatch, finished["data"], out, runner, "--set", "lr=0.3") == 2  # other settings
    assert "lr: 0.1 there, 0.3 now" in capsys.readouterr().err
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert run_compare(monkeypatch, finished["data"], other, runner) == 2
    assert "notes.txt" in capsys.readouterr().err and (other / "notes.txt").read_text() == "mine"
    assert main(["compare", "--data", str(finished["data"]), "--methods", "open:lr=1", "--out", str(tmp_path / "x")]) == 2
    assert main(["compare", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "y")]) == 2
    assert runner.calls == [] and not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
