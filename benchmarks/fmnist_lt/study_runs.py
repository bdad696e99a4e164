"""The study's run folders as data: finished runs by cell and method, and their numbers.

``results.py`` renders RESULTS.md from these and ``readme_block.py`` the README's summary; both
read the same :class:`Study`, so the page and the README cannot disagree.
"""
from __future__ import annotations

import json
from pathlib import Path

import study_plan

from purenoise.run_paths import RunPaths

METHOD_ORDER = ("erm", "rs", "drs", "open")
LABELS = {"erm": "ERM", "rs": "RS", "drs": "DRS", "open": "OPeN", "noise_aug": "noise_aug",
          "open_bn_standard": "OPeN, standard BN", "open_bn_aux": "OPeN, auxiliary BN",
          "open_features": "OPeN, DAR-BN noise_grad features", "open_delta_1of6": "OPeN, delta 1/6",
          "open_delta_3of6": "OPeN, delta 3/6"}


class Study:
    """The finished runs, by cell and method, as seed replicates."""

    def __init__(self, runs: Path) -> None:
        from purenoise.reporting.replicates import Replicates
        from purenoise.reporting.runs import load_run

        self.root = runs
        self.groups: dict[tuple[str, str], Replicates] = {}
        planned = [s for name in ("regime", "main-cell", "wide") for s in study_plan.plan(name, runs)]
        self.planned = list(dict.fromkeys(planned))
        # The x4 cell is trained only when no cheaper cell memorizes (study.run_all): optional once
        # a main cell is chosen, required before.
        chosen = runs / study_plan.MAIN_CELL_FILE
        self.main = json.loads(chosen.read_text()) if chosen.exists() else None
        optional = {study_plan.WIDE_CELL} if self.main and self.main["cell"] != study_plan.WIDE_CELL else set()
        self.required = [s for s in self.planned if s.setting not in optional]
        for spec in self.planned:
            folder = spec.folder(runs)
            if RunPaths(folder).eval.exists():
                g = self.groups.setdefault((spec.setting, spec.method), Replicates(
                    LABELS.get(spec.method, spec.method), [], []))
                g.runs.append(load_run(folder))
                g.seeds.append(spec.seed)
        self.log = []
        log = runs / "study_log.jsonl"
        if log.exists():
            entries = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
            self.log = entries  # one entry per part of a run: an interrupted part and its resumption
        self.runs_logged = sorted({e["run"] for e in self.log})

    def get(self, cell: str, method: str):
        return self.groups.get((cell, method))

    def done(self, cell: str) -> tuple[int, int]:
        specs = [s for s in self.planned if s.setting == cell]
        return sum(RunPaths(s.folder(self.root)).eval.exists() for s in specs), len(specs)


# ---------------------------------------------------------------------------- numbers
def metric(run, key: str) -> float | None:
    """A run's metric: eval.json's summaries, plus the training-set (memorization) ones."""
    from purenoise.reporting.summary import minority_half_accuracy, summarize

    ev = run.eval
    if key == "train_minority_half":
        acc = ev.get("train_per_class_acc")
        return minority_half_accuracy(acc, ev["class_counts"]) if acc else None
    if key == "gap_minority_half":
        a, b = metric(run, "train_minority_half"), metric(run, "minority_half")
        return None if a is None or b is None else a - b
    if key in ev and key not in ("many", "medium", "few"):
        return ev[key]
    return summarize(run)[key]


def values(group, key: str) -> list[float]:
    """``metric(run, key)`` of every run of a seed group that has it (empty for no group)."""
    return [v for v in (metric(r, key) for r in group.runs) if v is not None] if group else []


def paired(a, b, key: str = "top1", level: float = 0.95) -> dict | None:
    """``a - b`` paired by seed with its t-interval at ``level`` (fractions); None without both groups."""
    from purenoise.reporting.replicates import paired_difference

    if a is None or b is None:
        return None
    return paired_difference(a, b, lambda r: metric(r, key), level)


LT_KEYS = ("top1", "minority_half", "many", "medium", "few", "train_top1", "train_minority_half")
