"""The runs of ``purenoise compare`` and how they are trained: one process each, resumable.

Per seed, ERM is trained first; DRS and OPeN start from its checkpoint at the defer epoch
(``--init-from``), so the first phase they share is trained once; RS is trained from scratch.
Each run is its own ``python -m purenoise train`` process: a crash of one run does not stop
the others (its branches wait for the next invocation), a run with ``eval.json`` is skipped,
and an interrupted run continues with ``--resume auto``. Each run's command, exit code and
seconds go to ``compare_log.jsonl``, whose timings estimate the time left. The executor itself,
shared with the Fashion-MNIST study scripts, is :func:`purenoise.plans.execute`.
"""
from __future__ import annotations

import os
import re
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from purenoise.config import SCHEMA, SHARED, parse_override
from purenoise.errors import ConfigError
from purenoise import plans
from purenoise.plans import STOPPED, PlannedRun, read_log  # noqa: F401 (STOPPED, read_log: re-exported)

__all__ = ["METHODS", "BRANCHED", "Method", "RunSpec", "parse_methods", "make_plan", "run_command",
           "launch", "read_log", "estimate_left", "train_plan", "LOG_FILE", "CONFIG_FILE", "VERDICT_FILE"]

METHODS = ("erm", "rs", "drs", "open")
BRANCHED = ("drs", "open")  # train exactly like ERM until the defer epoch
LABELS = {"erm": "ERM", "rs": "RS", "drs": "DRS", "open": "OPeN"}
CONFIG_FILE, LOG_FILE, VERDICT_FILE = "compare_config.yaml", "compare_log.jsonl", "verdict.md"


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


def run_command(spec: RunSpec, out: Path, config: Path, fresh: bool = False) -> list[str]:
    """The ``purenoise train`` arguments of a run: a new run, a branch, or a resumed one
    (``fresh``: as if it had not started)."""
    folder = out / spec.name
    argv = ["train", "--config", str(config), *(x for kv in spec.method.overrides() for x in ("--set", kv)),
            "--set", f"seed={spec.seed}", "--set", f"name={spec.name}", "--out", str(folder)]
    if spec.parent:
        argv += ["--init-from", str(out / spec.parent)]
    if fresh:
        return argv
    return plans.command(PlannedRun(spec.name, folder, tuple(argv)))  # a resumed run's branch point is inside


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
    return plans.launch(argv, _child_env())


def estimate_left(left: Sequence[RunSpec], log: Sequence[dict[str, Any]]) -> float | None:
    """Seconds the runs ``left`` should take: per kind, the mean time of the finished runs of that
    kind (branches are much cheaper than full runs) times how many are left; ``None`` while a kind
    left has no finished run to go by."""
    return plans.estimate_left(left, log, lambda e: e.get("kind") if e.get("kind") in ("full", "branch") else None)


def train_plan(plan: Sequence[RunSpec], out: Path, config: Path,
               runner: Callable[[Sequence[str]], int] | None = None) -> tuple[list[tuple[str, int | None]], bool]:
    """Train the unfinished runs of ``plan`` in order.

    Returns the runs that did not finish, as ``(name, exit code)`` (``None``: it waits for its
    parent), and whether the user stopped the plan (Ctrl-C, SIGTERM), which ends it at once.
    """
    runner = runner or launch
    log_path = out / LOG_FILE
    planned: dict[str, PlannedRun] = {}
    for spec in plan:
        parent = None
        if spec.parent:
            parent = planned.get(spec.parent) or PlannedRun(spec.parent, out / spec.parent, ())
        planned[spec.name] = PlannedRun(spec.name, out / spec.name, tuple(run_command(spec, out, config, fresh=True)),
                                        parent, spec.kind, spec)
    runs = [planned[spec.name] for spec in plan]

    def record(run: PlannedRun, argv: list[str], code: int, seconds: float) -> None:
        plans.append_log(log_path, {"run": run.name, "command": "purenoise " + " ".join(shlex.quote(a) for a in argv),
                                    "exit_code": code, "seconds": round(seconds, 1), "kind": run.kind,
                                    "parent": run.spec.parent, "resumed": "--resume" in argv,
                                    "finished": time.strftime("%Y-%m-%d %H:%M:%S")})

    return plans.execute(runs, runner, record, lambda left: estimate_left(left, read_log(log_path)), who="compare")
