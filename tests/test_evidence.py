"""The evidence study's scripts: the parts and the twin rule of ``evidence.py``, the
pre-registered analysis of ``evidence_results.py`` (Holm, paired contrasts, verdicts) and its words
in ``evidence_verdicts.py`` (H1's support rule, the README's sentence), on run folders written here."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

STUDY = Path(__file__).resolve().parents[1] / "benchmarks" / "fmnist_lt"
COUNTS = [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]


@pytest.fixture
def ev(monkeypatch):
    monkeypatch.syspath_prepend(str(STUDY))
    monkeypatch.syspath_prepend(str(STUDY.parent))
    for name in ("study", "evidence", "evidence_results", "evidence_verdicts"):
        sys.modules.pop(name, None)
    import evidence
    import evidence_results

    return evidence, evidence_results


@pytest.fixture
def words(ev):
    import evidence_verdicts

    return evidence_verdicts


def _write(runs: Path, cell: str, method: str, seed: int, top1: float, train_minority: float = 1.0,
           subset: int = 0) -> None:
    folder = runs / (cell if subset == 0 else f"{cell}_sub{subset}") / f"{method}_s{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    train = [1.0] * 5 + [train_minority] * 5
    (folder / "eval.json").write_text(json.dumps({
        "top1": top1, "per_class_acc": [top1] * 10, "class_counts": COUNTS,
        "train_per_class_acc": train, "train_top1": sum(train) / 10}))


def _choose_first_candidates(evidence, runs: Path) -> tuple[str, str, str, str]:
    """Write a twins.json that picks each data size's first candidate; return (main, long, twins)."""
    main, long = evidence.MAIN, evidence.LONG
    twin_m, twin_l = evidence.CANDIDATES[main][0], evidence.CANDIDATES[long][0]
    (runs / evidence.TWINS_FILE).write_text(json.dumps(
        {"twins": {main: {"twin": twin_m}, long: {"twin": twin_l}}, "decided": "now"}))
    return main, long, twin_m, twin_l


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


def test_primary_contrast_is_paired_by_seed_and_holm_corrected(ev, words, tmp_path):
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
    text = "\n".join(words.section(tmp_path))
    assert "| P1 |" in text and "above 0" in text and "| P3 |" in text and "incomplete" in text
    p1_row = next(line for line in text.splitlines() if line.startswith("| P1 |"))
    p, p_adj = (float(x) for x in p1_row.split("|")[8:10])
    assert p_adj == pytest.approx(min(1.0, 3 * p), abs=1e-4)  # P3 missing: Bonferroni bounds Holm
    assert "upper bound of Holm's" in text


def _two_by_two(evidence, runs: Path, gain_main: float, gain_long_twin: float, moved: float = 0.05,
                spread: float = 0.001) -> None:
    """Seeds 0-4 of the 2x2: OPeN - DRS of ``gain_main`` points in the main cell (plus an alternating
    ``spread`` per seed, a fraction) and ``gain_long_twin`` in the long twin (0 in the other two cells),
    the DRS minority half moved by ``moved`` (fraction) the intended way in each twin."""
    main, long, twin_m, twin_l = _choose_first_candidates(evidence, runs)
    for cell, d, mem in ((main, gain_main, 0.99), (twin_m, 0.0, 0.99 - moved),
                         (long, 0.0, 0.95), (twin_l, gain_long_twin, 0.95 + moved)):
        for seed in range(5):
            _write(runs, cell, "erm", seed, 0.78)
            _write(runs, cell, "drs", seed, 0.80, mem)
            jitter = spread * seed * (-1) ** seed if cell == main else 0.0
            _write(runs, cell, "open", seed, 0.80 + d / 100 + jitter, mem)


def _baselines(runs: Path, main: str, open_top1: float) -> None:
    """The main cell's other baselines (seeds 0-9) and ERM, DRS, OPeN of seeds 5-9 (0-4 are the 2x2's)."""
    for seed in range(10):
        for m, acc in (("rs", 0.79), ("erm_logit_adjust", 0.805), ("erm_ldam_drw", 0.79)):
            _write(runs, main, m, seed, acc)
        if seed >= 5:
            for m, acc in (("erm", 0.78), ("drs", 0.80), ("open", open_top1 + 0.001 * seed)):
                _write(runs, main, m, seed, acc)


def test_readme_quotes_only_final_verdicts(ev, words, tmp_path):
    """H1 reaches the README once P1 and P2 have every seed and Bonferroni's bound already decides them;
    P3 only with its ten seeds; a verdict the bound leaves open waits for the whole family."""
    evidence, er = ev
    _two_by_two(evidence, tmp_path, gain_main=2.0, gain_long_twin=2.0)
    status = words.status(tmp_path)
    assert status.startswith("**Memorization (H1): supported.**")
    assert status.endswith("The comparison with the best baseline is in progress.")
    _baselines(tmp_path, evidence.MAIN, 0.82)
    status = words.status(tmp_path)
    assert "**Against the best baseline (H2): OPeN ahead.**" in status and "LA / BS (tau 1)" in status

    open_only = tmp_path / "open"
    open_only.mkdir()  # its contrast is one the bound does not decide: no H1 verdict before P3
    _two_by_two(evidence, open_only, gain_main=0.3, gain_long_twin=2.0, spread=0.003)
    assert words.status(open_only).startswith("It is in progress")
    prim = er.primary_table(open_only)[1]
    assert not words.final(prim, "P1") and words.final(prim, "P2")


@pytest.mark.parametrize("gain_main, gain_long_twin, moved, expected", [
    (2.0, 2.0, 0.05, "supported"),
    (2.0, 0.0, 0.05, "partly supported"),  # n_max 6000: equivalent within 1 point
    (0.0, 0.0, 0.05, "refuted"),  # both equivalent within 1 point, checks passed
    (2.0, 2.0, 0.01, "not resolved"),  # both manipulation checks failed: uninformative
])
def test_h1_follows_the_preregistered_support_rule(ev, words, tmp_path, gain_main, gain_long_twin, moved,
                                                   expected):
    evidence, er = ev
    _two_by_two(evidence, tmp_path, gain_main, gain_long_twin, moved)
    _baselines(tmp_path, evidence.MAIN, 0.82)  # the whole family, so every verdict is final
    word, sentence = words.h1(tmp_path, er.primary_table(tmp_path)[1])
    assert word == expected and sentence.startswith(f"**Memorization (H1): {expected}.**")
    if moved < 0.03:
        assert "uninformative" in sentence


def test_twin_moves_say_when_every_method_does_worse_where_it_memorizes_more(ev, words, tmp_path):
    evidence, _ = ev
    _two_by_two(evidence, tmp_path, gain_main=2.0, gain_long_twin=2.0)
    text = words.twin_moves(tmp_path)
    assert "DRS +0.00" in text and "every method does worse" not in text  # DRS is equal in the 2x2
    twin_m = evidence.CANDIDATES[evidence.MAIN][0]
    twin_l = evidence.CANDIDATES[evidence.LONG][0]
    for seed in range(5):  # the less-memorizing cell better for every method, in both data sizes
        for m, acc in (("erm", 0.79), ("drs", 0.83), ("open", 0.83)):
            _write(tmp_path, twin_m, m, seed, acc, 0.94)
            _write(tmp_path, evidence.LONG, m, seed, acc, 0.95)
    assert "every method does worse in the cell that memorizes more" in words.twin_moves(tmp_path)


def test_deviation_of_the_code_quotes_same_numbers(words, tmp_path):
    missing = words.same_code(tmp_path / "none.json")
    assert "not checked yet" in missing
    path = tmp_path / "same.json"
    runs = [{"run": "erm", "identical": True}, {"run": "open", "identical": False}]
    path.write_text(json.dumps({"old": "a" * 40, "new": "b" * 40, "runs": runs, "identical": False,
                                "date": "2026-12-06", "cpu": "AMD EPYC"}))
    assert "1 of 2 runs differ: open" in words.same_code(path)
    path.write_text(json.dumps({"old": "a" * 40, "new": "b" * 40, "runs": runs[:1], "identical": True,
                                "date": "2026-12-06", "cpu": "AMD EPYC"}))
    assert "all 1 runs is identical" in words.same_code(path) and "aaaaaaa bbbbbbb" in words.same_code(path)


def test_same_numbers_compares_all_but_timing_and_provenance(ev, tmp_path):
    import same_numbers

    for tag in ("a", "b"):
        for run, _ in same_numbers.RUNS:
            d = tmp_path / tag / run
            d.mkdir(parents=True)
            (d / "eval.json").write_text(json.dumps({"top1": 0.5, "provenance": {"git_commit": tag},
                                                     "eval_seconds": len(tag) + (tag == "b")}))
            (d / "metrics.jsonl").write_text(json.dumps({"epoch": 0, "loss": 1.0, "epoch_time_s": 3.0 + (tag == "b")})
                                             + "\n")
    assert all(r["identical"] for r in same_numbers.compare(tmp_path / "a", tmp_path / "b"))
    (tmp_path / "b" / "drs" / "metrics.jsonl").write_text(json.dumps({"epoch": 0, "loss": 1.5}) + "\n")
    (tmp_path / "b" / "open" / "eval.json").write_text(json.dumps({"top1": 0.6}))
    rows = {r["run"]: r for r in same_numbers.compare(tmp_path / "a", tmp_path / "b")}
    assert rows["drs"]["metrics_lines_differing"] == [0] and not rows["drs"]["identical"]
    assert rows["open"]["eval_keys_differing"] == ["top1"] and rows["open"]["top1"] == [0.5, 0.6]
    assert sum(not r["identical"] for r in rows.values()) == 2


def test_code_behind_counts_each_runs_recorded_commit(ev, words, tmp_path):
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
    assert "### The code behind the runs" in "\n".join(words.section(tmp_path))


def test_open_on_a_loss_is_compared_with_that_loss_by_seed(ev, tmp_path):
    evidence, er = ev
    for seed, (loss, combo) in enumerate(((0.80, 0.81), (0.82, 0.83), (0.81, 0.82))):
        _write(tmp_path, evidence.MAIN, "erm_logit_adjust", seed, loss)
        _write(tmp_path, evidence.MAIN, "open_logit_adjust", seed, combo)
    text = "\n".join(er.baselines_lines(tmp_path))
    assert "- OPeN on LA / BS - LA / BS (tau 1): +1.00 [+1.00, +1.00] over 3 seeds (secondary)." in text
    assert "- OPeN on LDAM-DRW - LDAM-DRW: n/a n/a over 0 seeds (secondary)." in text
