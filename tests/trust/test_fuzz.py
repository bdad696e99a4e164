"""Seeded fuzz of every command: ``train``, ``eval``, ``predict``, ``report`` and ``data``.

Whatever a user is handed (a config, a checkpoint, a run folder, an image folder) and whatever
numbers they type, a command ends with exit code 0 (done) or 2 (one ``purenoise: error:``
paragraph), never with a traceback. The cases are the known hostile inputs (the seed corpus)
plus random mutations of a valid tiny config, checkpoint and run folder: a key deleted, a value
of another type, huge, negative, NaN, empty or nested garbage. The mutations come from a fixed
seed, so every run tries the same cases; a failing case id names one reproducible input.
"""
from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from purenoise.cli import main
from tests.helpers import deadline
from tests.helpers.writers import save_image

SEED = 20240611
N_MUTATIONS = {"config": 32, "checkpoint": 24, "run": 10, "data": 16}
CASE_SECONDS = 30  # a case that runs longer hangs: it fails rather than blocking the suite
# Keys whose huge or missing values are a legitimately long job, not a bad input.
LONG_JOB_KEYS = ("epochs", "workers")
_DELETE = object()  # a mutation that removes the key


@dataclass(frozen=True)
class World:
    """The valid inputs the cases start from: a tiny image folder, its config and a finished run."""

    data: Path
    config: dict[str, Any]
    run: Path
    image: Path

    @property
    def model(self) -> Path:
        return self.run / "model.pt"

    @property
    def last(self) -> Path:
        return self.run / "checkpoints" / "last.pt"

    @property
    def branch(self) -> Path:
        """The checkpoint at the defer epoch, which ``--init-from`` starts a second phase from."""
        return self.run / "checkpoints" / "epoch_0001.pt"

    def eval(self, ckpt: Path, *extra: str) -> list[str]:
        return ["eval", "--checkpoint", str(ckpt), "--data-root", str(self.data), *extra]


def _write_folder(root: Path) -> Path:
    for k, n in enumerate((6, 3)):
        for i in range(n):
            save_image(root / "train" / f"class{k}" / f"{i}.png", size=(8, 8))
        for i in range(2):
            save_image(root / "test" / f"class{k}" / f"{i}.png", size=(8, 8))
    return root


def _config(data: Path) -> dict[str, Any]:
    return {"dataset": "folder", "data_root": str(data), "model": "resnet_small", "method": "open", "epochs": 2,
            "defer_epoch": 1, "batch_size": 4, "lr": 0.05, "warmup_epochs": 0, "milestones": [],
            "augment": "test", "workers": 0, "progress": False, "device": "cpu", "delta": 1.0,
            "limit_batches": 1, "dataset_options": {"seed": 0}, "model_options": {}, "loss_options": {}}


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    base = tmp_path_factory.mktemp("fuzz")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PURENOISE_CACHE_DIR", str(base / "cache"))
        mp.setenv("PURENOISE_DATA", str(base / "default_data"))
        data = _write_folder(base / "data")
        cfg = base / "config.yaml"
        cfg.write_text(yaml.safe_dump(_config(data)))
        assert main(["train", "-c", str(cfg), "-o", str(base / "run")]) == 0
    return World(data, _config(data), base / "run", data / "test" / "class0" / "0.png")


@pytest.fixture(autouse=True)
def _private(tmp_path, monkeypatch):
    """Each case runs in its own folder, with its own statistics cache and an empty data folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PURENOISE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PURENOISE_DATA", str(tmp_path / "default_data"))



def _check_exit(argv: list[str], capsys, what: str = "") -> None:
    """Run the command in-process: exit code 0 or 2 and no traceback, else fail naming the input."""
    capsys.readouterr()
    try:
        with deadline(CASE_SECONDS):
            code = main(argv)
    except SystemExit as e:  # argparse rejects the command line
        code = e.code
    except Exception as e:  # noqa: BLE001 - the failure names the case, then shows the traceback
        pytest.fail(f"{type(e).__name__} escaped for {argv} {what}\n{traceback.format_exc()}")
    err = capsys.readouterr().err
    assert code in (0, 2), f"exit code {code} for {argv} {what}\n{err}"
    assert "Traceback" not in err, f"{argv} {what}\n{err}"


# ----------------------------------------------------------------------------- builders
def _yaml(tmp: Path, cfg: dict[str, Any] | str, name: str = "cfg.yaml") -> Path:
    path = tmp / name
    path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
    return path


def _train(w: World, tmp: Path, *extra: str, cfg: dict[str, Any] | str | None = None) -> list[str]:
    return ["train", "-c", str(_yaml(tmp, w.config if cfg is None else cfg)), "--out", str(tmp / "out"), *extra]


def _craft(source: Path, dest: Path, change: Callable[[dict], Any]) -> Path:
    state = torch.load(source, weights_only=True)
    change(state)
    torch.save(state, dest)
    return dest


def _set(key: str, value: Any) -> Callable[[dict], None]:
    def change(state: dict) -> None:
        if value is _DELETE:
            state.pop(key, None)
        else:
            state[key] = value
    return change


def _weights(fn: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[dict], None]:
    def change(state: dict) -> None:
        name = next(k for k, v in state["model"].items() if v.is_floating_point())
        state["model"][name] = fn(state["model"][name])
    return change


def _copy_run(w: World, tmp: Path) -> Path:
    run = tmp / "run"
    shutil.copytree(w.run, run, ignore=shutil.ignore_patterns("checkpoints", "model.pt", ".purenoise-run"))
    return run


def _report(run: Path, tmp: Path) -> list[str]:
    return ["report", str(run), "--out", str(tmp / "report")]


# ----------------------------------------------------------------------------- seed corpus
_LAUGHS = "l0: &l0 lol\n" + "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10))


def _seed_cases() -> dict[str, Callable[[World, Path], list[str]]]:
    """The reviewed hostile inputs, each a function of the valid world and a private folder."""
    def with_text(text: str):
        def make(w, tmp):
            return _train(w, tmp, cfg=yaml.safe_dump(w.config) + text)
        return make

    def with_set(*sets: str):
        return lambda w, tmp: _train(w, tmp, *[a for s in sets for a in ("--set", s)])

    def on_model(command: str, change, source: str = "model", *extra: str):
        def make(w, tmp):
            ckpt = _craft(getattr(w, source), tmp / "crafted.pt", change)
            if command == "eval":
                return w.eval(ckpt, *extra)
            if command == "predict":
                return ["predict", "--checkpoint", str(ckpt), str(w.image), *extra]
            return _train(w, tmp, "--resume", str(ckpt)) if command == "resume-with-config" else \
                ["train", "--resume", str(ckpt), "--out", str(tmp / "out")]
        return make

    def non_json_metrics(*extra: str):
        def make(w, tmp):
            (tmp / "out").mkdir()
            (tmp / "out" / "metrics.jsonl").write_text("this is not JSON\n{\"epoch\": \n")
            return _train(w, tmp, *extra)
        return make

    def eval_json(change: Callable[[dict], Any]):
        def make(w, tmp):
            run = _copy_run(w, tmp)
            ev = json.loads((run / "eval.json").read_text())
            change(ev)
            (run / "eval.json").write_text(json.dumps(ev))
            return _report(run, tmp)
        return make

    def samples(content: Callable[[Path], None]):
        def make(w, tmp):
            run = _copy_run(w, tmp)
            content(run / "samples.pt")
            return _report(run, tmp)
        return make

    def looped(command: str):
        def make(w, tmp):
            data = tmp / "data"
            shutil.copytree(w.data, data)
            os.symlink(".", data / "train" / "class0" / "self")
            if command == "data":
                return ["data", "info", "folder", "--root", str(data)]
            return _train(w, tmp, cfg={**w.config, "data_root": str(data)})
        return make

    return {
        "yaml-anchor-bomb": with_text(_LAUGHS),
        "yaml-self-anchor": with_text("loop: &loop [*loop]\n"),
        "base-dev-zero": with_text("base: /dev/zero\n"),
        "base-etc-passwd": with_text("base: /etc/passwd\n"),
        "set-stats-false": with_set("dataset_options.stats=false"),
        "set-noise-ratio-1e12": with_set("method=noise_aug", "noise_ratio=1e12"),
        "set-num-classes": with_set("model_options.num_classes=3"),
        "set-in-chans": with_set("model_options.in_chans=1"),
        "set-pretrained": with_set("model_options.pretrained=true"),
        "set-download": with_set("dataset_options.download=true"),
        "set-root": with_set("dataset_options.root=/tmp"),
        "set-class-counts": with_set("loss_options.class_counts=[1,2]"),
        "set-workers-negative": with_set("workers=-1"),
        "out-non-json-metrics": non_json_metrics(),
        "resume-auto-non-json-metrics": non_json_metrics("--resume", "auto"),
        "eval-no-config": on_model("eval", _set("config", _DELETE)),
        "predict-no-config": on_model("predict", _set("config", _DELETE)),
        "resume-no-config": on_model("resume", _set("config", _DELETE), "last"),
        "predict-empty-class-names": on_model("predict", _set("class_names", [])),
        "eval-empty-class-names": on_model("eval", _set("class_names", [])),
        "predict-string-model-options": on_model("predict", _set("model_options", "depth=20")),
        "predict-huge-image-size": on_model("predict", _set("image_size", [10**6, 10**6])),
        "resume-no-optimizer": on_model("resume-with-config", _set("optimizer", _DELETE), "last"),
        "resume-no-rng": on_model("resume-with-config", _set("rng", _DELETE), "last"),
        "resume-epoch-1e9-own-config": on_model("resume", _set("epoch", 10**9), "last"),
        "predict-int64-weights": on_model("predict", _weights(lambda t: t.to(torch.int64))),
        "eval-complex-weights": on_model("eval", _weights(lambda t: t.to(torch.complex64))),
        "predict-nan-weights": on_model("predict", _weights(lambda t: torch.full_like(t, float("nan")))),
        "predict-std-zero": on_model("predict", _set("std", [0.0, 0.0, 0.0])),
        "resume-epoch-1e9": on_model("resume-with-config", _set("epoch", 10**9), "last"),
        "resume-batch-negative": on_model("resume-with-config", _set("batch", -5), "last"),
        "predict-top-negative": on_model("predict", lambda s: None, "model", "--top", "-3"),
        "eval-batch-size-0": on_model("eval", lambda s: None, "model", "--batch-size", "0"),
        "eval-workers-negative": on_model("eval", lambda s: None, "model", "--workers", "-1"),
        "report-confusion-strings": eval_json(lambda ev: ev.update(confusion=[["a", "b"], ["c", "d"]])),
        "report-confusion-ragged": eval_json(lambda ev: ev.update(confusion=[[1, 2], [3]])),
        "report-confusion-wrong-size": eval_json(lambda ev: ev.update(confusion=[[1]])),
        "report-samples-pickle": samples(lambda p: p.write_bytes(pickle.dumps({"natural": Path(".")}, protocol=2))),
        "report-samples-not-tensors": samples(lambda p: torch.save({"natural": "images", "noise": [1, 2]}, p)),
        "report-samples-wrong-shape": samples(lambda p: torch.save({"natural": torch.zeros(3, 5)}, p)),
        "data-huge-image-size": lambda w, tmp: ["data", "info", "folder", "--root", str(w.data),
                                                "--set", "image_size=1000000"],
        "folder-symlink-loop-train": looped("train"),
        "folder-symlink-loop-data": looped("data"),
    }


SEED_CASES = _seed_cases()


@pytest.mark.parametrize("case", list(SEED_CASES))
def test_seed_corpus_exits_0_or_2(case, world, tmp_path, capsys):
    _check_exit(SEED_CASES[case](world, tmp_path), capsys, f"(seed case {case})")


# ----------------------------------------------------------------------------- mutations
def _garbage(rng: random.Random, current: Any, protected: bool) -> Any:
    """A replacement for ``current``: ``_DELETE`` or a value of another kind."""
    ops = ["type", "negative", "nan", "empty", "nested"] + ([] if protected else ["delete", "huge"])
    if isinstance(current, torch.Tensor):
        ops += ["int64", "complex", "tensor-nan", "shape", "scalar"] * 2
    op = rng.choice(ops)
    values = {
        "delete": _DELETE,
        "type": rng.choice([v for v in ("text", 7, 2.5, True, None, [1, "a"], {"k": "v"})
                            if type(v) is not type(current)]),
        "huge": rng.choice([10**30, 1e308, 2**63, -(10**18)]),
        "negative": rng.choice([-1, -7.5]),
        "nan": rng.choice([float("nan"), float("inf"), float("-inf")]),
        "empty": rng.choice(["", [], {}]),
        "nested": {"a": [{"b": [None, {"c": "x" * 3}]}, -1, 1e300]},
    }
    if op in values:
        return values[op]
    t = current
    return {"int64": lambda: t.to(torch.int64), "complex": lambda: t.to(torch.complex64),
            "tensor-nan": lambda: torch.full(t.shape, float("nan")), "shape": lambda: torch.zeros(3, 1, 2),
            "scalar": lambda: torch.tensor(5)}[op]()


def _mutate(obj: Any, rng: random.Random, protected: tuple[str, ...] = ()) -> str:
    """Change one randomly chosen place of ``obj`` (nested dicts and lists) in place; describe it."""
    where: list[Any] = []
    parent, key = None, None
    node = obj
    while isinstance(node, (dict, list)) and len(node) and (parent is None or rng.random() < 0.5):
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        parent, key = node, rng.choice(keys)
        where.append(key)
        node = parent[key]
    if parent is None:
        return "nothing to change"
    value = _garbage(rng, node, protected=len(where) == 1 and where[0] in protected)
    if value is _DELETE:
        del parent[key]
        return f"{where}: deleted"
    parent[key] = value
    shown = f"tensor {value.dtype} {list(value.shape)}" if isinstance(value, torch.Tensor) else repr(value)[:60]
    return f"{where} = {shown}"


def _mutated_config(w: World, tmp: Path, rng: random.Random) -> tuple[list[str], str]:
    cfg = json.loads(json.dumps(w.config))
    what = _mutate(cfg, rng, LONG_JOB_KEYS)
    return _train(w, tmp, cfg=cfg), f"config {what}"


def _mutated_checkpoint(w: World, tmp: Path, rng: random.Random) -> tuple[list[str], str]:
    source = rng.choice(["model", "last", "branch"])
    state = torch.load(getattr(w, source), weights_only=True)
    what = _mutate(state, rng, ("config",))
    ckpt = tmp / "crafted.pt"
    torch.save(state, ckpt)
    # The valid config decides how long training runs; the checkpoint is what is fuzzed.
    argv = {"model": lambda: rng.choice([["predict", "--checkpoint", str(ckpt), str(w.image)], w.eval(ckpt)]),
            "last": lambda: rng.choice([_train(w, tmp, "--resume", str(ckpt)), w.eval(ckpt)]),
            "branch": lambda: _train(w, tmp, "--init-from", str(ckpt), cfg={**w.config, "method": "drs"})}[source]()
    return argv, f"{getattr(w, source).name} {what}"


def _mutated_run(w: World, tmp: Path, rng: random.Random) -> tuple[list[str], str]:
    run = _copy_run(w, tmp)
    name = rng.choice(["eval.json", "metrics.jsonl", "config.yaml", "samples.pt"])
    path = run / name
    if name == "eval.json":
        ev = json.loads(path.read_text())
        what = _mutate(ev, rng)
        path.write_text(json.dumps(ev))
    elif name == "metrics.jsonl":
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        what = _mutate(lines, rng)
        path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    elif name == "config.yaml":
        cfg = yaml.safe_load(path.read_text())
        what = _mutate(cfg, rng)
        path.write_text(yaml.safe_dump(cfg))
    else:
        smp = torch.load(path, weights_only=True)
        what = _mutate(smp, rng)
        torch.save(smp, path)
    return _report(run, tmp), f"{name} {what}"


def _mutated_data(w: World, tmp: Path, rng: random.Random) -> tuple[list[str], str]:
    options = {"seed": 0, "val_fraction": 0.2, "test_split": "auto", "image_size": [8, 8], "mode": "RGB",
               "ratio": 2, "profile": "exp", "n_max": 3, "class_order": [1, 0], "skip_corrupt": False}
    what = _mutate(options, rng)
    sets = [a for k, v in options.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    return ["data", "info", "folder", "--root", str(w.data), *sets], f"dataset options {what}"


MUTATORS = {"config": _mutated_config, "checkpoint": _mutated_checkpoint, "run": _mutated_run,
            "data": _mutated_data}
MUTATIONS = [(kind, i) for kind, n in N_MUTATIONS.items() for i in range(n)]


@pytest.mark.parametrize("kind, index", MUTATIONS, ids=[f"{k}-{i:02d}" for k, i in MUTATIONS])
def test_mutations_exit_0_or_2(kind, index, world, tmp_path, capsys):
    rng = random.Random(f"{SEED}-{kind}-{index}")
    argv, what = MUTATORS[kind](world, tmp_path, rng)
    _check_exit(argv, capsys, f"({kind} mutation {index}: {what})")
