"""Reports from run folders: loading, tables, aggregates, Markdown and figures.

The fixtures write run folders the way the trainer does (config.yaml, metrics.jsonl, eval.json,
samples.pt), for a 10-class Fashion-MNIST-LT at imbalance ratio 100, with an eval.json whose
numbers are consistent with its confusion matrix.
"""
from __future__ import annotations

import csv
import json
import re
import statistics
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from purenoise.errors import DataError, DataNotFoundError, PureNoiseError
from purenoise.reporting.report import make_report
from purenoise.reporting.runs import load_run
from purenoise.reporting.summary import (
    MAIN_METRICS,
    aggregate,
    format_aggregate,
    format_table,
    minority_half_accuracy,
    summarize,
)

from tests.helpers.run_folders import ACCS, COUNTS, write_run
from tests.helpers.run_folders import eval_record as _eval
from tests.helpers.run_folders import metrics_records as _metrics


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("runs")
    return [write_run(root, m, samples=(m == "open")) for m in ("erm", "drs", "open")]


@pytest.fixture(scope="module")
def report(three_runs) -> Path:
    return make_report(three_runs, title="ERM vs DRS vs OPeN")


def _minority(acc: list[float]) -> float:
    """The 5 classes with fewest training images are the last 5 (counts decrease with the index)."""
    pca = _eval("x", acc)["per_class_acc"]
    return float(np.mean(pca[5:]))


def test_report_numbers_match_eval_json(three_runs, report):
    assert report == three_runs[0].parent / "report" / "report.md"
    text = report.read_text()
    assert text.startswith("# ERM vs DRS vs OPeN")
    for d, m in zip(three_runs, ("erm", "drs", "open")):
        ev = json.loads((d / "eval.json").read_text())
        mh = _minority(ACCS[m])
        results = text.split("## Results")[1].split("##")[0]
        row = next(line for line in results.splitlines() if line.startswith(f"| {m} | {m} |"))
        cells = [c.strip() for c in row.strip("|").split("|")]
        # Run, Method, Top-1, Bal. acc, Many, Medium, Few, Minority half, ECE
        assert cells[2:] == [f"{100 * ev['top1']:.2f}", f"{100 * ev['balanced_acc']:.2f}", f"{100 * ev['many']:.2f}",
                             f"{100 * ev['medium']:.2f}", "-", f"{100 * mh:.2f}", f"{100 * ev['ece']:.2f}"]
    # the per-class table lists classes from most to least frequent with their counts
    assert "| Ankle boot | 50 | 45.00 | 66.00 | 74.00 |" in text
    assert text.index("| T-shirt/top | 5000 |") < text.index("| Ankle boot | 50 |")


def test_comparison_csv_and_json(three_runs, report):
    out = report.parent
    rows = list(csv.DictReader((out / "comparison.csv").open()))
    js = json.loads((out / "comparison.json").read_text())
    assert [r["run"] for r in rows] == [r["run"] for r in js] == ["erm", "drs", "open"]
    for r, j, m in zip(rows, js, ("erm", "drs", "open")):
        assert float(r["minority_half"]) == pytest.approx(_minority(ACCS[m]))
        assert j["minority_half"] == pytest.approx(_minority(ACCS[m]))
        assert r["few"] == "" and j["few"] is None
        assert j["status"] == "complete" and j["epochs"] == 10
        assert r["path"] == j["path"] == f"../{m}_s0"  # relative to the report's folder: it moves with the runs
    runs_table = report.read_text().split("## Runs")[1].split("##")[0]
    assert "| `../open_s0` |" in runs_table and str(out.parent) not in runs_table


def test_runs_table_shows_a_float_setting_to_four_digits(tmp_path):
    run = write_run(tmp_path, "open")
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump({**cfg, "delta": 1 / 3}))
    runs_table = make_report([run]).read_text().split("## Runs")[1].split("##")[0]
    assert "| 0.3333 | darbn |" in runs_table and "0.33333" not in runs_table
    assert "| `.` |" in runs_table  # a one-run report sits in its run's folder


def test_all_figures_exist_and_are_images(report):
    text = report.read_text()
    pngs = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    expected = {"per_class_accuracy.png", "frequency_groups.png", "training_curves.png", "samples_open.png",
                "confusion_erm.png", "confusion_drs.png", "confusion_open.png"}
    assert set(pngs) == expected
    for name in pngs:
        with Image.open(report.parent / name) as im:
            im.verify()
        with Image.open(report.parent / name) as im:
            assert im.format == "PNG" and im.width >= 500 and im.height >= 300
            assert len(np.unique(np.asarray(im.convert("L").resize((64, 64))))) > 5  # not a blank canvas
    assert not list(report.parent.glob(".*.tmp"))  # atomic writes leave no temporary files


def _drop_eval_keys(d: Path, *keys: str) -> None:
    ev = json.loads((d / "eval.json").read_text())
    (d / "eval.json").write_text(json.dumps({k: v for k, v in ev.items() if k not in keys}))


def test_single_run_report_goes_into_run_folder(tmp_path):
    d = write_run(tmp_path, "open", metrics=False)
    _drop_eval_keys(d, "confusion")  # fewer figures: keeps the test fast
    md = make_report(d)
    assert md == d / "report.md"
    assert (d / "per_class_accuracy.png").exists() and (d / "comparison.csv").exists()
    assert "samples" not in md.read_text()  # no samples.pt, no sample figure


def test_partial_runs_are_reported_not_fatal(tmp_path):
    done = write_run(tmp_path, "erm")
    _drop_eval_keys(done, "confusion", "groups5")  # an older eval.json: fewer keys
    training = write_run(tmp_path, "open", eval_=False)
    with (training / "metrics.jsonl").open("a") as f:
        f.write('{"epoch": 10, "train_lo')  # the trainer is writing this line right now
    empty = write_run(tmp_path, "drs", eval_=False, metrics=False)
    md = make_report([done, training, empty], out_dir=tmp_path / "out")
    text = md.read_text()
    assert "eval.json is missing" in text and "incomplete last line" in text
    assert "metrics.jsonl is missing" in text
    assert "no eval.json (10/10 epochs logged)" in text and "no eval.json (0/10 epochs logged)" in text
    assert "| open | open | - | - |" in text.split("## Results")[1]
    assert (tmp_path / "out" / "training_curves.png").exists()
    table = format_table([done, training, empty])
    assert "* open: no eval.json (10/10 epochs logged)" in table
    assert load_run(training).epochs_done == 10


def test_format_table_is_fixed_width(three_runs):
    table = format_table(three_runs)
    lines = table.splitlines()
    assert len({len(line) for line in lines}) == 1
    assert "Minority half %" in lines[0]
    ev = json.loads((three_runs[2] / "eval.json").read_text())
    assert f"{100 * ev['top1']:.2f}" in lines[4] and lines[4].startswith("open ")


def test_malformed_metrics_line_names_file_and_line(tmp_path):
    d = write_run(tmp_path, "erm")
    lines = (d / "metrics.jsonl").read_text().splitlines()
    lines[2] = "{not json"
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(PureNoiseError, match=r"metrics\.jsonl, line 3: not valid JSON"):
        load_run(d)
    lines[2] = json.dumps({"epoch": "two", "train_loss": 1.0})
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"metrics\.jsonl, line 3: key 'epoch'"):
        make_report(d)
    lines[2] = json.dumps({"epoch": 2, "train_loss": "nan?"})
    (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"line 3: key 'train_loss' must be a number"):
        load_run(d)


def test_malformed_eval_and_config(tmp_path):
    d = write_run(tmp_path, "erm")
    ev = json.loads((d / "eval.json").read_text())
    (d / "eval.json").write_text(json.dumps({**ev, "top1": 84.6}))
    with pytest.raises(DataError, match=r"eval\.json: key 'top1' must be a fraction"):
        load_run(d)
    (d / "eval.json").write_text(json.dumps({**ev, "class_counts": COUNTS[:9]}))
    with pytest.raises(DataError, match="class_counts"):
        load_run(d)
    (d / "eval.json").write_text('{"top1": 0.5,\n "many": }')
    with pytest.raises(DataError, match=r"eval\.json, line 2"):
        load_run(d)
    (d / "eval.json").write_text(json.dumps(ev))
    (d / "config.yaml").write_text("method: erm\nepochs: [1,\n")
    with pytest.raises(DataError, match=r"config\.yaml, line \d+: not valid YAML"):
        load_run(d)


def test_not_a_run_folder(tmp_path):
    write_run(tmp_path, "erm")
    with pytest.raises(DataError, match="pass those instead"):
        load_run(tmp_path)
    with pytest.raises(DataNotFoundError):
        load_run(tmp_path / "nope")


def test_defer_epoch_and_duplicate_epochs(tmp_path):
    runs = {m: load_run(write_run(tmp_path, m)) for m in ("erm", "rs", "drs", "open")}
    assert runs["drs"].defer_epoch == 6 and runs["open"].defer_epoch == 6
    assert runs["erm"].defer_epoch is None and runs["rs"].defer_epoch is None
    d = runs["drs"].path
    with (d / "metrics.jsonl").open("a") as f:  # resumed from epoch 8: epoch 9 logged again
        f.write(json.dumps({**_metrics("drs")[9], "train_loss": 0.123}) + "\n")
    r = load_run(d)
    assert [m["epoch"] for m in r.metrics] == list(range(10)) and r.metrics[-1]["train_loss"] == 0.123
    assert any("logged twice" in n for n in r.notes)


def test_minority_half_accuracy():
    assert minority_half_accuracy([0.9, 0.1, 0.5, 0.3], [100, 5, 50, 5]) == pytest.approx(0.2)
    # odd C: the floor(C/2) rarest; a class without test images (None) is skipped
    assert minority_half_accuracy([0.9, 0.2, None, 0.8, 0.7], [500, 10, 20, 300, 400]) == pytest.approx(0.2)
    assert minority_half_accuracy([], []) is None


def test_aggregate_mean_std(tmp_path):
    runs = []
    for seed, shift in enumerate([0.0, 0.02, -0.01]):
        for m in ("erm", "open"):
            runs.append(write_run(tmp_path, m, seed=seed, acc=[min(1.0, a + shift) for a in ACCS[m]]))
    runs.append(write_run(tmp_path, "drs", seed=0))
    runs.append(write_run(tmp_path, "drs", seed=1, eval_=False))
    rows = aggregate(runs, by=("method",))
    assert [r["method"] for r in rows] == ["erm", "open", "drs"]
    for row in rows[:2]:
        sums = [summarize(r) for r in runs if load_run(r).method == row["method"]]
        assert row["n"] == 3 and len(row["runs"]) == 3
        for m in MAIN_METRICS:
            vals = [s[m] for s in sums if s[m] is not None]
            if vals:
                assert row[f"{m}_mean"] == pytest.approx(statistics.mean(vals))
                assert row[f"{m}_std"] == pytest.approx(statistics.stdev(vals))
            else:
                assert row[f"{m}_mean"] is None and row[f"{m}_std"] is None
    drs = rows[2]
    assert drs["n"] == 1 and drs["top1_std"] is None and drs["missing"] == ["drs"]
    table = format_aggregate(rows)
    assert f"{100 * rows[1]['top1_mean']:.2f} ± {100 * rows[1]['top1_std']:.2f}" in table
    assert "| drs | 1 |" in table
    by2 = aggregate(runs, by=("dataset", "method"))
    assert by2[0]["dataset"] == "fmnist_lt" and by2[0]["n"] == 3


def test_run_with_only_a_config(tmp_path):
    d = write_run(tmp_path, "erm", eval_=False, metrics=False)
    text = make_report(d).read_text()
    assert "metrics.jsonl is missing" in text and "eval.json is missing" in text
    assert "![" not in text and not list(d.glob("*.png"))
    assert format_table(d).splitlines()[-1] == "* erm: no eval.json (0/10 epochs logged)"


def test_report_says_whether_open_should_help(tmp_path):
    """With the ERM runs' training-set diagnostic, the report has the section `compare` ends with."""
    runs = [write_run(tmp_path, m) for m in ("erm", "drs", "open")]
    for d in runs:
        ev = json.loads((d / "eval.json").read_text())
        ev["train_per_class_acc"] = [1.0] * len(COUNTS)
        ev["train_at_defer"] = {"epoch": 6, "train_per_class_acc": [1.0] * (len(COUNTS) - 1) + [0.0]}
        ev["noise_pred_hist"] = [0] * (len(COUNTS) - 1) + [1000]
        (d / "eval.json").write_text(json.dumps(ev))
    text = make_report(runs, out_dir=tmp_path / "rep").read_text()
    assert "## Should OPeN help here?" in text and "the study found" in text.lower()
    plain = make_report([write_run(tmp_path / "x", "erm")], out_dir=tmp_path / "rep2").read_text()
    assert "Should OPeN help here?" not in plain  # no training-set diagnostic: no section


def test_run_get_reads_config_then_eval_json(tmp_path):
    """Config keys from config.yaml; any other key (``top1``, ``run``) from eval.json, as before."""
    run = load_run(write_run(tmp_path, "open", seed=3))
    assert run.get("seed") == 3 and run.seed == 3
    assert run.get("top1") == run.eval["top1"] is not None
    assert run.get("no_such_value", "x") == "x"
    rows = aggregate([write_run(tmp_path, "erm", seed=s) for s in (0, 1)], by=("method", "model"))
    assert [(r["method"], r["model"], r["n"]) for r in rows] == [("erm", "resnet_small", 2)]
