"""The main job's scripts end to end on a small Fashion-MNIST fixture: ``make demo``'s
``benchmarks/fmnist_lt/demo.py`` (ERM trained once, DRS and OPeN branched from it, one table, a
report) and ``results.py`` (RESULTS.md written from the run folders, nothing typed by hand)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.data._writers import write_fmnist

STUDY = Path(__file__).resolve().parents[1] / "benchmarks" / "fmnist_lt"


@pytest.fixture
def study_modules(monkeypatch):
    monkeypatch.syspath_prepend(str(STUDY))
    for name in ("study", "demo", "results"):
        sys.modules.pop(name, None)
    import demo
    import results
    import study

    return demo, study, results


def test_demo_and_results_on_a_fixture(study_modules, tmp_path, monkeypatch, capsys):
    demo, study, results = study_modules
    write_fmnist(tmp_path / "fm", per_class=40, test_per_class=6)
    monkeypatch.setenv("PURENOISE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)  # the scripts chdir to the repository; this puts it back after
    runs = tmp_path / "runs"
    small = [f"data_root={tmp_path / 'fm'}", "ratio=10", "dataset_options.n_max=40", "epochs=3",
             "defer_epoch=2", "milestones=[]", "warmup_epochs=0", "batch_size=16", "progress=false"]
    assert demo.main(["--runs", str(runs), "--no-download", *[x for kv in small for x in ("--set", kv)]]) == 0
    out = capsys.readouterr().out

    folders = {m: runs / "fmnist_lt_r100" / f"{m}_s0" for m in ("erm", "drs", "open")}
    evals = {m: json.loads((f / "eval.json").read_text()) for m, f in folders.items()}
    # DRS and OPeN branched from ERM's checkpoint at the defer epoch instead of retraining it.
    log = [json.loads(x) for x in (runs / "study_log.jsonl").read_text().splitlines()]
    assert [Path(e["run"]).name for e in log] == ["erm_s0", "drs_s0", "open_s0"]
    assert [e["parent"] for e in log] == [None, "erm", "erm"]
    assert all("--init-from" in e["command"] for e in log[1:])
    assert evals["open"]["branch"]["epoch"] == 2
    # One comparison table with each run's measured top-1, and the report with its plots.
    for m, ev in evals.items():
        assert f"{100 * ev['top1']:.2f}" in out, m
    report = runs / "report" / "report.md"
    assert report.exists() and (runs / "report" / "per_class_accuracy.png").stat().st_size > 0

    # results.py: the tables come from the same eval.json files; unfinished plans say so.
    md = results.write(runs, tmp_path / "RESULTS.md").read_text()
    erm_row = next(line for line in md.splitlines() if line.startswith("| ERM |"))
    assert erm_row.split("|")[2].strip() == f"{100 * evals['erm']['top1']:.2f}"
    assert "not all runs are finished yet" in md
    assert "## The paper's benchmarks on a GPU machine" in md
