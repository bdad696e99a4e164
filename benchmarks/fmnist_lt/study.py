"""The Fashion-MNIST-LT studies: the paper's claims tested on real data on a CPU.

A run is a shipped config (``configs/<setting>/<method>.yaml``) plus a seed. DRS and OPeN variants
branch from the ERM run of the same setting and seed at the defer epoch, so the shared first
phase is trained once. Plans, each a list of runs, parents before their branches:

- ``demo``: the main job (``make demo``): ERM, DRS and OPeN, seed 0, of the main cell.
- ``regime``: where pure noise pays off. Cells on the paper's 200-epoch schedule that span
  "underfits" to "memorizes" (``fmnist_lt_r100_n1000``, ``fmnist_lt_r100_n1000_w2``,
  ``fmnist_lt_r100_long``), ERM/RS/DRS/OPeN with seeds 0-2 each; the balanced 100-per-class
  set with ``noise_aug`` against ERM (``fmnist_n100_w2``); and the 30-epoch cell
  (``fmnist_lt_r100``) as the short reference.
- ``main-cell``: seeds 3 and 4 of the main cell's four methods, and its BN ablation and delta
  sweep (seeds 0-4). The main cell is read from ``main_cell.json`` in the runs folder, written by
  ``select_cell.py`` from the ERM runs' memorization alone, before any OPeN result is read.
- ``wide``: the x4-wide cell (``fmnist_lt_r100_n1000_w4``), seeds 0-2, when time allows.
- ``short``: the 30-epoch study of ratios 100 and 50 with its ablations (the earlier study).
- ``all``: the whole study in the order that lets the choice be made: ``regime``, then
  ``select_cell.py``; ``wide`` if no cheaper cell memorizes (and ``select_cell.py`` again); then
  ``main-cell``. One command for a study that spans sessions.

Finished runs (with an eval.json) are skipped and interrupted ones resume, so a study can be
stopped and restarted at any time, in parts and across sessions. Each run is its own process,
running the purenoise of the checkout this file is in; its command and wall time go to
``study_log.jsonl``. ``results.py`` writes RESULTS.md from the run folders.

    python benchmarks/fmnist_lt/study.py              # every plan, in order (--plan NAME for one)
    python benchmarks/fmnist_lt/study.py --plan regime --cell fmnist_lt_r100   # one cell of a plan
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from purenoise.run_paths import RunPaths

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
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


def _env(share_cpu: bool) -> dict[str, str]:
    """The environment of a run: this checkout's purenoise first on the path.

    ``share_cpu``: idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``).
    A study runs for hours next to other work, and on a busy 2-core machine the spinning threads
    of two processes slow each other down up to tenfold; alone on the machine (the demo), the
    default policy was faster. The results are the same to the bit either way.
    """
    env = dict(os.environ)
    if share_cpu:
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    return env


def run_one(spec: RunSpec, runs: Path, extra: tuple[str, ...], log: Path, share_cpu: bool = True) -> float:
    """Train one run in its own process (resuming it if it was interrupted); returns seconds."""
    out = spec.folder(runs)
    argv = spec.command(runs, extra)[1:]
    if RunPaths(out).last_checkpoint.exists():
        # An interrupted run continues where it stopped (its branch point is already inside).
        i = argv.index("--init-from") if "--init-from" in argv else -1
        if i >= 0:
            del argv[i:i + 2]
        argv += ["--resume", "auto"]
    elif spec.parent:
        parent = RunSpec(spec.setting, spec.parent, spec.seed, subset=spec.subset)
        if not RunPaths(parent.folder(runs)).epoch_checkpoints():
            # The parent's light files came from git without its checkpoints: retrain it first.
            print(f"\n{parent.folder(runs)} has no branch checkpoint: training it again", flush=True)
            RunPaths(parent.folder(runs)).eval.unlink(missing_ok=True)
            run_one(parent, runs, extra, log, share_cpu)
    print(f"\n=== {spec.cell}/{spec.name}: {' '.join(shlex.quote(a) for a in ['purenoise', *argv])}",
          flush=True)
    t0 = time.perf_counter()
    code = subprocess.call([sys.executable, "-m", "purenoise", *argv], cwd=REPO, env=_env(share_cpu))
    seconds = time.perf_counter() - t0
    # Every part of a run is logged, one an interruption ended too, so the study's time adds up.
    entry = {"run": str(out.relative_to(runs)), "command": " ".join(spec.command(runs, extra)),
             "seconds": round(seconds, 1), "parent": spec.parent, "machine": _machine(),
             "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "exit_code": code}
    with log.open("a") as f:
        f.write(json.dumps(entry) + "\n")
    if code != 0:
        raise SystemExit(f"run {out} failed with exit code {code}")
    return seconds


def _machine() -> str:
    """The CPU model: CPU runs repeat bit for bit on one model, not across models."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} x{os.cpu_count()}"
    except OSError:
        pass
    import platform

    return f"{platform.processor() or platform.machine()} x{os.cpu_count()}"


def run_all(runs: Path, extra: tuple[str, ...]) -> int:
    """``regime``, the choice of the main cell, ``wide`` when the choice needs it, ``main-cell``."""
    import select_cell

    train_plan("regime", runs, extra)
    select_cell.main(["--runs", str(runs)])
    if main_cell(runs) is None:
        train_plan("wide", runs, extra)
        select_cell.main(["--runs", str(runs)])
    if main_cell(runs) is None:
        print("no cell memorizes by the rule: the main cell stays unchosen", flush=True)
        return 0
    train_plan("main-cell", runs, extra)
    return 0


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


def train_plan(name: str, runs: Path, extra: tuple[str, ...], share_cpu: bool = True,
               cells: tuple[str, ...] = (), methods: tuple[str, ...] = ()) -> float:
    """Train the unfinished runs of a plan (only those of ``cells`` and ``methods``, if given); returns
    the seconds spent."""
    return train_specs(name, in_cells(plan(name, runs), cells, methods), runs, extra, share_cpu)


def train_specs(name: str, specs: list[RunSpec], runs: Path, extra: tuple[str, ...],
                share_cpu: bool = True) -> float:
    """Train the unfinished runs of ``specs`` in order, printing progress; returns the seconds spent."""
    todo = [s for s in specs if not RunPaths(s.folder(runs)).eval.exists()]
    print(f"plan {name}: {len(specs)} runs, {len(specs) - len(todo)} already done", flush=True)
    runs.mkdir(parents=True, exist_ok=True)
    total = 0.0
    for i, spec in enumerate(todo, 1):
        if RunPaths(spec.folder(runs)).eval.exists():  # trained meanwhile as another run's parent
            continue
        print(f"[{i}/{len(todo)}]", end="", flush=True)
        total += run_one(spec, runs, extra, runs / "study_log.jsonl", share_cpu)
    print(f"\n{len(todo)} runs trained in {total / 60:.1f} min", flush=True)
    return total


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plan", default="all")
    ap.add_argument("--runs", default=str(RUNS), help="folder of the run folders")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra config override for every run (e.g. epochs=2 for a smoke test)")
    ap.add_argument("--cell", action="append", default=[], metavar="CELL",
                    help="train only this cell's runs of the plan (repeatable; a configs/ folder name)")
    ap.add_argument("--method", action="append", default=[], metavar="METHOD",
                    help="train only this method's runs of the plan (repeatable)")
    ap.add_argument("--dry-run", action="store_true", help="print the commands only")
    ap.add_argument("--progress", action="store_true",
                    help="show each run's progress bars and epoch lines, and let idle threads spin (an "
                         "interactive job alone on the machine; the study's runs are quiet and share it)")
    args = ap.parse_args(argv)
    if args.set and Path(args.runs).resolve() == RUNS.resolve():
        raise SystemExit("--set changes the runs, so they are not the study's: give them their own --runs folder")
    runs = Path(args.runs).resolve()
    extra = tuple(x for kv in args.set for x in ("--set", kv))
    if not args.progress:
        extra += ("--set", "progress=false")
    if args.dry_run:
        names = ("regime", "wide", "main-cell") if args.plan == "all" else (args.plan,)
        for name in names:
            for s in in_cells(plan(name, runs), tuple(args.cell), tuple(args.method)):
                if not RunPaths(s.folder(runs)).eval.exists():
                    print(" ".join(shlex.quote(a) for a in s.command(runs, extra)))
        return 0
    if args.plan == "all":
        if args.cell or args.method:
            raise SystemExit("--cell and --method need a named plan (--plan regime, main-cell, wide or short)")
        return run_all(runs, extra)
    train_plan(args.plan, runs, extra, share_cpu=not args.progress, cells=tuple(args.cell),
               methods=tuple(args.method))
    return 0


if __name__ == "__main__":
    sys.exit(main())
