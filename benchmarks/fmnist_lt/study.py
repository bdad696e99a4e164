"""The Fashion-MNIST-LT study: the paper's claims tested on real data on a CPU.

Plans (each a list of runs; a run is a shipped config plus a seed, and DRS/OPeN variants branch
from the ERM run of the same seed at the defer epoch instead of retraining the shared phase):

- ``demo``: ratio 100, seed 0: ERM, DRS and OPeN (``make demo``).
- ``main``: ratios 100 and 50, seeds 0-2: ERM, RS, DRS, OPeN.
- ``ablation``: ratio 100, seeds 0-2: OPeN with standard BN, auxiliary BN, DAR-BN with
  ``noise_grad: features`` (DAR-BN ``classifier`` is the ``main`` plan's OPeN run).
- ``delta``: ratio 100, seeds 0-2: delta = 1/6 ... 6/6 (2/6 is the ``main`` plan's OPeN run).
- ``all``: every plan.

Finished runs (with an eval.json) are skipped, interrupted ones resume, so the study can be
stopped and restarted at any time. Each run's command and wall time go to ``study_log.jsonl``;
``results.py`` writes RESULTS.md from the run folders.

    python benchmarks/fmnist_lt/study.py --plan all --runs runs/fmnist_lt
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SEEDS = (0, 1, 2)


@dataclass(frozen=True)
class RunSpec:
    """One training run of the study."""

    setting: str  # configs/<setting>/
    method: str  # configs/<setting>/<method>.yaml
    seed: int
    parent: str | None = None  # method of the run to branch from (same setting and seed)

    @property
    def name(self) -> str:
        return f"{self.method}_s{self.seed}"

    def folder(self, runs: Path) -> Path:
        return runs / self.setting / self.name

    def command(self, runs: Path, extra: tuple[str, ...] = ()) -> list[str]:
        cmd = ["purenoise", "train", "--config", f"configs/{self.setting}/{self.method}.yaml",
               "--set", f"seed={self.seed}", "--set", f"name={self.setting}_{self.name}",
               "--out", str(self.folder(runs))]
        if self.parent:
            cmd += ["--init-from", str(runs / self.setting / f"{self.parent}_s{self.seed}")]
        return cmd + list(extra)


def plan(name: str) -> list[RunSpec]:
    """The runs of a plan, parents before their branches."""
    if name == "demo":
        s = "fmnist_lt_r100"
        return [RunSpec(s, "erm", 0), RunSpec(s, "drs", 0, "erm"), RunSpec(s, "open", 0, "erm")]
    runs: list[RunSpec] = []
    if name in ("main", "all"):
        for setting in ("fmnist_lt_r100", "fmnist_lt_r50"):
            for seed in SEEDS:
                runs += [RunSpec(setting, "erm", seed), RunSpec(setting, "rs", seed),
                         RunSpec(setting, "drs", seed, "erm"), RunSpec(setting, "open", seed, "erm")]
    if name in ("ablation", "all"):
        for seed in SEEDS:
            runs += [RunSpec("fmnist_lt_r100", "erm", seed)]
            runs += [RunSpec("fmnist_lt_r100", m, seed, "erm")
                     for m in ("open_bn_standard", "open_bn_aux", "open_features")]
    if name in ("delta", "all"):
        for seed in SEEDS:
            runs += [RunSpec("fmnist_lt_r100", "erm", seed)]
            runs += [RunSpec("fmnist_lt_r100", f"open_delta_{k}of6", seed, "erm") for k in (1, 3, 4, 5, 6)]
    if not runs:
        raise SystemExit(f"unknown plan {name!r}; choose demo, main, ablation, delta or all")
    seen: set[RunSpec] = set()
    return [r for r in runs if not (r in seen or seen.add(r))]


def run_one(spec: RunSpec, runs: Path, extra: tuple[str, ...], log: Path) -> float:
    """Train one run in this process (resuming it if it was interrupted); returns seconds."""
    from purenoise.cli import main

    out = spec.folder(runs)
    argv = spec.command(runs, extra)[1:]
    if (out / "checkpoints" / "last.pt").exists():
        # An interrupted run continues where it stopped (its branch point is already inside).
        i = argv.index("--init-from") if "--init-from" in argv else -1
        if i >= 0:
            del argv[i:i + 2]
        argv += ["--resume", "auto"]
    print(f"\n=== {spec.setting}/{spec.name}: {' '.join(shlex.quote(a) for a in ['purenoise', *argv])}",
          flush=True)
    t0 = time.perf_counter()
    code = main(argv)
    seconds = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"run {out} failed with exit code {code}")
    entry = {"run": str(out), "command": " ".join(spec.command(runs, extra)), "seconds": seconds,
             "parent": spec.parent, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    with log.open("a") as f:
        f.write(json.dumps(entry) + "\n")
    return seconds


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--plan", default="all")
    ap.add_argument("--runs", default="runs/fmnist_lt", help="folder of the run folders")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra config override for every run (e.g. epochs=2 for a smoke test)")
    ap.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = ap.parse_args(argv)
    os.chdir(REPO)
    runs = Path(args.runs)
    extra = tuple(x for kv in args.set for x in ("--set", kv))
    specs = plan(args.plan)
    todo = [s for s in specs if not (s.folder(runs) / "eval.json").exists()]
    print(f"plan {args.plan}: {len(specs)} runs, {len(specs) - len(todo)} already done", flush=True)
    if args.dry_run:
        for s in todo:
            print(" ".join(shlex.quote(a) for a in s.command(runs, extra)))
        return 0
    runs.mkdir(parents=True, exist_ok=True)
    total = 0.0
    for i, spec in enumerate(todo, 1):
        print(f"[{i}/{len(todo)}]", end="", flush=True)
        total += run_one(spec, runs, extra, runs / "study_log.jsonl")
    print(f"\n{len(todo)} runs trained in {total / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
