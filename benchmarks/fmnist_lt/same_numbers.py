"""Do two commits train the same numbers? Short runs of every method the evidence study trains.

    python benchmarks/fmnist_lt/same_numbers.py OLD NEW [--threads 2]

Each commit's tree is exported with ``git archive`` into a temporary folder (no worktree, no
change to this checkout), and its own ``src`` and ``configs`` train (checked: each run imports
``purenoise`` from that tree) a few epochs on a small subset of each cell of :data:`CELLS`: the
full-schedule methods first, then DRS and OPeN branched from ERM and OPeN branched from each loss,
as ``evidence.py`` does. Every eval.json and metrics.jsonl value is compared except the ones that
differ between two identical runs (:data:`VOLATILE`). CPU runs repeat bit for bit on one CPU model
and thread count, so "identical" means the two commits do the same arithmetic.

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
SHORT = ("epochs=4", "defer_epoch=2", "milestones=[3]", "warmup_epochs=0", "dataset_options.n_max=200",
         "progress=false", "memorization=true")
# (run, parent) per cell: the methods the evidence study trains there, each branch after its parent.
BRANCHES = (("drs", "erm"), ("open", "erm"))
CELLS = {
    "fmnist_lt_r100_n1000_w2": (("erm", None), ("rs", None), ("erm_logit_adjust", None), ("erm_ldam_drw", None),
                                *BRANCHES, ("open_logit_adjust", "erm_logit_adjust"),
                                ("open_ldam_drw", "erm_ldam_drw")),
    "fmnist_lt_r100_n1000_w2_wd2e3": (("erm", None), *BRANCHES),
    "fmnist_lt_r100_long": (("erm", None), ("rs", None), *BRANCHES),
    "fmnist_lt_r100_long_noaug": (("erm", None), *BRANCHES),
}
# What differs between two identical runs, and nothing else: eval.json's provenance and the path a
# branch was made from; metrics.jsonl's epoch timing.
VOLATILE = {"eval": {"provenance"}, "eval.branch": {"from"}, "metrics": {"time_s", "images_per_s"}}


def stop(message: str) -> None:
    """Say what is wrong and what to do, and exit with status 2 (no traceback)."""
    print(f"same_numbers.py: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _strip(d: dict, where: str) -> dict:
    out = {k: v for k, v in d.items() if k not in VOLATILE.get(where, ())}
    return {k: _strip(v, f"{where}.{k}") if isinstance(v, dict) else v for k, v in out.items()}


def export(commit: str, into: Path) -> str:
    """Write the tree of ``commit`` into ``into``; return the full commit hash."""
    full = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{commit}^{{commit}}"],
                          capture_output=True, text=True)
    if full.returncode:
        stop(f"{commit!r} is not a commit of {REPO}; name one (git log)")
    tar = subprocess.run(["git", "-C", str(REPO), "archive", full.stdout.strip(), "src", "configs"],
                         capture_output=True)
    if tar.returncode:
        stop(f"commit {commit} has no src/ and configs/ to train with: {tar.stderr.decode().strip()}")
    tar = tar.stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as t:
        t.extractall(into, filter="data")
    return full.stdout.strip()


def _env(tree: Path, threads: int) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(tree / "src"), "OMP_NUM_THREADS": str(threads)}


def imported_from(tree: Path, threads: int) -> str:
    """Where the runs of ``tree`` import purenoise from; stops unless it is ``tree/src``."""
    done = subprocess.run([sys.executable, "-c", "import purenoise; print(purenoise.__file__)"], cwd=tree,
                          env=_env(tree, threads), capture_output=True, text=True)
    where = Path(done.stdout.strip()).resolve() if done.returncode == 0 else None
    if where is None or not where.is_relative_to((tree / "src").resolve()):
        stop(f"the runs of {tree} would import purenoise from {where or 'nowhere'}, not from {tree / 'src'}; "
             "unset anything that puts another copy first (PYTHONPATH, a .pth file)")
    return str(where.relative_to(tree.resolve()))


def train(tree: Path, out: Path, threads: int) -> None:
    """Train every run of CELLS with the code and configs of ``tree`` into ``out/<cell>/<run>``."""
    sets = [a for s in SHORT for a in ("--set", s)]
    for cell, runs in CELLS.items():
        for run, parent in runs:
            cmd = [sys.executable, "-m", "purenoise", "train", "--config", str(tree / "configs" / cell / f"{run}.yaml"),
                   *sets, "--out", str(out / cell / run)]
            if parent:
                cmd += ["--init-from", str(out / cell / parent)]
            done = subprocess.run(cmd, cwd=tree, env=_env(tree, threads), capture_output=True, text=True)
            if done.returncode:
                stop(f"{cell}/{run} failed with {tree.name}'s code:\n{done.stderr[-2000:]}")


def compare(a: Path, b: Path) -> list[dict]:
    """Per run: whether eval.json and metrics.jsonl agree (:data:`VOLATILE` left out)."""
    rows = []
    for cell, runs in CELLS.items():
        for run, _ in runs:
            ea, eb = (_strip(json.loads((d / cell / run / "eval.json").read_text()), "eval") for d in (a, b))
            ma, mb = ([_strip(json.loads(x), "metrics") for x in (d / cell / run / "metrics.jsonl").read_text()
                       .splitlines()] for d in (a, b))
            keys = sorted(k for k in set(ea) | set(eb) if ea.get(k) != eb.get(k))
            lines = [i for i, (x, y) in enumerate(zip(ma, mb)) if x != y] + ([-1] if len(ma) != len(mb) else [])
            rows.append({"cell": cell, "run": run, "identical": not keys and not lines, "eval_keys_differing": keys,
                         "metrics_lines_differing": lines, "top1": [ea.get("top1"), eb.get("top1")]})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads per run (the study's: 2)")
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error(f"--threads {args.threads}: give 1 or more")
    start = time.time()
    with tempfile.TemporaryDirectory(prefix="same_numbers_") as tmp:
        commits, imported = {}, {}
        for tag, commit in (("old", args.old), ("new", args.new)):
            (Path(tmp) / tag).mkdir()
            commits[tag] = export(commit, Path(tmp) / tag)
            imported[tag] = imported_from(Path(tmp) / tag, args.threads)
            train(Path(tmp) / tag, Path(tmp) / f"{tag}_runs", args.threads)
        rows = compare(Path(tmp) / "old_runs", Path(tmp) / "new_runs")
    same = all(r["identical"] for r in rows)
    from purenoise.fileio import atomic_write_json
    from purenoise.provenance import cpu_model

    atomic_write_json(OUT, {"old": commits["old"], "new": commits["new"], "cells": list(CELLS),
                            "settings": list(SHORT), "purenoise_imported_from": imported, "runs": rows,
                            "identical": same, "cpu": cpu_model(), "torch_threads": args.threads,
                            "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
                            "wall_s": round(time.time() - start, 1)})
    for r in rows:
        print(f"{r['cell'] + '/' + r['run']:>48}: {'identical' if r['identical'] else 'DIFFERENT'}  "
              f"top-1 {r['top1'][0]} / {r['top1'][1]}")
    print(f"{commits['old'][:7]} and {commits['new'][:7]}: {'IDENTICAL' if same else 'DIFFERENT'} -> {OUT}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
