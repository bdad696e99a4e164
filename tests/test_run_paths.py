"""The run folder's layout has one home: purenoise.run_paths names every file, nothing else does."""
from __future__ import annotations

import ast
from pathlib import Path

from purenoise import run_paths
from purenoise.run_paths import RunPaths

SRC = Path(__file__).resolve().parents[1] / "src" / "purenoise"
FILE_NAMES = (run_paths.CONFIG_FILE, run_paths.METRICS_FILE, run_paths.EVAL_FILE, run_paths.MODEL_FILE,
              run_paths.SAMPLES_FILE, run_paths.LAST_CHECKPOINT, run_paths.MARKER, run_paths.WRITE_PROBE)


def _named_files(source: str) -> list[str]:
    """The string literals of ``source`` that are a run folder's file name (prose that mentions one is not)."""
    return [node.value for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Constant) and node.value in FILE_NAMES]


def test_no_module_but_run_paths_names_a_run_folders_file():
    found = {str(p.relative_to(SRC)): _named_files(p.read_text(encoding="utf-8"))
             for p in SRC.rglob("*.py") if p != SRC / "run_paths.py"}
    assert {k: v for k, v in found.items() if v} == {}


def test_the_check_finds_a_literal_name_and_leaves_prose():
    assert _named_files("p = out / 'eval.json'\nq = f'{out / \"model.pt\"}'") == ["eval.json", "model.pt"]
    assert _named_files('"""Writes eval.json."""\nmsg = "eval.json is missing"') == []


def test_the_paths_are_the_layout(tmp_path):
    paths = RunPaths(tmp_path)
    assert [paths.config.name, paths.metrics.name, paths.eval.name, paths.model.name, paths.samples.name] == [
        "config.yaml", "metrics.jsonl", "eval.json", "model.pt", "samples.pt"]
    assert paths.last_checkpoint == tmp_path / "checkpoints" / "last.pt"
    assert paths.epoch_checkpoint(7) == tmp_path / "checkpoints" / "epoch_0007.pt"
    assert set(run_paths.REPORT_FILES) <= {p.name for p in (paths.config, paths.metrics, paths.eval, paths.samples)}


def test_a_runs_own_files_are_not_foreign_and_others_are(tmp_path):
    paths = RunPaths(tmp_path)
    for p in (paths.config, paths.eval, paths.marker, paths.write_probe, tmp_path / ".eval.json.ab12cd.tmp"):
        p.write_text("x")
    paths.checkpoints.mkdir()
    paths.last_checkpoint.write_text("x")
    (paths.checkpoints / ".last.pt.x1y2.tmp").write_text("x")
    (tmp_path / "notes.txt").write_text("x")
    (paths.checkpoints / "mine.pt").write_text("x")
    assert sorted(p.name for p in paths.foreign()) == ["mine.pt", "notes.txt"]
    assert sorted(p.name for p in paths.temporary_files()) == [".eval.json.ab12cd.tmp", ".last.pt.x1y2.tmp"]
