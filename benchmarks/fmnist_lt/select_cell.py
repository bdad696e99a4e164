"""Choose the main job's cell by memorization alone, before any OPeN result is read.

The rule, fixed before the regime study's results were seen: **the cheapest cell whose ERM runs
classify, at their end, at least 99% of the un-augmented training images correctly** (the mean of
``train_top1`` in eval.json over the cell's ERM seeds 0, 1 and 2; the memorization diagnostic
evaluates the long-tailed training set in eval mode with the evaluation transform). Such a network
can memorize its training set, as WRN-28-10 does CIFAR-10-LT in the paper.

"Cheapest" is the training work of the cell's ERM run, counted rather than timed so that it does
not depend on the machine or its load: FLOPs per training image (forward and backward, counted by
``torch.utils.flop_counter`` on the meta device) x training images x epochs.

Only ERM runs are read. The choice is written to ``main_cell.json`` in the runs folder once every
cheaper cell is decided, and never rewritten (``--force`` to recompute it on purpose).

    python benchmarks/fmnist_lt/select_cell.py
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import study_plan  # noqa: E402
from purenoise.reporting.text import pct  # noqa: E402
from purenoise.run_paths import RunPaths  # noqa: E402

THRESHOLD = 0.99
CANDIDATES = (*study_plan.REGIME_CELLS, study_plan.WIDE_CELL)
RULE = ("the cheapest cell (training FLOPs of its ERM run) whose ERM runs, seeds 0-2, classify at "
        f"least {THRESHOLD:.0%} of the un-augmented training images correctly at their end (mean "
        "train_top1)")


def cell_cost(cell: str) -> dict[str, float]:
    """Training work of the cell's ERM run: FLOPs per image x images x epochs."""
    from _common import training_flops_per_image
    from purenoise.config import load_config, settings
    from purenoise.data.longtail import longtail_counts
    from purenoise.models import create_model

    s = settings(load_config(study_plan.REPO / "configs" / cell / "erm.yaml"))
    images = sum(longtail_counts(s.dataset_options.get("n_max", 6000), 10, s.ratio))
    flops = training_flops_per_image(lambda: create_model(s.model, 10, in_chans=1, **s.model_options), (1, 28, 28))
    return {"gflop_per_image": flops / 1e9, "images": images, "epochs": s.epochs,
            "pflop": flops * images * s.epochs / 1e15}


def erm_memorization(runs: Path, cell: str) -> list[float | None]:
    """``train_top1`` of the cell's ERM runs, seeds 0-2 (None where not finished)."""
    out = []
    for seed in study_plan.SEEDS:
        path = RunPaths(study_plan.RunSpec(cell, "erm", seed).folder(runs)).eval
        out.append(json.loads(path.read_text()).get("train_top1") if path.exists() else None)
    return out


def select(runs: Path) -> dict:
    """The cells in order of cost with their measured memorization, and the choice (or None)."""
    cells = []
    for cell in CANDIDATES:
        acc = erm_memorization(runs, cell)
        done = all(a is not None for a in acc)
        mean = sum(acc) / len(acc) if done else None
        cells.append({"cell": cell, **cell_cost(cell), "erm_train_top1": acc, "mean": mean,
                      "memorizes": None if mean is None else mean >= THRESHOLD})
    cells.sort(key=lambda c: c["pflop"])
    chosen = None
    for c in cells:
        if c["memorizes"] is None:
            break  # a cheaper cell is not decided yet
        if c["memorizes"]:
            chosen = c["cell"]
            break
    return {"cell": chosen, "rule": RULE, "threshold": THRESHOLD, "cells": cells,
            "decided": time.strftime("%Y-%m-%d %H:%M:%S") if chosen else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default=str(study_plan.RUNS))
    ap.add_argument("--force", action="store_true", help="recompute a choice already written")
    args = ap.parse_args(argv)
    runs = Path(args.runs)
    target = runs / study_plan.MAIN_CELL_FILE
    if target.exists() and not args.force:
        print(f"already chosen: {json.loads(target.read_text())['cell']} ({target})")
        return 0
    result = select(runs)
    for c in result["cells"]:
        acc = ", ".join(pct(a) for a in c["erm_train_top1"])
        print(f"{c['cell']:28s} {c['pflop']:8.3f} PFLOP  ERM train top-1 (seeds 0-2): {acc}")
    if result["cell"] is None:
        print("no choice yet: a cheaper cell's ERM runs are not finished, or no cell memorizes")
        return 0
    from purenoise.fileio import atomic_write_text

    atomic_write_text(target, json.dumps(result, indent=2) + "\n")
    print(f"main cell: {result['cell']} -> {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
