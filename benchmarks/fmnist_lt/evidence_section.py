"""RESULTS.md's section of the pre-registered evidence study: ``evidence_results``' tables,
``evidence_verdicts``' words, and the deviations from PREREGISTRATION.md.

The deviations are text without numbers, except what ``same_numbers.py`` found about the code
the runs were trained with, which is read from ``same_numbers.json``.
"""
from __future__ import annotations

import json
from pathlib import Path

import evidence
import evidence_results as er
import evidence_verdicts

from purenoise.run_paths import RunPaths

SAME_NUMBERS = Path(__file__).resolve().parent / "same_numbers.json"  # written by same_numbers.py
# Where the study departs from PREREGISTRATION.md, and why; same_code() comes first.
DEVIATIONS = (
    "**Holm's correction before the family is complete.** The pre-registration does not say how to "
    "report P1 and P2 while P3 is missing. While one of the three lacks seeds, the adjusted p shown is "
    "3 p, Bonferroni's bound of Holm's (Holm's is never larger), and a verdict is called final only where "
    "that bound already decides it and its quantity has all its seeds; the README took up H1's verdict on "
    "that rule before P3 was in. Once all three are in, the p shown is Holm's.",
    "**Two readings of the support rule** that the pre-registration leaves open. A contrast both above 0 "
    "after Holm and inside +-1 point is read as above 0 (significance first), so it supports H1. A data "
    "size whose manipulation check failed is uninformative (as the manipulation check's paragraph says), so "
    "its contrast neither supports nor refutes H1, whatever its sign.",
    "**A count in the pre-registration's table.** Its row for the twins' primary runs says 28 new runs; the "
    "design it states (two twins, ERM, DRS and OPeN, seeds 0-4, less the pilots' ERM and DRS of seed 0) has "
    "26, and the study trains that design.",
    "**Wall time.** The study was paused (SIGSTOP) while the test suite was timed on the same machine, "
    "and one run was stopped (SIGTERM) and resumed from its checkpoint (resuming continues bit for bit, "
    "which `tests/engine/test_cli_train.py` checks); the wall time logged for those runs is off, the "
    "numbers are not.",
    "**One run finished outside `evidence.py`.** When a working session ended, `evidence.py` and "
    "`fmnist_lt_r100_long_sub13/open_s0` were stopped (SIGTERM) near the run's end (the run printed that it "
    "saved a resumable checkpoint at epoch 196 of 200). It was finished from that checkpoint by `purenoise "
    "train ... --resume auto`, run by hand from the same fixed worktree with the same 2 threads (its eval.json "
    "records the commit, a clean tree and the thread count). As `evidence.py` was stopped with it, "
    "`study_log.jsonl` has no line for either part of the run, and the study's wall time leaves both out; "
    "its numbers are those of an uninterrupted run, as resuming continues bit for bit.",
    "**One seed-to-seed spread over 3 seeds.** The pre-registration sets the subsets' seed-to-seed "
    "standard deviation over seeds 0-4 on subset 0, but its plan trains RS in the long cell only on the "
    "regime study's seeds 0-2 (its new long-cell seeds 3-4 are ERM, DRS and OPeN), so the long cell's "
    "OPeN − RS spread over seeds is over 3 seeds; the table and the sentence for users say so.",
    "**Exploratory additions.** The paragraph for users adds how each twin moved every method's "
    "top-1 (paired by seed, with 95% intervals not corrected for their number), the reading of the "
    "contrast as OPeN's move minus DRS's, and which method has the highest mean; none was "
    "pre-registered, and no verdict rests on them.",
)


def same_code(path: Path | None = None) -> str:
    """The deviation of the study's code, with what ``same_numbers.py`` found (or that it has not run)."""
    path = SAME_NUMBERS if path is None else path
    head = ("**Not every run uses the commit that adds PREREGISTRATION.md.** The fixed worktree the study "
            "runs from was moved once, to a later commit (\"The code behind the runs\" counts the runs of each).")
    if not path.exists():
        return head + " Whether the two commits train the same numbers is not checked yet (`same_numbers.py`)."
    s = json.loads(path.read_text())
    runs = s["runs"]
    differ = [f"{r['cell']}/{r['run']}" for r in runs if not r["identical"]]
    found = (f"every eval.json and metrics.jsonl value of all {len(runs)} runs is identical apart from timing "
             "and provenance" if not differ else f"{len(differ)} of {len(runs)} runs differ: " + ", ".join(differ))
    cells = ", ".join(f"`{c}`" for c in s["cells"])
    return (f"{head} `benchmarks/fmnist_lt/same_numbers.py {s['old'][:7]} {s['new'][:7]}` trains short runs of "
            f"the study's methods in {cells} with each commit's own code ({s['date']}, {s['cpu']}, "
            f"{s['torch_threads']} threads): {found}.")


def deviations() -> list[str]:
    """The deviations from the pre-registration, in RESULTS.md's words."""
    return [same_code(), *DEVIATIONS]


def section(runs: Path) -> list[str]:
    """The RESULTS.md section of the pre-registered evidence study (markdown lines)."""
    specs = evidence.planned(runs)
    done = sum(RunPaths(s.folder(runs)).eval.exists() for s in specs)
    progress = evidence.parts_done(runs)
    unfinished = [f"{name} ({k} of {n} runs)" if n else f"{name} (planned once the twins are chosen)"
                  for name, k, n in progress if not 0 < n == k]
    head = ["## Pre-registered evidence study", "",
            "Hypotheses, comparisons and analysis: [PREREGISTRATION.md](PREREGISTRATION.md), committed before any "
            "of these runs finished. Trained by `benchmarks/fmnist_lt/evidence.py`.", "",
            f"**{done} of {len(specs)} planned runs are done** (the runs `evidence.py` plans: the main cell's "
            "seeds 0-4 of the regime study count among them, as the baselines part reuses them; the long cell's "
            "seeds 0-2 do not)"
            + ("" if evidence.twins(runs) else "; the twins' runs are planned once the pilots are in")
            + ("." if not unfinished else
               ". Complete: " + (", ".join(name for name, k, n in progress if 0 < n == k) or "none")
               + ". Not finished, so incomplete and provisional: " + ", ".join(unfinished) + "."), ""]
    prim_lines, prim = er.primary_table(runs)
    return [*head, *er.pilots_lines(runs), *er.two_by_two_lines(runs), *prim_lines, *er.baselines_lines(runs),
            *er.subsets_lines(runs), *evidence_verdicts.for_users(runs, prim), *er.code_lines(runs),
            "### Deviations from the pre-registration", "", *(f"- {d}" for d in deviations()), ""]
