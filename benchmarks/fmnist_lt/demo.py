"""The main job (``make demo``): ERM, DRS and OPeN on Fashion-MNIST-LT, compared on the test set.

Trains ERM on Fashion-MNIST-LT (imbalance ratio 100, exponential profile, seed 0) with the small
ResNet, then DRS and OPeN branched from ERM's checkpoint at the defer epoch (the three share their
first phase, trained once). Prints one comparison table and writes a report with plots:

    runs/demo/report/report.md   per-class accuracy against class size, noise images, curves

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

DEBIAN = Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")


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
    code = study.main(["--plan", "demo", "--runs", args.runs, *[x for kv in extra for x in ("--set", kv)]])
    if code:
        return code
    from purenoise.report import format_table, load_run, make_report

    runs = [load_run(Path(study.REPO, args.runs, spec.setting, spec.name)) for spec in study.plan("demo")]
    report = make_report(runs, out_dir=Path(study.REPO, args.runs, "report"),
                         title="Fashion-MNIST-LT (ratio 100): ERM vs DRS vs OPeN")
    print("\nFashion-MNIST-LT, imbalance ratio 100, balanced test set (10,000 images): top-1 equals "
          "balanced accuracy; many/medium/few = classes with >100 / 20-100 / <20 training images\n")
    print(format_table(runs))
    print(f"\nreport with plots: {report}")
    print(f"demo finished in {(time.perf_counter() - t0) / 60:.1f} min")
    return 0


if __name__ == "__main__":
    sys.exit(main())
