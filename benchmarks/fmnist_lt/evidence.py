"""The evidence study: is "OPeN pays off where the network memorizes" true, and against what?

The hypotheses, comparisons and analysis are fixed in ``PREREGISTRATION.md`` beside this file,
committed before any run of this study finished. The runs are the regime study's (``study.py``):
a shipped config plus a seed (and a long-tailed subset), DRS and OPeN branched from their parent
at the defer epoch, each run its own resumable process, logged to ``study_log.jsonl``. Parts, in
the order ``--part all`` trains them:

- ``pilots``: ERM and DRS, seed 0, of every candidate twin (one config change each).
- ``choose``: writes ``twins.json``: per data size, the candidate the rule picks from the pilots'
  training-set diagnostic alone (the DRS run's minority-half training accuracy). No OPeN run of a
  twin exists at that point, and the choice is never rewritten.
- ``primary``: the chosen twins' ERM, DRS and OPeN, seeds 0-4, and the long cell's seeds 3-4.
- ``baselines``: the main cell, seeds 0-9: ERM, RS, DRS, OPeN, logit adjustment (= Balanced
  Softmax), LDAM-DRW, and OPeN branched from each loss's run.
- ``subsets``: the main and the long cell on the long-tailed subsets ``subset_seed`` 10-13, ERM,
  RS, DRS and OPeN, seed 0.

    python benchmarks/fmnist_lt/evidence.py                 # every part, in order, resumable
    python benchmarks/fmnist_lt/evidence.py --part primary  # one part
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import study  # noqa: E402
import study_plan  # noqa: E402
from study_plan import RunSpec  # noqa: E402
from purenoise.run_paths import RunPaths  # noqa: E402

# The two cells of the regime study the hypotheses are about (PREREGISTRATION.md): MAIN's DRS runs
# memorize their minority half, LONG's do not (RESULTS.md has their figures).
MAIN = "fmnist_lt_r100_n1000_w2"  # n_max 1000, widths x2
LONG = "fmnist_lt_r100_long"  # n_max 6000, widths x1
# Candidate twins, one config change each; the rule picks one per data size from the pilots.
CANDIDATES = {
    MAIN: ("fmnist_lt_r100_n1000_w2_cutout", "fmnist_lt_r100_n1000_w2_wd1e3", "fmnist_lt_r100_n1000_w2_wd2e3"),
    LONG: ("fmnist_lt_r100_long_noaug",),
}
# The twin of MAIN must memorize less (the lowest value wins), that of LONG more (the highest).
DIRECTION = {MAIN: "lower", LONG: "higher"}
TWINS_FILE = "twins.json"
PRIMARY_SEEDS = (0, 1, 2, 3, 4)
BASELINE_SEEDS = tuple(range(10))
SUBSETS = (10, 11, 12, 13)
LOSSES = ("logit_adjust", "ldam_drw")  # configs erm_<loss>.yaml (the baseline) and open_<loss>.yaml
PAIRED = ("erm", "drs", "open")
PARTS = ("pilots", "choose", "primary", "baselines", "subsets")


def drs_minority_train(runs: Path, cell: str, seed: int = 0) -> float | None:
    """The minority-half training accuracy of a cell's DRS run at its end (None if not finished)."""
    from purenoise.reporting.summary import minority_half_accuracy

    path = RunPaths(RunSpec(cell, "drs", seed).folder(runs)).eval
    if not path.exists():
        return None
    ev = json.loads(path.read_text())
    return minority_half_accuracy(ev["train_per_class_acc"], ev["class_counts"])


def pilots() -> list[RunSpec]:
    """ERM and DRS, seed 0, of every candidate twin."""
    return [RunSpec(c, m, 0, "erm" if m == "drs" else None)
            for cands in CANDIDATES.values() for c in cands for m in ("erm", "drs")]


def choose(runs: Path) -> dict | None:
    """Write ``twins.json`` once every pilot has finished (never rewritten); return the choice."""
    target = runs / TWINS_FILE
    if target.exists():
        return json.loads(target.read_text())
    out = {"rule": ("per data size, the candidate whose seed-0 DRS run has the lowest (n_max 1000 twin) "
                    "or highest (n_max 6000 twin) minority-half training accuracy at its end; the first "
                    "candidate in the pre-registered order on a tie"), "twins": {}}
    for cell, cands in CANDIDATES.items():
        values = {c: drs_minority_train(runs, c) for c in cands}
        if any(v is None for v in values.values()):
            print(f"choose: pilots of {cell}'s twin not finished ({values}); nothing chosen yet")
            return None
        pick = (min if DIRECTION[cell] == "lower" else max)(cands, key=lambda c: values[c])
        out["twins"][cell] = {"twin": pick, "direction": DIRECTION[cell],
                              "drs_minority_train": values, "cell_drs_minority_train": drs_minority_train(runs, cell)}
    out["decided"] = time.strftime("%Y-%m-%d %H:%M:%S")
    runs.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(out, indent=2) + "\n")
    print(f"choose: wrote {target}: " + ", ".join(f"{k} -> {v['twin']}" for k, v in out["twins"].items()))
    return out


def twins(runs: Path) -> dict[str, str]:
    """``{cell: chosen twin}`` from ``twins.json`` (empty before the choice)."""
    path = runs / TWINS_FILE
    return {k: v["twin"] for k, v in json.loads(path.read_text())["twins"].items()} if path.exists() else {}


def part(name: str, runs: Path, quiet: bool = False) -> list[RunSpec]:
    """The runs of one part, parents before their branches (``quiet``: no note before the choice)."""
    if name == "pilots":
        return pilots()
    if name == "primary":
        chosen = twins(runs)
        if not chosen:
            if not quiet:
                print(f"primary: no twins chosen yet ({runs / TWINS_FILE}); nothing to do")
            return []
        return (study_plan.cell_runs(chosen[MAIN], PRIMARY_SEEDS, PAIRED)
                + study_plan.cell_runs(LONG, PRIMARY_SEEDS[3:], PAIRED)
                + study_plan.cell_runs(chosen[LONG], PRIMARY_SEEDS, PAIRED))
    if name == "baselines":
        specs = []
        for seed in BASELINE_SEEDS:
            specs += study_plan.cell_runs(MAIN, (seed,), (*PAIRED, "rs"))
            for loss in LOSSES:
                specs += [RunSpec(MAIN, f"erm_{loss}", seed), RunSpec(MAIN, f"open_{loss}", seed, f"erm_{loss}")]
        return specs
    if name == "subsets":
        return [RunSpec(cell, m, 0, "erm" if m in study_plan.BRANCHED else None, subset=k)
                for cell in (MAIN, LONG) for k in SUBSETS for m in ("erm", "drs", "open", "rs")]
    raise SystemExit(f"unknown part {name!r}; choose {', '.join(PARTS)} or all")


def parts_done(runs: Path) -> list[tuple[str, int, int]]:
    """``(part, finished runs, planned runs)`` for each training part of the study, in order.

    A run two parts share (the chosen twins' ERM and DRS of seed 0 are pilots and primary runs)
    counts in each, so the parts add up to more than :func:`planned`. Before the twins are chosen
    the primary part plans no run (0 of 0), which counts as not finished.
    """
    out = []
    for name in PARTS:
        if name == "choose":
            continue
        specs = part(name, runs, quiet=True)
        out.append((name, sum(RunPaths(s.folder(runs)).eval.exists() for s in specs), len(specs)))
    return out


def planned(runs: Path) -> list[RunSpec]:
    """Every run of the study known so far (the primary part once the twins are chosen)."""
    specs = [s for name in PARTS if name != "choose" for s in part(name, runs, quiet=True)]
    return list(dict.fromkeys(specs))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", default="all", help=f"{', '.join(PARTS)} or all (default)")
    ap.add_argument("--runs", default=str(study_plan.RUNS), help="folder of the run folders")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra config override for every run (a smoke test; needs its own --runs)")
    ap.add_argument("--cell", action="append", default=[], metavar="CELL", help="only this cell's runs")
    ap.add_argument("--method", action="append", default=[], metavar="METHOD", help="only this method's runs")
    ap.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = ap.parse_args(argv)
    if args.set and Path(args.runs).resolve() == study_plan.RUNS.resolve():
        raise SystemExit("--set changes the runs, so they are not the study's: give them their own --runs folder")
    runs = Path(args.runs).resolve()
    extra = tuple(x for kv in args.set for x in ("--set", kv)) + ("--set", "progress=false")
    names = PARTS if args.part == "all" else (args.part,)
    for name in names:
        if name == "choose":
            if not args.dry_run:
                choose(runs)
            continue
        specs = part(name, runs)
        if args.cell or args.method:
            specs = study_plan.in_cells(specs, tuple(args.cell), tuple(args.method)) if specs else specs
        if args.dry_run:
            for s in specs:
                if not RunPaths(s.folder(runs)).eval.exists():
                    print(" ".join(shlex.quote(a) for a in s.command(runs, extra)))
            continue
        study.train_specs(name, specs, runs, extra)
    return 0


if __name__ == "__main__":
    sys.exit(main())
