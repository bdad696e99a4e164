"""The main job (``make demo``): ERM, DRS and OPeN on Fashion-MNIST-LT, compared on the test set.

Trains seed 0 of the main cell: ERM on Fashion-MNIST-LT (imbalance ratio 100), then DRS and OPeN
branched from ERM's checkpoint at the defer epoch (the three share their first phase, trained
once). The main cell is the one the regime study chose by memorization (``select_cell.py``);
until it has chosen, the short 30-epoch cell. Prints one comparison table and, under it, the
study's mean ± std over seeds for the same cell and the paired OPeN − DRS interval, read from the
study's run folders (``benchmarks/fmnist_lt/runs``), so a run on another machine can be placed in
the range of seeds: CPU results repeat bit for bit on one CPU model, not across models. Writes a
report with plots:

    runs/demo/report/report.md   per-class accuracy against class size, training vs test accuracy

Data: Debian's dataset-fashion-mnist package when installed, else torchvision's download into
./data (pass --no-download to forbid it).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import study  # noqa: E402
import study_plan  # noqa: E402
from purenoise.run_paths import RunPaths  # noqa: E402

DEBIAN = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


def study_range(cell: str, runs: Path = study_plan.RUNS) -> list[str]:
    """Lines with the study's mean ± std per method of ``cell`` and the paired OPeN − DRS interval."""
    from purenoise.reporting.replicates import Replicates, paired_difference
    from purenoise.reporting.runs import load_run
    from purenoise.reporting.summary import summarize
    from purenoise.reporting.text import interval, mean_std_of

    groups = {}
    for m in ("erm", "drs", "open"):
        specs = [study_plan.RunSpec(cell, m, s) for s in study_plan.MAIN_SEEDS]
        done = [s for s in specs if RunPaths(s.folder(runs)).eval.exists()]
        if done:
            groups[m] = Replicates(m, [load_run(s.folder(runs)) for s in done], [s.seed for s in done])
    if not groups:
        return [f"The study has no finished run of {cell} yet to compare with."]
    lines = [f"The study's runs of the same cell ({runs.relative_to(study_plan.REPO)}/{cell}), top-1 %:"]
    for m, g in groups.items():
        tops = mean_std_of([summarize(r)["top1"] for r in g.runs])
        lines.append(f"  {m:5s} {tops:>14s}  (seeds {', '.join(map(str, g.seeds))})")
    if "open" in groups and "drs" in groups:
        d = paired_difference(groups["open"], groups["drs"], lambda r: summarize(r)["top1"])
        if d["lo"] is not None:
            lines.append(f"  OPeN - DRS, paired by seed, points (mean ± std [95% interval]): {interval(d)} "
                         f"over {d['n']} seeds")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", default="runs/demo")
    ap.add_argument("--no-download", action="store_true", help="never download Fashion-MNIST")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    extra = list(args.set)
    if not DEBIAN.exists() and not args.no_download:
        extra += ["download=true", "data_root=data"]
        print("Debian's dataset-fashion-mnist is not installed: torchvision downloads Fashion-MNIST "
              "into ./data", flush=True)
    t0 = time.perf_counter()
    cell = study_plan.demo_cell()
    runs_dir = Path(study_plan.REPO, args.runs)
    print(f"main cell: {cell}" + ("" if study_plan.main_cell(study_plan.RUNS) else
                                  " (the regime study has not chosen its main cell yet)"), flush=True)
    code = study.main(["--plan", "demo", "--runs", str(runs_dir), "--progress",
                       *[x for kv in extra for x in ("--set", kv)]])
    if code:
        return code
    from purenoise.reporting.report import make_report
    from purenoise.reporting.runs import load_run
    from purenoise.reporting.summary import format_table

    runs = [load_run(spec.folder(runs_dir)) for spec in study_plan.plan("demo", runs_dir)]
    report = make_report(runs, out_dir=runs_dir / "report",
                         title=f"Fashion-MNIST-LT ({cell}): ERM vs DRS vs OPeN")
    print("\nFashion-MNIST-LT, imbalance ratio 100, balanced test set (10,000 images): top-1 equals "
          "balanced accuracy; many/medium/few = classes with >100 / 20-100 / <20 training images\n")
    print(format_table(runs))
    print()
    print("\n".join(study_range(cell)))
    print(f"\nreport with plots: {report}")
    print(f"demo finished in {(time.perf_counter() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
