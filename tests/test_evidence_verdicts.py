"""The evidence study in words (``evidence_verdicts.py``, ``evidence_section.py``) and the code check
``same_numbers.py``: H1's pre-registered support rule, when a verdict is final, what reaches the
README, the exploratory sentences' conditions, and the deviations, on run folders written here."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers.evidence_runs import baselines, import_scripts, two_by_two, write


@pytest.fixture
def ev(monkeypatch):
    import_scripts(monkeypatch)
    import evidence
    import evidence_results
    import evidence_verdicts

    return evidence, evidence_results, evidence_verdicts


def test_readme_quotes_only_final_verdicts(ev, tmp_path):
    """H1 reaches the README once P1 and P2 have every seed and Bonferroni's bound already decides them;
    P3 only with its ten seeds; a verdict the bound leaves open waits for the whole family."""
    evidence, er, words = ev
    two_by_two(evidence, tmp_path, gain_main=2.0, gain_long_twin=2.0)
    status = words.status(tmp_path)
    assert status.startswith("**Memorization (H1): supported.**") and "adjusted p <= " in status
    assert status.endswith("The comparison with the best baseline is in progress. Still training: the pilots part, "
                           "the baselines part and the subsets part (RESULTS.md shows the runs finished so far).")
    baselines(tmp_path, evidence.MAIN, 0.82)
    status = words.status(tmp_path)
    assert "**Against the best baseline (H2): OPeN ahead.**" in status and "LA / BS (tau 1)" in status
    assert "Holm p " in status and "adjusted p <=" not in status  # the family is complete

    open_only = tmp_path / "open"
    open_only.mkdir()  # its P1 is one the bound does not decide: no H1 verdict before P3
    two_by_two(evidence, open_only, gain_main=0.3, gain_long_twin=2.0, spread=0.003)
    assert words.status(open_only).startswith("It is in progress")
    prim = er.primary_table(open_only)[1]
    assert not words.final(prim, "P1") and words.final(prim, "P2")


def test_final_needs_the_bound_and_every_seed(ev, tmp_path):
    evidence, er, words = ev
    # P1 with raw p between 0.05/3 and 0.05: significant alone, not under the bound.
    between = tmp_path / "between"
    between.mkdir()
    two_by_two(evidence, between, gain_main=0.8, gain_long_twin=2.0, spread=0.0025)
    (_, _, s1, p_adj, _), *_ = prim = er.primary_table(between)[1]
    assert 0.05 / 3 < s1["p"] < 0.05 and p_adj == pytest.approx(3 * s1["p"])
    assert not words.final(prim, "P1")
    # P1 decided by the bound, but with three of its five seeds: not final.
    three = tmp_path / "three"
    three.mkdir()
    two_by_two(evidence, three, gain_main=2.0, gain_long_twin=2.0, seeds=3)
    prim = er.primary_table(three)[1]
    assert prim[0][2]["n"] == 3 and prim[0][4] == "above 0" and not words.final(prim, "P1")
    assert words.h1(three, prim)[0] == "incomplete"


@pytest.mark.parametrize("gain_main, gain_long_twin, moved, moved_long, expected", [
    (2.0, 2.0, 0.05, None, "supported"),
    (2.0, 0.0, 0.05, None, "partly supported"),  # n_max 6000: equivalent within 1 point
    (0.0, 0.0, 0.05, None, "refuted"),  # both equivalent within 1 point, checks passed
    (2.0, -3.0, 0.05, None, "partly supported"),  # n_max 6000 below 0
    (0.0, 2.0, 0.05, 0.01, "refuted at n_max 1000"),  # n_max 6000 uninformative, 1000 refutes
    (2.0, 2.0, 0.01, None, "not resolved"),  # both manipulation checks failed: uninformative
    (2.0, 2.0, 0.05, 0.01, "partly supported"),  # one check failed: that size is uninformative
])
def test_h1_follows_the_preregistered_support_rule(ev, tmp_path, gain_main, gain_long_twin, moved, moved_long,
                                                   expected):
    evidence, er, words = ev
    two_by_two(evidence, tmp_path, gain_main, gain_long_twin, moved, moved_long=moved_long)
    baselines(tmp_path, evidence.MAIN, 0.82)  # the whole family, so every verdict is final
    word, sentence = words.h1(tmp_path, er.primary_table(tmp_path)[1])
    assert word == expected and sentence.startswith(f"**Memorization (H1): {expected}.**")
    assert "at n_max 1000 the contrast " in sentence and "at n_max 6000 the contrast " in sentence  # both sizes, always
    if gain_long_twin < 0:
        assert "at n_max 6000 the contrast refutes H1 (below 0)" in sentence
    if (moved_long or moved) < 0.03:
        assert "uninformative (its manipulation check failed)" in sentence
    if expected == "not resolved":
        assert "could not confirm" in sentence
    if expected == "refuted":
        assert "is withdrawn" in sentence


def test_twin_moves_and_their_conclusion_only_where_it_holds(ev, tmp_path):
    evidence, _, words = ev
    two_by_two(evidence, tmp_path, gain_main=2.0, gain_long_twin=2.0)
    text = words.twin_moves(tmp_path, supported=True)
    assert "DRS +0.00" in text and "every method does worse" not in text  # DRS is equal in the 2x2
    twin_m = evidence.CANDIDATES[evidence.MAIN][0]
    for seed in range(5):  # the less-memorizing cell better for every method at n_max 1000 only
        for m, acc in (("erm", 0.79), ("drs", 0.83), ("open", 0.83)):
            write(tmp_path, twin_m, m, seed, acc, 0.94)
    assert "every method does worse" not in words.twin_moves(tmp_path, supported=True)
    for seed in range(5):  # ... and at n_max 6000
        for m, acc in (("erm", 0.90), ("drs", 0.91), ("open", 0.91)):
            write(tmp_path, evidence.LONG, m, seed, acc, 0.95)
    assert "every method does worse in the cell that memorizes more" in words.twin_moves(tmp_path, supported=True)
    assert "every method does worse" not in words.twin_moves(tmp_path, supported=False)


def test_twin_moves_name_a_move_whose_interval_contains_0(ev, tmp_path):
    """A lower mean is not "does worse": ERM's move with a spread across 0 is named as not resolved,
    and the contrast is read as DRS losing more than OPeN where both lose."""
    evidence, _, words = ev
    two_by_two(evidence, tmp_path, gain_main=2.0, gain_long_twin=2.0)
    twin_m = evidence.CANDIDATES[evidence.MAIN][0]
    for seed in range(5):  # ERM 0.9 points above the main cell, with a spread across 0
        write(tmp_path, twin_m, "erm", seed, 0.79 + (0.02 if seed % 2 else -0.015))
        write(tmp_path, twin_m, "drs", seed, 0.83, 0.94)
        write(tmp_path, twin_m, "open", seed, 0.83, 0.94)
        for m, acc in (("erm", 0.90), ("drs", 0.91), ("open", 0.91)):
            write(tmp_path, evidence.LONG, m, seed, acc, 0.95)
    text = words.twin_moves(tmp_path, supported=True)
    assert "ERM -0.90 [-3.28, +1.48]" in text and "DRS -3.00 [-3.00, -3.00]" in text and "OPeN -0.96 [" in text
    assert "every method does worse" not in text
    assert "not every move is resolved: the interval of ERM's move at n_max 1000 contains 0." in text
    assert "because DRS loses more there than OPeN does, not because OPeN gains" in text
    unsupported = words.twin_moves(tmp_path, supported=False)
    assert "not every move" not in unsupported and "because DRS loses more" not in unsupported
    for seed in range(5):  # OPeN's move at n_max 1000 keeps its mean (-0.96) but its interval now contains 0
        write(tmp_path, twin_m, "open", seed, 0.83 + (0.03 if seed % 2 else -0.02), 0.94)
    text = words.twin_moves(tmp_path, supported=True)
    assert "OPeN -0.96 [" in text and ("the intervals of ERM's move at n_max 1000 and OPeN's move at n_max 1000 "
                                       "contain 0.") in text
    assert "because DRS loses more" not in text  # OPeN's own loss is not resolved: no reading of the contrast


def test_in_short_states_the_final_verdicts_whichever_way_they_fall(ev, tmp_path):
    evidence, er, words = ev
    two_by_two(evidence, tmp_path, gain_main=2.0, gain_long_twin=2.0)
    assert words.in_short(tmp_path, er.primary_table(tmp_path)[1]) == ""  # H2 not final yet
    baselines(tmp_path, evidence.MAIN, 0.82)  # OPeN (82) ahead of every baseline; LA / BS the best (80.5)
    text = words.in_short(tmp_path, er.primary_table(tmp_path)[1])
    assert text.startswith("**In short**, on data like the main cell's (seeds 0-9): OPeN is the better pick: it is "
                           "ahead of the best other method, LA / BS (tau 1) (H2). OPeN is ahead of ERM, RS, DRS and "
                           "LDAM-DRW (secondary). Adding OPeN to LA / BS (tau 1) raises its top-1 (+0.95 points, "
                           "secondary). ")
    assert text.endswith("That memorization drives OPeN's gain over DRS: supported (H1).")
    assert words.status(tmp_path).startswith(text) and "\n" + text in "\n".join(words.for_users(tmp_path, [
        *er.primary_table(tmp_path)[1]]))
    behind = tmp_path / "behind"
    behind.mkdir()
    two_by_two(evidence, behind, gain_main=2.0, gain_long_twin=0.0)  # P2 is 0: H1 only partly supported
    baselines(behind, evidence.MAIN, 0.82, losses={"logit_adjust": 0.85, "ldam_drw": 0.815})
    for seed in range(10):  # adding OPeN to LA / BS lowers it by 2 points
        write(behind, evidence.MAIN, "open_logit_adjust", seed, 0.83 + 0.001 * seed)
    text = words.in_short(behind, er.primary_table(behind)[1])
    assert "LA / BS (tau 1) is the better pick: OPeN is behind it (H2)." in text
    assert "OPeN is ahead of ERM, RS, DRS and LDAM-DRW (secondary)." in text
    assert "Adding OPeN to LA / BS (tau 1) lowers its top-1 (-1." in text
    assert text.endswith("That memorization drives OPeN's gain over DRS: partly supported (H1).")


def test_h2_names_the_best_baseline_and_opens_gain_on_the_better_loss(ev, tmp_path):
    evidence, er, words = ev
    two_by_two(evidence, tmp_path, gain_main=2.0, gain_long_twin=2.0)
    baselines(tmp_path, evidence.MAIN, 0.80, losses={"logit_adjust": 0.79, "ldam_drw": 0.83})
    word, sentence = words.h2(tmp_path, er.primary_table(tmp_path)[1])
    assert "The best baseline in the main cell is LDAM-DRW" in sentence
    assert "OPeN added to the better loss, LDAM-DRW: +0.95" in sentence
    assert word == "OPeN behind" and "OPeN on LDAM-DRW's" in sentence  # the highest mean of all


def test_section_lists_the_deviations_and_quotes_same_numbers(ev, tmp_path, monkeypatch):
    evidence, _, _ = ev
    import evidence_section

    missing = evidence_section.same_code(tmp_path / "none.json")
    assert "not checked yet" in missing
    path = tmp_path / "same.json"
    runs = [{"cell": "a_cell", "run": "erm", "identical": True}, {"cell": "a_cell", "run": "open", "identical": False}]
    facts = {"old": "a" * 40, "new": "b" * 40, "cells": ["a_cell"], "date": "2026-12-06", "cpu": "AMD EPYC",
             "torch_threads": 2}
    path.write_text(json.dumps({**facts, "runs": runs, "identical": False}))
    assert "1 of 2 runs differ: a_cell/open" in evidence_section.same_code(path)
    path.write_text(json.dumps({**facts, "runs": runs[:1], "identical": True}))
    text = evidence_section.same_code(path)
    assert "all 1 runs is identical" in text and "aaaaaaa bbbbbbb" in text and "2 threads" in text
    monkeypatch.setattr(evidence_section, "SAME_NUMBERS", path)
    two_by_two(evidence, tmp_path, gain_main=2.0, gain_long_twin=2.0)
    section = "\n".join(evidence_section.section(tmp_path))
    assert "### For users" in section and "### Deviations from the pre-registration" in section
    assert section.count("\n- **") >= len(evidence_section.DEVIATIONS) + 1
    # The 2x2's runs complete the primary part, not the pilots (no DRS pilot of the other candidates).
    assert "Complete: primary. Not finished, so incomplete and provisional: pilots (" in section
    assert "pilots (4 of 8 runs), baselines (15 of 80 runs), subsets (0 of 32 runs)." in section


def test_parts_done_counts_each_part_and_no_twins_is_not_complete(ev, tmp_path):
    evidence, _, words = ev
    assert [(name, k) for name, k, _ in evidence.parts_done(tmp_path)] == [
        ("pilots", 0), ("primary", 0), ("baselines", 0), ("subsets", 0)]
    assert dict((name, n) for name, _, n in evidence.parts_done(tmp_path))["primary"] == 0  # no twins yet
    two_by_two(evidence, tmp_path, gain_main=2.0, gain_long_twin=2.0)
    done = {name: (k, n) for name, k, n in evidence.parts_done(tmp_path)}
    assert done["primary"][0] == done["primary"][1] > 0 and done["subsets"] == (0, 32)
    assert "Still training: the pilots part, the baselines part and the subsets part" in words.status(tmp_path)


def test_same_numbers_compares_all_but_what_differs_between_identical_runs(ev, tmp_path):
    import same_numbers

    for tag in ("a", "b"):
        for cell, runs in same_numbers.CELLS.items():
            for run, _ in runs:
                d = tmp_path / tag / cell / run
                d.mkdir(parents=True)
                (d / "eval.json").write_text(json.dumps({"top1": 0.5, "provenance": {"git_commit": tag},
                                                         "branch": {"from": str(d), "epoch": 2}}))
                (d / "metrics.jsonl").write_text(json.dumps({"epoch": 0, "loss": 1.0, "time_s": 3.0 + (tag == "b"),
                                                             "images_per_s": 9.0 * len(tag)}) + "\n")
    assert all(r["identical"] for r in same_numbers.compare(tmp_path / "a", tmp_path / "b"))
    cell = next(iter(same_numbers.CELLS))
    (tmp_path / "b" / cell / "drs" / "metrics.jsonl").write_text(
        json.dumps({"epoch": 0, "loss": 1.5, "time_s": 3.0, "images_per_s": 9.0}) + "\n")
    (tmp_path / "b" / cell / "open" / "eval.json").write_text(json.dumps({"top1": 0.6, "branch": {"epoch": 2}}))
    (tmp_path / "b" / "fmnist_lt_r100_long" / "erm" / "eval.json").write_text(
        json.dumps({"top1": 0.5, "per_sample_time": 1}))  # a metric whose name holds "time" counts
    rows = {(r["cell"], r["run"]): r for r in same_numbers.compare(tmp_path / "a", tmp_path / "b")}
    assert rows[(cell, "drs")]["metrics_lines_differing"] == [0] and not rows[(cell, "drs")]["identical"]
    assert rows[(cell, "open")]["eval_keys_differing"] == ["top1"] and rows[(cell, "open")]["top1"] == [0.5, 0.6]
    assert rows[("fmnist_lt_r100_long", "erm")]["eval_keys_differing"] == ["branch", "per_sample_time"]
    assert sum(not r["identical"] for r in rows.values()) == 3


def test_same_numbers_runs_each_commits_own_code_and_stops_cleanly(ev, tmp_path, capsys):
    import same_numbers

    (tmp_path / "src" / "purenoise").mkdir(parents=True)
    (tmp_path / "src" / "purenoise" / "__init__.py").write_text("")
    assert same_numbers.imported_from(tmp_path, 1) == str(Path("src") / "purenoise" / "__init__.py")
    with pytest.raises(SystemExit) as stopped:
        same_numbers.imported_from(tmp_path / "src", 1)  # no src/ below it: another copy would run
    assert stopped.value.code == 2 and "would import purenoise from" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:
        same_numbers.main(["no-such-commit", "HEAD"])
    assert stopped.value.code == 2 and "'no-such-commit' is not a commit" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stopped:
        same_numbers.main(["HEAD", "HEAD", "--threads", "0"])
    assert stopped.value.code == 2 and "--threads 0" in capsys.readouterr().err


def test_subsets_wait_for_every_subset_and_compare_both_spreads(ev, tmp_path):
    evidence, _, words = ev
    for cell in (evidence.MAIN, evidence.LONG):
        for seed in range(5):
            for m, acc in (("rs", 0.80), ("drs", 0.80), ("open", 0.81 + 0.001 * seed)):
                if m != "rs" or cell == evidence.MAIN or seed < 3:  # the long cell's RS has seeds 0-2
                    write(tmp_path, cell, m, seed, acc)
        for k, extra in zip(evidence.SUBSETS, (0.0, 0.004, -0.004, 0.002)):
            write(tmp_path, cell, "rs", 0, 0.80, subset=k)
            write(tmp_path, cell, "drs", 0, 0.80, subset=k)
            if k != evidence.SUBSETS[-1] or cell == evidence.MAIN:
                write(tmp_path, cell, "open", 0, 0.81 + extra, subset=k)
    assert words.subsets(tmp_path) == "The subsets are not finished."  # the long cell's last subset
    write(tmp_path, evidence.LONG, "open", 0, 0.812, subset=evidence.SUBSETS[-1])
    text = words.subsets(tmp_path)
    assert text.startswith("**The subset** (secondary") and text.count("over 5 subsets against") == 4
    assert "OPeN − DRS +1.04 [" in text and "std 0.30 over 5 subsets against 0.16 over 5 seeds" in text
    assert text.endswith("against 0.10 over 3 seeds).")  # each spread says how many seeds it is over


def test_against_rs_waits_for_ten_seeds(ev, tmp_path):
    evidence, _, words = ev
    two_by_two(evidence, tmp_path, gain_main=2.0, gain_long_twin=2.0)
    baselines(tmp_path, evidence.MAIN, 0.82)
    # OPeN: 82, 81.9, 82.2, 81.7, 82.4 (seeds 0-4), 82.5 ... 82.9 (5-9); RS 79: mean of OPeN - RS 3.37
    assert words.against_rs(tmp_path).startswith(" Over the evidence study's seeds 0-9 there, OPeN − RS is +3.37 [")
    assert words.against_rs(tmp_path).endswith("(ahead; secondary).")
    (tmp_path / evidence.MAIN / "open_s9" / "eval.json").unlink()  # nine pairs: no sentence yet
    assert words.against_rs(tmp_path) == ""
