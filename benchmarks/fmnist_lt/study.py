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
  ``main-cell``. One command for a study that takes many separate sittings.

Finished runs (with an eval.json) are skipped and interrupted ones resume, so a study can be
stopped and restarted at any time, in parts and over many days. Each run is its own process,
running the purenoise of the checkout this file is in; its command and wall time go to
``study_log.jsonl``. The runs are trained by the executor of ``purenoise compare``
(``purenoise.plans``): a failed run does not stop the others (the plan exits with an error once they
are done), and each run's line says how many are left and, from the log's timings, the time left.
The runs and plans themselves are in ``study_plan.py``. ``results.py`` writes RESULTS.md from the
run folders.

    python benchmarks/fmnist_lt/study.py              # every plan, in order (--plan NAME for one)
    python benchmarks/fmnist_lt/study.py --plan regime --cell fmnist_lt_r100   # one cell of a plan
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import select_cell
from study_plan import (  # noqa: F401 (the plans' names, read as study.X by the other scripts and the tests)
    ABLATION, BALANCED_CELL, BRANCHED, CONFIGS, MAIN_CELL_FILE, MAIN_SEEDS, METHODS, REGIME_CELLS, REPO, RUNS,
    SEEDS, SHORT_CELL, WIDE_CELL, RunSpec, cell_runs, demo_cell, in_cells, main_cell, plan,
)

from purenoise import plans
from purenoise.plans import PlannedRun
from purenoise.run_paths import RunPaths

LOG_FILE = "study_log.jsonl"


def _env(share_cpu: bool) -> dict[str, str]:
    """The environment of a run: this checkout's purenoise first on the path.

    ``share_cpu``: idle OpenMP threads sleep instead of spinning (``OMP_WAIT_POLICY=PASSIVE``).
    A study runs for hours next to other work, and on a busy machine with few cores the spinning
    threads of two processes take each other's CPU time; alone on the machine (the demo), spinning
    costs nothing and the default policy is kept. The results are the same to the bit either way.
    """
    env = dict(os.environ)
    if share_cpu:
        env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO / "src"), env.get("PYTHONPATH")) if p)
    return env


def planned_run(spec: RunSpec, runs: Path, extra: tuple[str, ...]) -> PlannedRun:
    """``spec`` as a run of :func:`purenoise.plans.execute`, its parent (if any) with it."""
    parent = None
    if spec.parent:
        parent = planned_run(RunSpec(spec.setting, spec.parent, spec.seed, subset=spec.subset), runs, extra)
    kind = f"{spec.cell}/{'branch' if spec.parent else 'full'}"  # a cell's runs cost alike
    return PlannedRun(str(spec.folder(runs).relative_to(runs)), spec.folder(runs),
                      tuple(spec.command(runs, extra)[1:]), parent, kind, spec)


def _kind(entry: dict) -> str | None:
    """The kind of a ``study_log.jsonl`` entry, as :func:`planned_run` gives it (None: unreadable)."""
    run = entry.get("run")
    return f"{Path(run).parent}/{'branch' if entry.get('parent') else 'full'}" if isinstance(run, str) else None


def run_one(spec: RunSpec, runs: Path, extra: tuple[str, ...], log: Path, share_cpu: bool = True) -> float:
    """Train one run in its own process (resuming it if it was interrupted, training its parent
    again first if its checkpoints are missing); returns seconds."""
    return _execute(f"run {spec.cell}/{spec.name}", [planned_run(spec, runs, extra)], runs, extra, log, share_cpu)


def _execute(who: str, todo: list[PlannedRun], runs: Path, extra: tuple[str, ...], log: Path,
             share_cpu: bool) -> float:
    """Train ``todo`` with the executor of ``purenoise compare``; the seconds spent. A failed run
    does not stop the others, but the study stops with its message once they are done."""
    spent = [0.0]

    def record(run: PlannedRun, argv: list[str], code: int, seconds: float) -> None:
        # Every part of a run is logged, one an interruption ended too, so the study's time adds up.
        spec: RunSpec = run.spec
        entry = {"run": run.name, "command": " ".join(spec.command(runs, extra)),
                 "seconds": round(seconds, 1), "parent": spec.parent, "machine": _machine(),
                 "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "exit_code": code}
        with log.open("a") as f:
            f.write(json.dumps(entry) + "\n")
        spent[0] += seconds

    def runner(argv) -> int:
        return plans.launch(argv, _env(share_cpu), cwd=REPO)

    def estimate(left) -> float | None:
        return plans.estimate_left(left, plans.read_log(log), _kind)

    runs.mkdir(parents=True, exist_ok=True)
    failed, stopped = plans.execute(todo, runner, record, estimate, who=who, retrain_parents=True)
    if stopped:
        raise SystemExit(f"{who}: stopped; run the same command again to resume")
    if failed:
        raise SystemExit(f"{who}: {len(failed)} runs did not finish: "
                         + ", ".join(name if code is None else f"{name} (exit code {code})" for name, code in failed)
                         + "; run the same command again to retry them")
    return spent[0]


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


def train_plan(name: str, runs: Path, extra: tuple[str, ...], share_cpu: bool = True,
               cells: tuple[str, ...] = (), methods: tuple[str, ...] = ()) -> float:
    """Train the unfinished runs of a plan (only those of ``cells`` and ``methods``, if given); returns
    the seconds spent."""
    return train_specs(name, in_cells(plan(name, runs), cells, methods), runs, extra, share_cpu)


def train_specs(name: str, specs: list[RunSpec], runs: Path, extra: tuple[str, ...],
                share_cpu: bool = True) -> float:
    """Train the unfinished runs of ``specs`` in order, printing progress; returns the seconds spent."""
    todo = [planned_run(s, runs, extra) for s in specs]
    total = _execute(f"plan {name}", todo, runs, extra, runs / LOG_FILE, share_cpu)
    print(f"\nplan {name}: trained for {total / 60:.1f} min", flush=True)
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
