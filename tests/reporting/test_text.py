"""The text of result numbers (purenoise.reporting.text): one format for the CLI, the report and RESULTS.md."""
from purenoise.reporting.replicates import Replicates, mean_interval, paired_difference
from purenoise.reporting.text import (interval, markdown_table, mean_std, mean_std_of, pct, standing, verdict,
                                      verdict_word)


def test_percent_and_mean_std():
    assert pct(0.82468) == "82.47"
    assert pct(None) == "-"
    assert mean_std(0.8247, 0.0019) == "82.47 ± 0.19"
    assert mean_std(0.8247, None) == "82.47"  # one run: no spread to show
    assert mean_std(None, None) == "-"
    assert mean_std_of([0.80, 0.82, 0.84]) == "82.00 ± 2.00"
    assert mean_std_of([0.80]) == "80.00"
    assert mean_std_of([]) == "-"
    assert mean_std_of([0.80, float("nan"), None, 0.84]) == "82.00 ± 2.83"  # skipped, as in the intervals


def test_interval_text_matches_the_statistics():
    d = mean_interval([0.01, 0.02, 0.03])  # mean 2 points, std 1 point, t(2) = 4.302653
    assert interval(d) == "+2.00 ± 1.00 [-0.48, +4.48]"
    assert interval(mean_interval([-0.005])) == "-0.50 (1 seed)"
    assert interval(mean_interval([])) == "-"
    assert interval(None) == "-"


def test_verdict_follows_the_interval():
    assert verdict(mean_interval([0.01, 0.012, 0.011])).startswith("**holds**")
    assert verdict(mean_interval([-0.01, -0.012, -0.011])).startswith("**reversed**")
    assert verdict(mean_interval([0.01, -0.01, 0.002])).startswith("not resolved")
    assert verdict(mean_interval([0.05])) == "too few paired seeds yet"
    assert verdict(None) == "too few paired seeds yet"
    assert [verdict_word(mean_interval(v)) for v in ([0.01, 0.012, 0.011], [-0.01, -0.012, -0.011], [0.01, -0.011, 0.001], [0.2])] == [
        "holds", "reversed", "not resolved", None]


def test_standing_words_the_same_rule_for_a_sentence():
    cases = ([0.01, 0.012, 0.011], [-0.01, -0.012, -0.011], [0.01, -0.011, 0.001], [0.2])
    assert [standing(mean_interval(v)) for v in cases] == ["ahead", "behind", "not resolved", "not measured"]
    assert [standing(mean_interval(v), "DRS ahead", "DRS behind", "incomplete") for v in cases] == [
        "DRS ahead", "DRS behind", "not resolved", "incomplete"]
    assert standing(None) == "not measured"
    assert standing(mean_interval(cases[2]), unresolved="not resolved against") == "not resolved against"


def test_verdict_of_a_paired_difference_uses_only_shared_seeds():
    a = Replicates("a", [0.83, 0.84, 0.85, 0.99], [0, 1, 2, 7])
    b = Replicates("b", [0.82, 0.83, 0.84], [0, 1, 2])
    d = paired_difference(a, b, lambda v: v)
    assert d["seeds"] == [0, 1, 2] and d["n"] == 3
    assert verdict(d) == "**holds**: interval above 0 (3 seeds)"


def test_markdown_table_aligns_and_escapes():
    lines = markdown_table(["Run", "n", "Top-1"], [["a|b", 3, "82.47"]], right_from=2)
    assert lines == ["| Run | n | Top-1 |", "|---|---|---:|", "| a\\|b | 3 | 82.47 |"]
    assert markdown_table(["Run", "Top-1"], [])[1] == "|---|---:|"  # default: numbers from column 2
