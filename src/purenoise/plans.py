"""Training a plan of runs: each run its own ``python -m purenoise train`` process, resumable.

The executor shared by ``purenoise compare`` (:mod:`purenoise.compare_plan`) and the
Fashion-MNIST study scripts (``benchmarks/fmnist_lt/study.py``). A plan is a list of
:class:`PlannedRun`, parents before their branches. A run with ``eval.json`` is skipped; an
interrupted one (a checkpoint, no ``eval.json``) continues with ``--resume auto``; a branch starts
from its parent's checkpoint at the switch epoch (``--init-from``) and waits while its parent has
not finished. A failed run does not stop the others; a run the user stopped (Ctrl-C, SIGTERM)
stops the plan, to be resumed by the same command. Each run's command, exit code and seconds go to
the caller's log (``record``), whose timings estimate the time left (``estimate``).
"""
from __future__ import annotations

import json
import math
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from purenoise.fileio import atomic_write_text
from purenoise.run_paths import RunPaths

__all__ = ["PlannedRun", "STOPPED", "command", "launch", "read_log", "append_log", "estimate_left",
           "duration", "execute"]

#: Exit codes that mean the user stopped the plan (Ctrl-C, SIGTERM): it stops, to resume later.
STOPPED = (130, 143, -2, -15)


@dataclass(frozen=True)
class PlannedRun:
    """One run of a plan: its folder and the ``purenoise`` arguments that start it afresh.

    ``argv`` of a branch holds ``--init-from PARENT_FOLDER``; :func:`command` drops it when the run
    resumes (its branch point is inside its own checkpoint then). ``kind`` groups runs of similar
    cost for the time estimate; ``spec`` is the caller's own description of the run.
    """

    name: str
    folder: Path
    argv: tuple[str, ...]
    parent: PlannedRun | None = None
    kind: str = "full"
    spec: Any = field(default=None, compare=False)

    @property
    def finished(self) -> bool:
        return RunPaths(self.folder).eval.exists()

    @property
    def started(self) -> bool:
        return RunPaths(self.folder).last_checkpoint.exists()


def command(run: PlannedRun) -> list[str]:
    """The ``purenoise`` arguments that train ``run`` now: afresh (a branch from its parent) or resumed."""
    argv = list(run.argv)
    if not run.started:
        return argv
    if "--init-from" in argv:
        i = argv.index("--init-from")
        del argv[i:i + 2]
    return argv + ["--resume", "auto"]


def launch(argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None) -> int:
    """Run ``python -m purenoise ARGV`` in a process of its own; its exit code.

    A Ctrl-C reaches the run too, which saves a checkpoint and exits: it is waited for, not killed.
    """
    extra = {"cwd": cwd} if cwd is not None else {}
    proc = subprocess.Popen([sys.executable, "-m", "purenoise", *argv], env=env, **extra)
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return proc.wait()


def read_log(path: Path) -> list[dict[str, Any]]:
    """The entries of a JSON-lines log; lines that are not JSON objects are ignored."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return []
    entries = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries


def append_log(path: Path, entry: dict[str, Any]) -> None:
    """Add a line to the log, rewriting it atomically (a crash leaves the old log or the new one)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    atomic_write_text(path, text + json.dumps(entry) + "\n")


def _seconds(entry: dict[str, Any]) -> float | None:
    s = entry.get("seconds")
    ok = isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) and s >= 0
    return float(s) if ok else None


def estimate_left(left: Sequence[Any], log: Sequence[dict[str, Any]],
                  kind_of: Callable[[dict[str, Any]], str | None] = lambda e: e.get("kind")) -> float | None:
    """Seconds the runs ``left`` (anything with a ``kind``) should take: per kind, the mean time of
    the finished runs of that kind in ``log`` (``kind_of`` reads an entry's) times how many are left;
    ``None`` while a kind left has no finished run to go by."""
    done: dict[str, list[float]] = {}
    for e in log:
        kind = kind_of(e)
        if e.get("exit_code") == 0 and kind is not None and _seconds(e) is not None:
            done.setdefault(kind, []).append(_seconds(e))
    total = 0.0
    for run in left:
        times = done.get(run.kind)
        if not times:
            return None
        total += sum(times) / len(times)
    return total


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    return f"about {seconds / 60:.1f} min" if seconds >= 60 else f"about {seconds:.0f} s"


def _train(run: PlannedRun, runner: Callable[[Sequence[str]], int],
           record: Callable[[PlannedRun, list[str], int, float], None], who: str) -> int:
    argv = command(run)
    print(f"{who}: purenoise " + " ".join(shlex.quote(a) for a in argv), flush=True)
    t0 = time.perf_counter()
    code = runner(argv)
    record(run, argv, code, time.perf_counter() - t0)  # every part of a run, an interrupted one too
    return code


def execute(plan: Sequence[PlannedRun], runner: Callable[[Sequence[str]], int],
            record: Callable[[PlannedRun, list[str], int, float], None],
            estimate: Callable[[Sequence[PlannedRun]], float | None] = lambda left: None,
            who: str = "plan", retrain_parents: bool = False) -> tuple[list[tuple[str, int | None]], bool]:
    """Train the unfinished runs of ``plan`` in order; ``runner`` trains one from its arguments and
    ``record`` logs it.

    ``retrain_parents``: a branch whose parent has no epoch checkpoint to branch from (its light
    files came without them) trains the parent again first. Returns the runs that did not finish,
    as ``(name, exit code)`` (``None``: it waits for its parent), and whether the user stopped the
    plan (Ctrl-C, SIGTERM), which ends it at once.
    """
    failed: list[tuple[str, int | None]] = []
    finished = sum(r.finished for r in plan)
    print(f"{who}: {finished} of {len(plan)} runs already finished" + (" (skipped)" if finished else ""), flush=True)
    for i, run in enumerate(plan, 1):
        if run.finished:
            continue
        parent = run.parent
        if parent is not None and not run.started:
            if (retrain_parents and not RunPaths(parent.folder).epoch_checkpoints()
                    and parent.name not in {name for name, _ in failed}):
                print(f"\n{who}: {parent.name} has no checkpoint for {run.name} to branch from: "
                      "training it again", flush=True)
                RunPaths(parent.folder).eval.unlink(missing_ok=True)
                code = _train(parent, runner, record, who)
                if code in STOPPED:
                    print(f"{who}: {parent.name} was stopped (exit code {code}); run the same command "
                          "again to resume it", flush=True)
                    return failed + [(parent.name, code)], True
                if code != 0 or not parent.finished:
                    failed.append((parent.name, code or 1))
            if not parent.finished:
                print(f"{who}: {run.name} waits: its parent {parent.name} did not finish", flush=True)
                failed.append((run.name, None))
                continue
        left = [r for r in plan if not r.finished]
        print(f"\n{who}: run {i} of {len(plan)}: {run.name}"
              + (f" (from {parent.name} at the switch epoch)" if parent is not None else "")
              + f"; {len(plan) - len(left)} done, {len(left)} left, time left {duration(estimate(left))}",
              flush=True)
        code = _train(run, runner, record, who)
        if code in STOPPED:
            print(f"{who}: {run.name} was stopped (exit code {code}); run the same command again to resume it",
                  flush=True)
            return failed + [(run.name, code)], True
        if code != 0 or not run.finished:
            print(f"{who}: {run.name} failed (exit code {code}, its message is above); the other runs go on, "
                  "and the same command again retries it", flush=True)
            failed.append((run.name, code or 1))
    return failed, False
