"""The Fashion-MNIST-LT study's runs and plans: what every study script reads, nothing that trains.

``study.py`` trains these plans, ``select_cell.py`` chooses the main cell from their ERM runs,
``evidence.py`` adds its parts, and ``results.py`` (with ``study_runs.py``, ``readme_block.py``,
``evidence_results.py``, ``evidence_verdicts.py`` and ``evidence_section.py``) reads their run
folders. Each of them imports this module; none of them imports another that imports it back. The
plans themselves are described in ``study.py``.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
RUNS = HERE / "runs"  # the study's run folders; their light files are kept in git
CONFIGS = REPO / "configs"
SEEDS = (0, 1, 2)
MAIN_SEEDS = (0, 1, 2, 3, 4)
METHODS = ("erm", "drs", "open", "rs")  # branches right after their parent: its checkpoint is fresh
BRANCHED = {"drs", "open"}
ABLATION = ("open_bn_standard", "open_bn_aux", "open_features", "open_delta_1of6", "open_delta_3of6")
REGIME_CELLS = ("fmnist_lt_r100_n1000", "fmnist_lt_r100_n1000_w2", "fmnist_lt_r100_long")
BALANCED_CELL = "fmnist_n100_w2"
SHORT_CELL = "fmnist_lt_r100"
WIDE_CELL = "fmnist_lt_r100_n1000_w4"
MAIN_CELL_FILE = "main_cell.json"


@dataclass(frozen=True)
class RunSpec:
    """One training run of the study."""

    setting: str  # configs/<setting>/
    method: str  # configs/<setting>/<method>.yaml
    seed: int
    parent: str | None = None  # method of the run to branch from (same setting, seed and subset)
    subset: int = 0  # subset_seed of the long-tailed subset (0: the standard one)

    @property
    def name(self) -> str:
        return f"{self.method}_s{self.seed}"

    @property
    def cell(self) -> str:
        """The folder of the run's cell: the setting, with the subset when it is not the standard one."""
        return self.setting if self.subset == 0 else f"{self.setting}_sub{self.subset}"

    def folder(self, runs: Path) -> Path:
        return runs / self.cell / self.name

    def command(self, runs: Path, extra: tuple[str, ...] = ()) -> list[str]:
        cmd = ["purenoise", "train", "--config", f"configs/{self.setting}/{self.method}.yaml",
               "--set", f"seed={self.seed}", "--set", f"name={self.cell}_{self.name}",
               "--out", str(self.folder(runs))]
        if self.subset:
            cmd += ["--set", f"subset_seed={self.subset}"]
        if self.parent:
            cmd += ["--init-from", str(runs / self.cell / f"{self.parent}_s{self.seed}")]
        return cmd + list(extra)


def cell_runs(setting: str, seeds=SEEDS, methods=METHODS) -> list[RunSpec]:
    """A cell's runs, seed by seed: ERM first, its branches next, then the others."""
    out = []
    for seed in seeds:
        out.append(RunSpec(setting, "erm", seed))
        out += [RunSpec(setting, m, seed, "erm" if m in BRANCHED or m.startswith("open_") else None)
                for m in methods if m != "erm"]
    return out


def main_cell(runs: Path) -> str | None:
    """The main job's cell as ``select_cell.py`` chose it, or None before the choice."""
    path = runs / MAIN_CELL_FILE
    return json.loads(path.read_text())["cell"] if path.exists() else None


def demo_cell() -> str:
    """The main job's cell: the chosen main cell, or the short reference cell until one is chosen."""
    return main_cell(RUNS) or SHORT_CELL


def plan(name: str, runs: Path = RUNS) -> list[RunSpec]:
    """The runs of a plan, parents before their branches."""
    specs: list[RunSpec] = []
    if name == "demo":
        specs = cell_runs(demo_cell(), (0,), ("erm", "drs", "open"))
    elif name == "regime":
        for cell in REGIME_CELLS[:2]:
            specs += cell_runs(cell)
        specs += [RunSpec(BALANCED_CELL, m, s) for s in SEEDS for m in ("erm", "noise_aug")]
        specs += cell_runs(REGIME_CELLS[2]) + cell_runs(SHORT_CELL)
    elif name == "main-cell":
        cell = main_cell(runs)
        if cell is None:
            print(f"main-cell: no main cell chosen yet ({runs / MAIN_CELL_FILE}); nothing to do")
            return []
        # The ablation first: its runs branch from ERM runs the regime plan has already trained.
        specs = cell_runs(cell, MAIN_SEEDS, ("erm", *ABLATION)) + cell_runs(cell, MAIN_SEEDS)
    elif name == "wide":
        specs = cell_runs(WIDE_CELL)
    elif name == "short":
        for setting in (SHORT_CELL, "fmnist_lt_r50"):
            specs += cell_runs(setting)
        specs += cell_runs(SHORT_CELL, SEEDS, ("erm", "open_bn_standard", "open_bn_aux", "open_features"))
        specs += cell_runs(SHORT_CELL, SEEDS, ("erm", *[f"open_delta_{k}of6" for k in (1, 3, 4, 5, 6)]))
    else:
        raise SystemExit(f"unknown plan {name!r}; choose demo, regime, main-cell, wide or short")
    seen: set[RunSpec] = set()
    return [r for r in specs if not (r in seen or seen.add(r))]


def in_cells(specs: list[RunSpec], cells: tuple[str, ...], methods: tuple[str, ...] = ()) -> list[RunSpec]:
    """The runs of ``specs`` in the given cells and of the given methods (empty: all), order kept.

    Runs a plan in parts: a cheap cell first while a long one waits, or the seeds of the paired
    comparison before a baseline that is trained on its own (an interrupted run resumes later).
    """
    unknown = [c for c in cells if not (CONFIGS / c).is_dir() and c not in {s.cell for s in specs}]
    if unknown:
        raise SystemExit(f"--cell {', '.join(unknown)}: no such folder under {CONFIGS}")
    known = {s.method for s in specs}
    unknown = [m for m in methods if m not in known]
    if unknown:
        raise SystemExit(f"--method {', '.join(unknown)}: not in this plan (its methods: {', '.join(sorted(known))})")
    return [s for s in specs if (not cells or s.setting in cells or s.cell in cells)
            and (not methods or s.method in methods)]
