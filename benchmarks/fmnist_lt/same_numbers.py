"""Do two commits train the same numbers? A short run of every method the evidence study trains.

    python benchmarks/fmnist_lt/same_numbers.py c3b67b0 3e2c256

Each commit's tree is exported with ``git archive`` into a temporary folder (no worktree, no
change to this checkout), and its own ``src`` and ``configs`` train, on one CPU thread, the main
cell's ERM, RS, logit adjustment and LDAM-DRW for a few epochs on a small subset, then DRS and OPeN
branched from ERM and OPeN branched from each loss, as ``evidence.py`` does. Every eval.json and
metrics.jsonl value is compared, apart from timing and provenance. CPU runs repeat bit for bit on
one CPU model, so "identical" here means the two commits do the same arithmetic.

The verdict goes to ``same_numbers.json`` beside this file (RESULTS.md quotes it) and is printed.
Exit status: 0 identical, 1 different.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
OUT = HERE / "same_numbers.json"
CELL = "fmnist_lt_r100_n1000_w2"
SHORT = ("epochs=4", "defer_epoch=2", "milestones=[3]", "warmup_epochs=0", "dataset_options.n_max=200",
         "progress=false", "memorization=true")
# (run, parent): the study's methods, each branch after its parent.
RUNS = (("erm", None), ("rs", None), ("erm_logit_adjust", None), ("erm_ldam_drw", None), ("drs", "erm"),
        ("open", "erm"), ("open_logit_adjust", "erm_logit_adjust"), ("open_ldam_drw", "erm_ldam_drw"))


def _strip(d):
    """A JSON value without the keys that differ between identical runs (timing, provenance)."""
    if isinstance(d, dict):
        return {k: _strip(v) for k, v in d.items()
                if k not in ("provenance", "from", "elapsed") and not any(w in k for w in ("second", "time", "per_s"))}
    if isinstance(d, list):
        return [_strip(x) for x in d]
    return d


def export(commit: str, into: Path) -> str:
    """Write the tree of ``commit`` into ``into``; return the full commit hash."""
    full = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{commit}^{{commit}}"],
                          capture_output=True, text=True)
    if full.returncode:
        raise SystemExit(f"same_numbers.py: {commit!r} is not a commit of {REPO}; name one (git log)")
    tar = subprocess.run(["git", "-C", str(REPO), "archive", full.stdout.strip(), "src", "configs"],
                         capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(into, filter="data")
    return full.stdout.strip()


def train(tree: Path, out: Path) -> None:
    """Train every run of RUNS with the code and configs of ``tree`` into ``out``."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "OMP_NUM_THREADS": "1"}
    sets = [a for s in SHORT for a in ("--set", s)]
    for run, parent in RUNS:
        cmd = [sys.executable, "-m", "purenoise", "train", "--config", str(tree / "configs" / CELL / f"{run}.yaml"),
               *sets, "--out", str(out / run)]
        if parent:
            cmd += ["--init-from", str(out / parent)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode:
            raise SystemExit(f"same_numbers.py: {run} failed with {tree.name}'s code:\n{done.stderr[-2000:]}")


def compare(a: Path, b: Path) -> list[dict]:
    """Per run: whether eval.json and metrics.jsonl agree (timing and provenance left out)."""
    rows = []
    for run, _ in RUNS:
        ea, eb = (_strip(json.loads((d / run / "eval.json").read_text())) for d in (a, b))
        ma, mb = ([_strip(json.loads(x)) for x in (d / run / "metrics.jsonl").read_text().splitlines()]
                  for d in (a, b))
        keys = sorted(k for k in set(ea) | set(eb) if ea.get(k) != eb.get(k))
        lines = [i for i, (x, y) in enumerate(zip(ma, mb)) if x != y] + ([-1] if len(ma) != len(mb) else [])
        rows.append({"run": run, "identical": not keys and not lines, "eval_keys_differing": keys,
                     "metrics_lines_differing": lines, "top1": [ea.get("top1"), eb.get("top1")]})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    args = ap.parse_args(argv)
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="same_numbers_") as tmp:
        commits = {}
        for tag, commit in (("old", args.old), ("new", args.new)):
            (Path(tmp) / tag).mkdir()
            commits[tag] = export(commit, Path(tmp) / tag)
            train(Path(tmp) / tag, Path(tmp) / f"{tag}_runs")
        rows = compare(Path(tmp) / "old_runs", Path(tmp) / "new_runs")
    same = all(r["identical"] for r in rows)
    from purenoise.fileio import atomic_write_json
    from purenoise.provenance import cpu_model

    atomic_write_json(OUT, {"old": commits["old"], "new": commits["new"], "cell": CELL, "settings": list(SHORT),
                            "runs": rows, "identical": same, "cpu": cpu_model(),
                            "torch_threads": 1, "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                            "wall_s": round(time.time() - start, 1)})
    for r in rows:
        print(f"{r['run']:>18}: {'identical' if r['identical'] else 'DIFFERENT'}  top-1 {r['top1'][0]} / {r['top1'][1]}")
    print(f"{commits['old'][:7]} and {commits['new'][:7]}: {'IDENTICAL' if same else 'DIFFERENT'} -> {OUT}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
