"""Seed replicates: grouping, t-intervals, paired differences, and the grouped report."""
from __future__ import annotations

import json
import math
import statistics

import numpy as np
import pytest
import yaml

from purenoise.reporting.replicates import group_replicates, mean_interval, paired_difference, t_quantile
from purenoise.reporting.report import make_report, paired_table, report_entries
from purenoise.reporting.runs import load_run
from purenoise.reporting.summary import summarize

from tests.helpers.run_folders import ACCS, write_run

SHIFTS = [0.0, 0.02, -0.01]  # seed-to-seed variation shared by the methods of a seed


@pytest.fixture(scope="module")
def nine_runs(tmp_path_factory):
    """ERM, DRS and OPeN with seeds 0-2, written method-major like a user's folders."""
    root = tmp_path_factory.mktemp("nine")
    paths = []
    for m in ("erm", "drs", "open"):
        for seed, shift in enumerate(SHIFTS):
            d = write_run(root, m, seed=seed, name=f"{m}_s{seed}", acc=[min(1.0, a + shift) for a in ACCS[m]])
            ev = json.loads((d / "eval.json").read_text())
            ev["train_per_class_acc"] = [1.0] * 7 + [0.98 + 0.01 * seed, 1.0, 0.97]
            (d / "eval.json").write_text(json.dumps(ev))
            paths.append(d)
    return paths


def test_t_quantiles():
    assert t_quantile(1) == pytest.approx(12.706205, abs=1e-6) and t_quantile(4) == pytest.approx(2.776445, abs=1e-6)
    assert t_quantile(4, 0.99) == pytest.approx(4.604095, abs=1e-6)
    assert t_quantile(4, 1 - 0.05 / 6) == pytest.approx(4.851008, abs=1e-6)  # Bonferroni for six
    with pytest.raises(ValueError):
        t_quantile(0)
    with pytest.raises(ValueError, match="confidence level"):
        t_quantile(3, 1.0)


def test_mean_interval():
    d = mean_interval([1.0, 2.0, 3.0])
    assert d["mean"] == 2.0 and d["std"] == 1.0
    assert d["lo"] == pytest.approx(2.0 - 4.302653 / math.sqrt(3)) and d["hi"] == pytest.approx(2.0 + 4.302653 / math.sqrt(3))
    wide = mean_interval([1.0, 2.0, 3.0], level=0.99)
    assert wide["hi"] == pytest.approx(2.0 + 9.924843 / math.sqrt(3))
    assert mean_interval([5.0]) == {"n": 1, "mean": 5.0, "std": None, "lo": None, "hi": None}
    assert mean_interval([])["mean"] is None


def test_groups_differ_only_in_seed(nine_runs, tmp_path):
    runs = [load_run(p) for p in nine_runs]
    groups = group_replicates(runs)
    assert [g.label for g in groups] == ["erm", "drs", "open"]
    assert all(g.seeds == [0, 1, 2] for g in groups)
    # A changed result key (delta) splits a group; a free key (workers) does not.
    d = write_run(tmp_path, "open", seed=3, name="open_s3")
    cfg = yaml.safe_load((d / "config.yaml").read_text())
    (d / "config.yaml").write_text(yaml.safe_dump({**cfg, "workers": 7}))
    e = write_run(tmp_path, "open", seed=0, name="open_s0")
    (e / "config.yaml").write_text(yaml.safe_dump({**cfg, "seed": 0, "delta": 0.5}))
    groups = group_replicates(runs + [load_run(d), load_run(e)])
    assert [len(g.runs) for g in groups] == [3, 3, 4, 1]


def test_paired_difference_is_seed_by_seed(nine_runs):
    groups = {g.label: g for g in group_replicates([load_run(p) for p in nine_runs])}
    d = paired_difference(groups["open"], groups["drs"], lambda r: summarize(r)["top1"])
    diffs = [summarize(o)["top1"] - summarize(r)["top1"] for o, r in zip(groups["open"].runs, groups["drs"].runs)]
    assert d["seeds"] == [0, 1, 2] and d["mean"] == pytest.approx(statistics.fmean(diffs))
    assert d["std"] == pytest.approx(statistics.stdev(diffs))
    assert d["wins"] == sum(x > 0 for x in diffs)
    # Unpaired seeds are left out.
    groups["drs"].seeds[2] = 9
    assert paired_difference(groups["open"], groups["drs"], lambda r: summarize(r)["top1"])["seeds"] == [0, 1]


def test_grouped_report(nine_runs, tmp_path):
    text = make_report(nine_runs, out_dir=tmp_path / "rep").read_text()
    entries = report_entries([load_run(p) for p in nine_runs])
    assert [e.label for e in entries] == ["erm", "drs", "open"]
    # One row per configuration with mean ± std, not nine rows.
    tops = [summarize(p)["top1"] for p in nine_runs[6:]]
    assert f"| open | open | 0, 1, 2 | {100 * statistics.fmean(tops):.2f} ± {100 * statistics.stdev(tops):.2f} |" in text
    assert "## Paired differences" in text and "| open − drs | 0, 1, 2 |" in text
    rows = paired_table(entries)
    assert [r[0] for r in rows] == ["drs − erm", "open − erm", "open − drs"]
    # The per-class table has one column per configuration.
    header = next(line for line in text.splitlines() if line.startswith("| Class | Train images |"))
    assert header.count("|") == 2 + 3 + 1
    assert "## Training against test accuracy per class" in text
    assert (tmp_path / "rep" / "train_vs_test.png").stat().st_size > 0
    assert "erm: train / test" in text
    # Error bars and per-run files are still written.
    assert len(json.loads((tmp_path / "rep" / "comparison.json").read_text())) == 9


def test_ungrouped_report_keeps_one_row_per_run(tmp_path):
    paths = [write_run(tmp_path, m) for m in ("erm", "open")]
    text = make_report(paths).read_text()
    assert "## Paired differences" not in text and "Seeds" not in text.split("## Results")[1].split("\n\n")[1]
    assert np.isfinite(summarize(paths[0])["top1"])


def test_a_rerun_of_the_same_seed_is_not_a_second_replicate(tmp_path):
    first = write_run(tmp_path / "a", "erm", seed=0, name="erm_s0")
    again = write_run(tmp_path / "b", "erm", seed=0, name="erm_s0")
    other = write_run(tmp_path / "a", "erm", seed=1, name="erm_s1")
    groups = group_replicates([load_run(p) for p in (first, again, other)])
    assert [g.seeds for g in groups] == [[0, 1], [0]]


def test_nan_values_are_left_out_of_seeds_and_wins(nine_runs):
    groups = {g.label: g for g in group_replicates([load_run(p) for p in nine_runs])}
    values = {id(r): v for r, v in zip(groups["open"].runs, (0.9, float("nan"), 0.8))}
    d = paired_difference(groups["open"], groups["drs"], lambda r: values.get(id(r), 0.5))
    assert d["seeds"] == [0, 2] and d["n"] == 2 and d["wins"] == 2


def test_seed_suffix_needs_a_separator(tmp_path):
    runs = [load_run(write_run(tmp_path, "erm", seed=s, name=f"erm_bs128_s{s}")) for s in (0, 1)]
    assert group_replicates(runs)[0].label == "erm_bs128"


def test_only_configurations_with_the_same_first_phase_are_paired(tmp_path):
    runs = []
    for ratio, folder in ((100, "r100"), (50, "r50")):
        for m in ("erm", "open"):
            for s in (0, 1):
                d = write_run(tmp_path / folder, m, seed=s, name=f"{m}_r{ratio}_s{s}")
                cfg = yaml.safe_load((d / "config.yaml").read_text())
                (d / "config.yaml").write_text(yaml.safe_dump({**cfg, "ratio": ratio}))
                runs.append(load_run(d))
    rows = paired_table(report_entries(runs))
    assert [r[0] for r in rows] == ["open_r100 − erm_r100", "open_r50 − erm_r50"]
