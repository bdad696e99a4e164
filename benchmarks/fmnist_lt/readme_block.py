"""The README's summary of the studies, rendered from the run folders (no study number typed by hand).

``results.py`` calls :func:`update` after writing RESULTS.md: the README lines between
:data:`BEGIN` and :data:`END` are replaced by :func:`render`'s. Its verdict words come from the
same intervals as RESULTS.md's ("ahead" and "behind" where the 95% interval excludes 0, "not
resolved" where it contains 0; no equivalence margin is tested in the regime study, so it never
says "ties"). A test renders the block from the committed run folders and compares it with the
README.
"""
from __future__ import annotations

import statistics
from pathlib import Path

import evidence_verdicts
import study_plan
from study_runs import Study, paired, values

from purenoise.reporting.text import pct, standing
from purenoise.run_paths import RunPaths

BEGIN = "<!-- study summary: written by benchmarks/fmnist_lt/results.py -->"
END = "<!-- end of study summary -->"
MAIN, X1, LONG, SHORT = ("fmnist_lt_r100_n1000_w2", "fmnist_lt_r100_n1000", "fmnist_lt_r100_long",
                         study_plan.SHORT_CELL)
BALANCED = study_plan.BALANCED_CELL


def _d(d: dict | None) -> str:
    """The paired difference in points, ``mean [low, high]`` signed with two decimals, or ``n/a``."""
    if d is None or d["lo"] is None:
        return "n/a"
    return f"{100 * d['mean']:+.2f} [{100 * d['lo']:+.2f}, {100 * d['hi']:+.2f}]"


def _vs(d: dict | None) -> str:
    """How OPeN stands against another method: "ahead of", "behind" or "not resolved against"."""
    return standing(d, "ahead of", "behind", "not measured against", "not resolved against")


def _mean(s: Study, cell: str, method: str, key: str) -> str:
    v = values(s.get(cell, method), key)
    return "n/a" if not v else f"{100 * statistics.fmean(v):.2f}"


def _seeds(d: dict | None) -> str:
    """``, k seeds`` (the pairs behind a paired difference), empty without a difference."""
    return "" if d is None else f", {d['n']} seed{'' if d['n'] == 1 else 's'}"


def render(s: Study) -> list[str]:
    """The summary's Markdown lines (between the markers)."""
    g = lambda c, a, b, k="top1": paired(s.get(c, a), s.get(c, b), k)  # noqa: E731
    od = {c: g(c, "open", "drs") for c in (MAIN, X1, LONG, SHORT)}
    done = sum(RunPaths(x.folder(s.root)).eval.exists() for x in s.required)
    main_erm = [pct(v) for v in values(s.get(MAIN, "erm"), "train_top1")[:3]]
    ev = evidence_verdicts.status(s.root)
    minority_long = g(LONG, "open", "drs", "minority_half")
    rs = {(c, a): g(c, a, "rs") for c, a in ((MAIN, "open"), (MAIN, "drs"), (SHORT, "open"))}
    lines = [
        f"**What the study shows** (RESULTS.md, printed by `results.py`; {done} of {len(s.required)} required "
        "runs of the regime study). Paired by seed, top-1 points with 95% intervals:", "",
        f"- **The main cell.** `{MAIN}` memorizes by the rule (its ERM runs, seeds 0-2: "
        f"{', '.join(main_erm)}% training accuracy).",
        f"- **Where the DRS runs memorize their minority classes, OPeN is {_vs(od[MAIN])} DRS.** With 1000 "
        f"images in the largest class, DRS ends at {_mean(s, X1, 'drs', 'train_minority_half')}% (x1) and "
        f"{_mean(s, MAIN, 'drs', 'train_minority_half')}% (x2) training accuracy on the minority half, "
        f"{_mean(s, X1, 'drs', 'gap_minority_half')} and {_mean(s, MAIN, 'drs', 'gap_minority_half')} points "
        f"above its test accuracy there. OPeN − DRS: {_d(od[MAIN])} in the main cell ({od[MAIN]['wins']} of "
        f"{od[MAIN]['n']} seeds ahead) and {_d(od[X1])} at width x1 ({standing(od[X1])}).",
        f"- **Where they do not, OPeN − DRS is {standing(od[LONG])}** on the full long-tailed set "
        f"({_d(od[LONG])}, 200 epochs) and {standing(od[SHORT])} in 30 epochs ({_d(od[SHORT])}), where the "
        f"train-test gap is {_mean(s, LONG, 'drs', 'gap_minority_half')} and "
        f"{_mean(s, SHORT, 'drs', 'gap_minority_half')} points; on the minority half of the long cell OPeN is "
        f"{_vs(minority_long)} DRS ({_d(minority_long)}).",
        "- **That is a map, not a cause.** Memorization and data size move together in these cells (which also "
        "differ in width, and the 30-epoch cell in weight decay and warm-up), so they cannot tell "
        "\"memorizes\" from \"scarce data\". The pre-registered evidence study "
        f"([PREREGISTRATION.md](benchmarks/fmnist_lt/PREREGISTRATION.md)) tests it. {ev}",
        f"- **RS.** OPeN > RS follows from the paper's Table 1 (RS 75.1, OPeN 84.6 on CIFAR-10-LT), and "
        f"so does DRS > RS. In the main cell OPeN − RS is {_d(rs[MAIN, 'open'])} "
        f"({standing(rs[MAIN, 'open'])}{_seeds(rs[MAIN, 'open'])}) and DRS − RS {_d(rs[MAIN, 'drs'])} "
        f"({standing(rs[MAIN, 'drs'], 'DRS ahead', 'DRS behind')}{_seeds(rs[MAIN, 'drs'])}); in the "
        f"30-epoch cell OPeN − RS is {_d(rs[SHORT, 'open'])} ({standing(rs[SHORT, 'open'])}"
        f"{_seeds(rs[SHORT, 'open'])}). RS − ERM: {_d(g(MAIN, 'rs', 'erm'))} "
        f"in the main cell.{evidence_verdicts.against_rs(s.root)}",
        f"- **BN and delta** (main cell, against DAR-BN; chosen on the test set, there is no validation split): "
        f"auxiliary BN {_d(g(MAIN, 'open_bn_aux', 'open'))}, standard BN "
        f"{_d(g(MAIN, 'open_bn_standard', 'open'))}, `noise_grad: features` "
        f"{_d(g(MAIN, 'open_features', 'open'))} ({standing(g(MAIN, 'open_features', 'open'))}), delta 3/6 "
        f"{_d(g(MAIN, 'open_delta_3of6', 'open'))}.",
        f"- **Noise as augmentation** on balanced data (100 images per class): noise_aug − ERM "
        f"{_d(g(BALANCED, 'noise_aug', 'erm'))} ({standing(g(BALANCED, 'noise_aug', 'erm'))}).",
    ]
    return lines


def update(readme: Path, lines: list[str]) -> bool:
    """Replace the README's block between the markers; returns whether the file changed."""
    text = readme.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{readme}: no study summary markers ({BEGIN!r} ... {END!r}) to write between")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    new = head + BEGIN + "\n" + "\n".join(lines) + "\n" + END + tail
    if new != text:
        from purenoise.fileio import atomic_write_text

        atomic_write_text(readme, new)
    return new != text


def findings(s: Study) -> dict:
    """The study's cells as data, for ``purenoise compare`` and ``report`` to quote.

    Per cell with paired seeds (the regime study's cells, then the evidence study's twins): how far
    its DRS runs fit the minority half (training accuracy and its gap to test accuracy, in points)
    and OPeN - DRS with its 95% interval (points); then the evidence study's final verdicts.
    """
    cells = []
    for cell in (X1, MAIN, LONG, SHORT):
        d = paired(s.get(cell, "open"), s.get(cell, "drs"))
        train = values(s.get(cell, "drs"), "train_minority_half")
        gap = values(s.get(cell, "drs"), "gap_minority_half")
        if d is None or d["lo"] is None or not train:
            continue
        cells.append({"cell": cell, "drs_train_minority_half": round(100 * statistics.fmean(train), 2),
                      "drs_gap_minority_half": round(100 * statistics.fmean(gap), 2),
                      "open_minus_drs": {k: round(100 * d[k], 2) for k in ("mean", "lo", "hi")},
                      "seeds": d["n"], "verdict": standing(d)})
    cells += evidence_verdicts.twin_findings(s.root)
    return {"source": "benchmarks/fmnist_lt/RESULTS.md (Fashion-MNIST-LT, ratio 100, resnet_small, CPU)",
            "cells": cells, "evidence": evidence_verdicts.findings(s.root)}

