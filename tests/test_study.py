"""The study's scripts: ``make demo``'s ``demo.py`` end to end on a small Fashion-MNIST fixture,
``select_cell.py``'s rule, and ``results.py`` (RESULTS.md from run folders, nothing typed by hand)."""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest
import yaml

from tests.helpers.writers import write_fmnist
from tests.helpers.run_folders import ACCS, eval_record

STUDY = Path(__file__).resolve().parents[1] / "benchmarks" / "fmnist_lt"


@pytest.fixture
def study_modules(monkeypatch):
    monkeypatch.syspath_prepend(str(STUDY))
    monkeypatch.syspath_prepend(str(STUDY.parent))
    for name in ("study", "demo", "results", "select_cell"):
        sys.modules.pop(name, None)
    import demo
    import results
    import select_cell
    import study

    return demo, study, results, select_cell


def test_demo_on_a_fixture(study_modules, tmp_path, monkeypatch, capsys):
    demo, study, _, _ = study_modules
    write_fmnist(tmp_path / "fm", per_class=40, test_per_class=6)
    monkeypatch.setenv("PURENOISE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    small = [f"data_root={tmp_path / 'fm'}", "ratio=10", "dataset_options.n_max=40", "epochs=3",
             "defer_epoch=2", "milestones=[]", "warmup_epochs=0", "batch_size=16", "progress=false"]
    assert demo.main(["--runs", str(runs), "--no-download", *[x for kv in small for x in ("--set", kv)]]) == 0
    out = capsys.readouterr().out

    cell = study.demo_cell()
    folders = {m: runs / cell / f"{m}_s0" for m in ("erm", "drs", "open")}
    evals = {m: json.loads((f / "eval.json").read_text()) for m, f in folders.items()}
    # DRS and OPeN branched from ERM's checkpoint at the defer epoch instead of retraining it.
    log = [json.loads(x) for x in (runs / "study_log.jsonl").read_text().splitlines()]
    assert [Path(e["run"]).name for e in log] == ["erm_s0", "drs_s0", "open_s0"]
    assert [e["parent"] for e in log] == [None, "erm", "erm"]
    assert all("--init-from" in e["command"] for e in log[1:]) and all(e["machine"] for e in log)
    assert evals["open"]["branch"]["epoch"] == 2
    # One comparison table with each run's measured top-1, the study's range, and the report.
    for m, ev in evals.items():
        assert f"{100 * ev['top1']:.2f}" in out, m
    assert f"main cell: {cell}" in out
    assert "The study" in out
    report = runs / "report" / "report.md"
    assert report.exists() and (runs / "report" / "train_vs_test.png").stat().st_size > 0


def _write_run(root: Path, cell: str, method: str, seed: int, shift: float, train_top1: float = 0.999) -> Path:
    d = root / cell / f"{method}_s{seed}"
    d.mkdir(parents=True)
    cfg = {"name": f"{cell}_{method}_s{seed}", "method": method, "seed": seed, "dataset": "fmnist_lt",
           "model": "resnet_small", "epochs": 10, "defer_epoch": 6}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    ev = eval_record(method, [min(1.0, a + shift) for a in ACCS.get(method, ACCS["open"])], seed)
    ev.update(train_top1=train_top1, train_per_class_acc=[1.0] * 5 + [0.9 + 0.01 * seed] * 5)
    (d / "eval.json").write_text(json.dumps(ev))
    return d


def test_select_cell_follows_the_rule(study_modules, tmp_path):
    _, study, _, select_cell = study_modules
    cheap, mid = study.REGIME_CELLS[0], study.REGIME_CELLS[1]
    for seed, acc in enumerate((0.992, 0.985, 0.98)):  # mean 0.9857 < 0.99: does not memorize
        _write_run(tmp_path, cheap, "erm", seed, 0.0, acc)
    assert select_cell.select(tmp_path)["cell"] is None  # the next cheapest is not decided yet
    for seed, acc in enumerate((0.999, 0.995, 0.997)):
        _write_run(tmp_path, mid, "erm", seed, 0.0, acc)
    result = select_cell.select(tmp_path)
    assert result["cell"] == mid
    costs = [c["pflop"] for c in result["cells"]]
    assert costs == sorted(costs) and result["cells"][0]["cell"] == cheap
    assert select_cell.main(["--runs", str(tmp_path)]) == 0
    assert json.loads((tmp_path / study.MAIN_CELL_FILE).read_text())["cell"] == mid
    assert study.main_cell(tmp_path) == mid


def test_results_from_run_folders(study_modules, tmp_path):
    _, study, results, _ = study_modules
    cell = study.REGIME_CELLS[0]
    shifts = (0.0, 0.02, -0.01)
    for seed, shift in enumerate(shifts):
        for m in ("erm", "rs", "drs", "open"):
            _write_run(tmp_path, cell, m, seed, shift)
    md = results.write(tmp_path, tmp_path / "RESULTS.md").read_text()
    s = results.Study(tmp_path)
    tops = {m: [results.metric(r, "top1") for r in s.get(cell, m).runs] for m in ("open", "drs")}
    row = next(line for line in md.splitlines() if line.startswith("| OPeN | 3 |"))
    assert row.split("|")[3].strip() == f"{100 * statistics.fmean(tops['open']):.2f} ± {100 * statistics.stdev(tops['open']):.2f}"
    diffs = [a - b for a, b in zip(tops["open"], tops["drs"])]
    assert f"| OPeN − DRS | {100 * statistics.fmean(diffs):+.2f} ± {100 * statistics.stdev(diffs):.2f}" in md
    assert "**The study is not finished" in md
    assert "## The headline: OPeN − DRS against memorization" in md and "figures/open_minus_drs.png" in md
    assert (tmp_path / "figures" / "open_minus_drs.png").stat().st_size > 0
    assert (tmp_path / "figures" / "open_minus_drs_gap.png").stat().st_size > 0 and "DRS gap, minority half" in md
    assert "| OPeN > DRS |" in md and "## The paper's benchmarks on a GPU machine" in md


def test_results_overview_states_each_ordering(study_modules, tmp_path):
    """Orderings built to hold, to reverse and to stay unresolved appear as such in "In short"."""
    _, study, results, _ = study_modules
    cell = study.REGIME_CELLS[0]
    shifts = {"erm": (0.1, 0.1, 0.1), "drs": (0.0, 0.0, 0.0), "open": (0.0, 0.0, 0.0),
              "rs": (0.15, -0.05, 0.10)}  # OPeN − RS: about -7, +13, -2 points
    for m, per_seed in shifts.items():
        for seed, shift in enumerate(per_seed):
            _write_run(tmp_path, cell, m, seed, shift)
    md = results.write(tmp_path, tmp_path / "RESULTS.md").read_text()
    row = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in md.split("## Set-up")[0].splitlines()
           if line.startswith("| ") and not line.startswith("| Ordering")}
    assert row["OPeN > DRS"].startswith("holds (+")
    assert row["DRS > ERM"].startswith("reversed (-") and row["DRS > ERM"].endswith("; Bonferroni: reversed")
    assert row["OPeN > RS"].startswith("not resolved (") and "DRS > RS" in row  # both follow from Table 1
    assert "- : fewer than two paired seeds" in md


def test_results_count_the_x4_cell_as_required_when_it_is_the_main_cell(study_modules, tmp_path):
    _, study, results, _ = study_modules
    (tmp_path / study.MAIN_CELL_FILE).write_text(json.dumps({"cell": study.WIDE_CELL}))
    s = results.Study(tmp_path)
    assert len(s.required) == len(s.planned) and any(r.setting == study.WIDE_CELL for r in s.required)
    (tmp_path / study.MAIN_CELL_FILE).write_text(json.dumps({"cell": study.REGIME_CELLS[1]}))
    s = results.Study(tmp_path)
    assert not any(r.setting == study.WIDE_CELL for r in s.required)
    assert len(s.planned) - len(s.required) == len(study.plan("wide", tmp_path))


def test_a_plan_can_be_trained_cell_by_cell(study_modules, tmp_path):
    _, study, _, _ = study_modules
    everything = study.plan("regime", tmp_path)
    short = study.in_cells(everything, (study.SHORT_CELL,))
    assert short and {s.setting for s in short} == {study.SHORT_CELL}
    assert short == [s for s in everything if s.setting == study.SHORT_CELL]  # parents still first
    assert study.in_cells(everything, ()) == everything
    with pytest.raises(SystemExit, match="no such folder"):
        study.in_cells(everything, ("not_a_cell",))
    paired = study.in_cells(everything, (study.SHORT_CELL,), ("erm", "drs", "open"))
    assert [s.method for s in paired[:3]] == ["erm", "drs", "open"] and len(paired) == 9  # 3 seeds, no RS
    with pytest.raises(SystemExit, match="not in this plan"):
        study.in_cells(everything, (), ("sgd",))
