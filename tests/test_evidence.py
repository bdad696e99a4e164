"""The evidence study's scripts: the parts and the twin rule of ``evidence.py`` and the
pre-registered analysis of ``evidence_results.py`` (Holm, paired contrasts, verdicts, tables), on
run folders written here. Its words are tested in ``test_evidence_verdicts.py``."""
from __future__ import annotations

import json

import pytest

from tests.helpers.evidence_runs import choose_first_candidates as _choose_first_candidates
from tests.helpers.evidence_runs import COUNTS, import_scripts
from tests.helpers.evidence_runs import write as _write


@pytest.fixture
def ev(monkeypatch):
    import_scripts(monkeypatch)
    import evidence
    import evidence_results

    return evidence, evidence_results


def test_holm_and_t_test_match_their_definitions(ev):
    from scipy import stats

    _, er = ev
    assert er.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert er.holm([0.5, None, 0.01]) == pytest.approx([0.5, None, 0.02])
    assert er.holm([0.9, 0.8]) == [1.0, 1.0]  # capped at 1, monotone
    vals = [0.3, 1.1, -0.2, 0.9, 0.5]
    s = er.one_sample(vals)
    assert s["p"] == pytest.approx(stats.ttest_1samp(vals, 0).pvalue)
    lo, hi = stats.t.interval(0.95, 4, loc=s["mean"], scale=stats.sem(vals))
    assert (s["lo"], s["hi"]) == pytest.approx((lo, hi))


def test_verdicts_follow_the_preregistered_rule(ev):
    _, er = ev
    ahead = er.one_sample([1.0, 1.2, 0.9, 1.1, 1.05])
    assert er.verdict(ahead, 0.001) == "above 0"
    assert er.verdict(ahead, 0.2).startswith("not resolved")  # not significant after Holm, not equivalent
    tiny = er.one_sample([0.01, -0.02, 0.0, 0.015, -0.01])
    assert er.verdict(tiny, 0.9) == "equivalent within +-1 point"
    wide = er.one_sample([3.0, -2.5, 1.0, -1.5, 2.0])
    assert "not resolved" in er.verdict(wide, 0.9)
    assert er.seeds_needed(1.0, 1.0) == 7  # t(6) * 1/sqrt(7) = 0.92 < 1, t(5)/sqrt(6) = 1.05
    assert er.verdict(er.one_sample([]), None) == "incomplete"


def test_twin_rule_reads_only_the_pilots_drs_runs_and_is_written_once(ev, tmp_path):
    evidence, _ = ev
    main_cands, long_cands = evidence.CANDIDATES[evidence.MAIN], evidence.CANDIDATES[evidence.LONG]
    assert evidence.choose(tmp_path) is None  # no pilot yet
    for c, v in zip(main_cands, (0.97, 0.90, 0.93)):
        _write(tmp_path, c, "drs", 0, 0.8, v)
        _write(tmp_path, c, "erm", 0, 0.8, 0.5)  # ERM's values do not decide
    assert evidence.choose(tmp_path) is None  # the long twin's pilot is missing
    assert not (tmp_path / evidence.TWINS_FILE).exists() and evidence.part("primary", tmp_path) == []
    _write(tmp_path, long_cands[0], "drs", 0, 0.8, 0.995)
    out = evidence.choose(tmp_path)
    assert out["twins"][evidence.MAIN]["twin"] == main_cands[1]  # the lowest
    assert out["twins"][evidence.LONG]["twin"] == long_cands[0]
    _write(tmp_path, main_cands[0], "drs", 0, 0.8, 0.5)  # a later change does not rewrite the choice
    assert evidence.choose(tmp_path)["twins"][evidence.MAIN]["twin"] == main_cands[1]
    primary = evidence.part("primary", tmp_path)
    assert {s.setting for s in primary} == {main_cands[1], long_cands[0], evidence.LONG}
    assert all(s.parent == "erm" for s in primary if s.method in ("drs", "open"))


def test_parts_branch_each_loss_and_subsets_get_their_own_folders(ev, tmp_path):
    evidence, _ = ev
    base = evidence.part("baselines", tmp_path)
    assert len(base) == 10 * 8 and len(set(base)) == len(base)
    combo = [s for s in base if s.method == "open_ldam_drw"]
    assert combo and all(s.parent == "erm_ldam_drw" for s in combo)
    sub = evidence.part("subsets", tmp_path)
    spec = next(s for s in sub if s.subset == 12 and s.method == "drs")
    assert spec.folder(tmp_path) == tmp_path / f"{spec.setting}_sub12" / "drs_s0"
    cmd = spec.command(tmp_path)
    assert "subset_seed=12" in cmd and str(tmp_path / f"{spec.setting}_sub12" / "erm_s0") in cmd


def test_primary_contrast_is_paired_by_seed_and_holm_corrected(ev, tmp_path):
    evidence, er = ev
    main, long, twin_m, twin_l = _choose_first_candidates(evidence, tmp_path)
    gains = {main: [2.0, 1.5, 2.5, 1.8, 2.2], twin_m: [0.5, 0.2, 0.4, 0.1, 0.6],
             long: [0.0, -0.2, 0.1, -0.1, 0.0], twin_l: [0.1, -0.1, 0.3, 0.0, 0.2]}
    for cell, g in gains.items():
        for seed, d in enumerate(g):
            _write(tmp_path, cell, "drs", seed, 0.80)
            _write(tmp_path, cell, "open", seed, 0.80 + d / 100)
    (p1, _, s1), (p2, _, s2), (p3, _, s3) = er.primary(tmp_path)
    assert s1["values"] == pytest.approx([a - b for a, b in zip(gains[main], gains[twin_m])])
    assert s2["values"] == pytest.approx([a - b for a, b in zip(gains[twin_l], gains[long])])
    assert s3["n"] == 0  # no baseline seeds 5-9: P3 stays incomplete
    text = "\n".join(er.primary_table(tmp_path)[0])
    assert "| P1 |" in text and "above 0" in text and "| P3 |" in text and "incomplete" in text
    p1_row = next(line for line in text.splitlines() if line.startswith("| P1 |"))
    p, p_adj = (float(x) for x in p1_row.split("|")[8:10])
    assert p_adj == pytest.approx(min(1.0, 3 * p), abs=1e-4)  # P3 missing: Bonferroni bounds Holm
    assert "upper bound of Holm's" in text


def test_code_behind_counts_each_runs_recorded_commit(ev, tmp_path):
    evidence, er = ev
    main = evidence.MAIN
    _write(tmp_path, main, "erm", 0, 0.8)
    _write(tmp_path, main, "drs", 0, 0.8)
    _write(tmp_path, main, "open", 0, 0.8)
    prov = {"git_commit": "3e2c2562f8ba", "git_dirty": False, "torch": "2.14.1", "cpu": "AMD EPYC"}
    for method, dirty in (("drs", False), ("open", True)):
        f = tmp_path / main / f"{method}_s0" / "eval.json"
        f.write_text(json.dumps({**json.loads(f.read_text()), "provenance": {**prov, "git_dirty": dirty}}))
    assert er.code_behind(tmp_path) == [
        ("commit 3e2c256 (changed tree), torch 2.14.1, AMD EPYC", 1),
        ("commit 3e2c256, torch 2.14.1, AMD EPYC", 1),
        ("no provenance", 1)]
    assert "### The code behind the runs" in "\n".join(er.code_lines(tmp_path))


def test_open_on_a_loss_is_compared_with_that_loss_by_seed(ev, tmp_path):
    evidence, er = ev
    for seed, (loss, combo) in enumerate(((0.80, 0.81), (0.82, 0.83), (0.81, 0.82))):
        _write(tmp_path, evidence.MAIN, "erm_logit_adjust", seed, loss)
        _write(tmp_path, evidence.MAIN, "open_logit_adjust", seed, combo)
    text = "\n".join(er.baselines_lines(tmp_path))
    assert ("- OPeN on LA / BS - LA / BS (tau 1): +1.00 [+1.00, +1.00] over 3 seeds; on the minority half "
            "+1.00 [+1.00, +1.00] (secondary).") in text
    assert "- OPeN on LDAM-DRW - LDAM-DRW: n/a n/a over 0 seeds; on the minority half n/a n/a (secondary)." in text


def test_minority_half_differences_pair_the_minority_classes_by_seed(ev, tmp_path):
    """OPeN - baseline on the minority half reads the five rarest classes' test accuracy of each
    seed's two runs, not top-1; only baselines get a difference."""
    evidence, er = ev
    for seed in range(3):
        for method, majority, minority in (("open", 0.90, 0.70 + 0.01 * seed), ("rs", 0.95, 0.60)):
            folder = tmp_path / evidence.MAIN / f"{method}_s{seed}"
            folder.mkdir(parents=True)
            (folder / "eval.json").write_text(json.dumps({
                "top1": 0.8, "per_class_acc": [majority] * 5 + [minority] * 5, "class_counts": COUNTS}))
    assert er.gain(tmp_path, evidence.MAIN, 2, b="rs", measure=er.test_minority) == pytest.approx(12.0)
    rows = {line.split(" | ")[0]: line for line in er.baselines_lines(tmp_path) if line.startswith("| ")}
    assert rows["| RS"].endswith("| +0.00 [+0.00, +0.00] (n=3) | 60.00 +- 0.00 (n=3) | +11.00 [+8.52, +13.48] (n=3) |")
    assert rows["| OPeN"].endswith("| 71.00 +- 1.00 (n=3) |  |")
