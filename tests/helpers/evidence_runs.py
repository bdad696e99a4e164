"""Run folders of the evidence study written here (eval.json only, the keys its scripts read), and
the import of its scripts from ``benchmarks/fmnist_lt/``, for the evidence tests."""
from __future__ import annotations

import json
import sys
from pathlib import Path

STUDY = Path(__file__).resolve().parents[2] / "benchmarks" / "fmnist_lt"
COUNTS = [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]
SCRIPTS = ("study", "evidence", "evidence_results", "evidence_verdicts", "evidence_section", "same_numbers")


def import_scripts(monkeypatch) -> None:
    """Put the study's folder first on sys.path and forget any scripts imported before."""
    monkeypatch.syspath_prepend(str(STUDY))
    monkeypatch.syspath_prepend(str(STUDY.parent))
    for name in SCRIPTS:
        sys.modules.pop(name, None)


def write(runs: Path, cell: str, method: str, seed: int, top1: float, train_minority: float = 1.0,
          subset: int = 0) -> None:
    """A finished run: test top-1 ``top1`` on every class, training accuracy 1 on the majority half
    and ``train_minority`` on the minority half."""
    folder = runs / (cell if subset == 0 else f"{cell}_sub{subset}") / f"{method}_s{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    train = [1.0] * 5 + [train_minority] * 5
    (folder / "eval.json").write_text(json.dumps({
        "top1": top1, "per_class_acc": [top1] * 10, "class_counts": COUNTS,
        "train_per_class_acc": train, "train_top1": sum(train) / 10}))


def choose_first_candidates(evidence, runs: Path) -> tuple[str, str, str, str]:
    """Write a twins.json that picks each data size's first candidate; return (main, long, twins)."""
    main, long = evidence.MAIN, evidence.LONG
    twin_m, twin_l = evidence.CANDIDATES[main][0], evidence.CANDIDATES[long][0]
    (runs / evidence.TWINS_FILE).write_text(json.dumps(
        {"twins": {main: {"twin": twin_m}, long: {"twin": twin_l}}, "decided": "now"}))
    return main, long, twin_m, twin_l


def two_by_two(evidence, runs: Path, gain_main: float, gain_long_twin: float, moved: float = 0.05,
               spread: float = 0.001, seeds: int = 5, moved_long: float | None = None) -> None:
    """Seeds 0-4 of the 2x2: OPeN - DRS of ``gain_main`` points in the main cell (plus an alternating
    ``spread`` per seed, a fraction) and ``gain_long_twin`` in the long twin (0 in the other two
    cells); the DRS minority half moved by ``moved`` (``moved_long`` for the long twin; fractions)
    the intended way in each twin. ``seeds`` < 5 leaves the main cell's last seeds out."""
    main, long, twin_m, twin_l = choose_first_candidates(evidence, runs)
    moved_long = moved if moved_long is None else moved_long
    for cell, d, mem in ((main, gain_main, 0.99), (twin_m, 0.0, 0.99 - moved),
                         (long, 0.0, 0.95), (twin_l, gain_long_twin, 0.95 + moved_long)):
        for seed in range(seeds if cell == main else 5):
            jitter = spread * seed * (-1) ** seed if cell == main else 0.0
            write(runs, cell, "erm", seed, 0.78)
            write(runs, cell, "drs", seed, 0.80, mem)
            write(runs, cell, "open", seed, 0.80 + d / 100 + jitter, mem)


def baselines(runs: Path, main: str, open_top1: float, losses: dict[str, float] | None = None) -> None:
    """The main cell's other baselines (seeds 0-9) and ERM, DRS, OPeN of seeds 5-9 (0-4 are the 2x2's);
    ``losses``: each loss's top-1 (OPeN on it: 1 point more)."""
    losses = losses or {"logit_adjust": 0.805, "ldam_drw": 0.79}
    for seed in range(10):
        write(runs, main, "rs", seed, 0.79)
        for loss, acc in losses.items():
            write(runs, main, f"erm_{loss}", seed, acc)
            write(runs, main, f"open_{loss}", seed, acc + 0.01 + 0.001 * seed * (-1) ** seed)
        if seed >= 5:
            for m, acc in (("erm", 0.78), ("drs", 0.80), ("open", open_top1 + 0.001 * seed)):
                write(runs, main, m, seed, acc)
