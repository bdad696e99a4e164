"""The runs of ``purenoise compare`` and how they are trained: one process each, resumable.

Per seed, ERM is trained first; DRS and OPeN start from its checkpoint at the defer epoch
(``--init-from``), so the first phase they share is trained once; RS is trained from scratch.
Each run is its own ``python -m purenoise train`` process: a crash of one run does not stop
the others (its branches wait for the next invocation), a run with ``eval.json`` is skipped,
and an interrupted run continues with ``--resume auto``. Each run's command, exit code and
seconds go to ``compare_log.jsonl``, whose timings estimate the time left.
"""
from __future__ import annotations

import json
import math
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from purenoise.config import SCHEMA, SHARED, parse_override
from purenoise.errors import ConfigError
from purenoise.fileio import atomic_write_text
from purenoise.run_paths import RunPaths

__all__ = ["METHODS", "BRANCHED", "Method", "RunSpec", "parse_methods", "make_plan", "run_command",
           "launch", "read_log", "estimate_left", "train_plan", "LOG_FILE", "CONFIG_FILE", "VERDICT_FILE"]

METHODS = ("erm", "rs", "drs", "open")
BRANCHED = ("drs", "open")  # train exactly like ERM until the defer epoch
LABELS = {"erm": "ERM", "rs": "RS", "drs": "DRS", "open": "OPeN"}
CONFIG_FILE, LOG_FILE, VERDICT_FILE = "compare_config.yaml", "compare_log.jsonl", "verdict.md"
#: Exit codes that mean the user stopped the plan (Ctrl-C, SIGTERM): it stops, to resume later.
STOPPED = (130, 143, -2, -15)


@dataclass(frozen=True)
class Method:
    """A method of the comparison: a scheme, optionally with one config key changed (a variant)."""

    base: str
    key: str | None = None
    value: str | None = None

    @property
    def name(self) -> str:
        """The folder stem: ``open``, ``open_bn_mode-aux``."""
        if self.key is None:
            return self.base
        text = re.sub(r"[^A-Za-z0-9_.]+", "-", f"{self.key}-{self.value}").replace("..", "-")
        return f"{self.base}_{text}"

    @property
    def label(self) -> str:
        """How a verdict names it: ``OPeN``, ``OPeN (bn_mode=aux)``."""
        return LABELS[self.base] + ("" if self.key is None else f" ({self.key}={self.value})")

    def overrides(self) -> list[str]:
        return [f"method={self.base}"] + ([] if self.key is None else [f"{self.key}={self.value}"])


def _check_variant(text: str, base: str, key: str) -> None:
    """A variant changes one key a run may have of its own (not the seed, not the method)."""
    top = key.split(".", 1)[0]
    if top not in SCHEMA or ("." in key and not top.endswith("_options")):
        raise ConfigError(f"--methods {text}: {key!r} is not a config key (see src/purenoise/config.py)")
    if top in ("method", "seed", "name"):
        raise ConfigError(f"--methods {text}: compare sets {top!r} for each run itself; a variant changes another key")
    if base in BRANCHED and SCHEMA[top].scope == SHARED:
        raise ConfigError(
            f"--methods {text}: {top!r} shapes the first phase that {LABELS[base]} shares with its ERM parent, "
            f"so a branch cannot change it; give it with --set for every run, or compare it in another --out")


def parse_methods(text: str) -> list[Method]:
    """``erm,rs,drs,open`` and variants ``open:KEY=VALUE`` (one key each) as methods, in order given."""
    out: list[Method] = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        base, _, variant = item.partition(":")
        base = base.strip().lower()
        if base not in METHODS:
            raise ConfigError(f"--methods: unknown method {base!r} in {text!r}; choose among {', '.join(METHODS)} "
                              "(a variant: open:KEY=VALUE, e.g. open:bn_mode=aux)")
        method = Method(base)
        if variant:
            key, value = parse_override(variant)
            _check_variant(item, base, key)
            method = Method(base, key, variant.split("=", 1)[1].strip())
        if method not in out:
            out.append(method)
    if not out:
        raise ConfigError(f"--methods {text!r} names no method; choose among {', '.join(METHODS)}")
    return out


@dataclass(frozen=True)
class RunSpec:
    """One run of the plan: a method and a seed, and the run it branches from (if any)."""

    method: Method
    seed: int
    parent: str | None = None  # the name of the ERM run it branches from

    @property
    def name(self) -> str:
        return f"{self.method.name}_s{self.seed}"

    @property
    def kind(self) -> str:
        """``branch`` (trained from the defer epoch on) or ``full``: their times differ."""
        return "branch" if self.parent else "full"


def make_plan(methods: Sequence[Method], seeds: int, defer_epoch: int | None) -> list[RunSpec]:
    """The runs, seed by seed: ERM, its branches, then the runs trained from scratch.

    DRS and OPeN branch from the ERM run of their seed when the switch comes after epoch 0; ERM is
    trained for them when it was not asked for.
    """
    branching = defer_epoch is not None and defer_epoch > 0
    erm = Method("erm")
    need_erm = branching and any(m.base in BRANCHED for m in methods)
    ordered = ([erm] if erm in methods or need_erm else []) + [m for m in methods if m != erm]
    specs = []
    for seed in range(seeds):
        first = [RunSpec(m, seed, f"erm_s{seed}" if branching and m.base in BRANCHED else None) for m in ordered]
        specs += sorted(first, key=lambda s: (s.method != erm, s.parent is None))
    return specs


def run_command(spec: RunSpec, out: Path, config: Path) -> list[str]:
    """The ``purenoise train`` arguments of a run: a new run, a branch, or a resumed one."""
    folder = out / spec.name
    argv = ["train", "--config", str(config), *(x for kv in spec.method.overrides() for x in ("--set", kv)),
            "--set", f"seed={spec.seed}", "--set", f"name={spec.name}", "--out", str(folder)]
    if RunPaths(folder).last_checkpoint.exists():
        return argv + ["--resume", "auto"]  # its branch point, if any, is inside
    if spec.parent:
        argv += ["--init-from", str(out / spec.parent)]
    return argv


def _child_env() -> dict[str, str]:
    """The environment of a run: this purenoise first on the path, so every run is the same code."""
    import purenoise

    env = dict(os.environ)
    src = str(Path(purenoise.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


def launch(argv: Sequence[str]) -> int:
    """Run ``python -m purenoise ARGV`` in a process of its own; its exit code.

    A Ctrl-C reaches the run too, which saves a checkpoint and exits: it is waited for, not killed.
    """
    proc = subprocess.Popen([sys.executable, "-m", "purenoise", *argv], env=_child_env())
    try:
        return proc.wait()
    except KeyboardInterrupt:
        return proc.wait()


def read_log(path: Path) -> list[dict[str, Any]]:
    """The entries of ``compare_log.jsonl``; lines that are not JSON objects are ignored."""
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


def _append_log(path: Path, entry: dict[str, Any]) -> None:
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


def estimate_left(left: Sequence[RunSpec], log: Sequence[dict[str, Any]]) -> float | None:
    """Seconds the runs ``left`` should take: per kind, the mean time of the finished runs of that
    kind (branches are much cheaper than full runs) times how many are left; ``None`` while a kind
    left has no finished run to go by."""
    done: dict[str, list[float]] = {}
    for e in log:
        if e.get("exit_code") == 0 and e.get("kind") in ("full", "branch") and _seconds(e) is not None:
            done.setdefault(e["kind"], []).append(_seconds(e))
    total = 0.0
    for spec in left:
        times = done.get(spec.kind)
        if not times:
            return None
        total += sum(times) / len(times)
    return total


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    return f"about {seconds / 60:.1f} min" if seconds >= 60 else f"about {seconds:.0f} s"


def train_plan(plan: Sequence[RunSpec], out: Path, config: Path,
               runner: Callable[[Sequence[str]], int] | None = None) -> tuple[list[tuple[str, int | None]], bool]:
    """Train the unfinished runs of ``plan`` in order.

    Returns the runs that did not finish, as ``(name, exit code)`` (``None``: it waits for its
    parent), and whether the user stopped the plan (Ctrl-C, SIGTERM), which ends it at once.
    """
    runner = runner or launch
    log_path = out / LOG_FILE
    failed: list[tuple[str, int | None]] = []
    finished = sum(RunPaths(out / s.name).eval.exists() for s in plan)
    print(f"compare: {finished} of {len(plan)} runs already finished" + (" (skipped)" if finished else ""), flush=True)
    for i, spec in enumerate(plan, 1):
        folder = out / spec.name
        if RunPaths(folder).eval.exists():
            continue
        started = RunPaths(folder).last_checkpoint.exists()
        if spec.parent and not started and not RunPaths(out / spec.parent).eval.exists():
            print(f"compare: {spec.name} waits: its parent {spec.parent} did not finish", flush=True)
            failed.append((spec.name, None))
            continue
        left = [s for s in plan if not RunPaths(out / s.name).eval.exists()]
        when = _duration(estimate_left(left, read_log(log_path)))
        print(f"\ncompare: run {i} of {len(plan)}: {spec.name}"
              + (f" (from {spec.parent} at the switch epoch)" if spec.parent else "")
              + f"; {len(plan) - len(left)} done, {len(left)} left, time left {when}", flush=True)
        argv = run_command(spec, out, config)
        print("compare: purenoise " + " ".join(shlex.quote(a) for a in argv), flush=True)
        t0 = time.perf_counter()
        code = runner(argv)
        seconds = time.perf_counter() - t0
        _append_log(log_path, {"run": spec.name, "command": "purenoise " + " ".join(shlex.quote(a) for a in argv),
                               "exit_code": code, "seconds": round(seconds, 1), "kind": spec.kind,
                               "parent": spec.parent, "resumed": "--resume" in argv,
                               "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
        if code in STOPPED:
            print(f"compare: {spec.name} was stopped (exit code {code}); run the same command again to resume it",
                  flush=True)
            return failed + [(spec.name, code)], True
        if code != 0 or not RunPaths(folder).eval.exists():
            print(f"compare: {spec.name} failed (exit code {code}, its message is above); the other runs go on, "
                  "and the same command again retries it", flush=True)
            failed.append((spec.name, code or 1))
    return failed, False
