"""Benchmark 1: a training step with OPeN (25% noise, DAR-BN) against an ERM step.

Same model weights, same batch, same optimizer; the OPeN step also runs the OPeN transform
(noise drawn on the device, rows reordered) and routes its DAR-BN layers. The two steps run
interleaved (ERM OPeN OPeN ERM ...) and each figure is a median.

    python benchmarks/bench_step.py                     # CPU: WRN-16-4 32x32 and resnet_small 28x28
    python benchmarks/bench_step.py --models resnet_small --reps 40

Target (issue 6): OPeN step / ERM step <= 1.05.
"""
from __future__ import annotations

import argparse

import torch

from purenoise.models import create_model

from _common import CIFAR10_LT_COUNTS, header, interleaved, load_average, median, paired_ratio
from _step import Step, make_open, make_pair

SETUPS = {  # name: (model, channels, size, default repetitions on a 2-core CPU)
    "wrn16_4": ("wrn16_4", 3, 32, 10),
    "resnet_small": ("resnet_small", 1, 28, 30),
}


def bench(name: str, batch: int, reps: int | None, device: torch.device) -> float:
    model_name, channels, size, default_reps = SETUPS[name]
    reps = reps or default_reps
    torch.manual_seed(0)
    erm_model, open_model = make_pair(create_model(model_name, 10, in_chans=channels), device)
    gen = torch.Generator(device).manual_seed(0)
    images = torch.randn(batch, channels, size, size, generator=gen, device=device)
    labels = torch.randint(0, 10, (batch,), generator=gen, device=device)  # class-balanced batch
    erm = Step(erm_model, images, labels)
    open_ = Step(open_model, images, labels, open_=make_open(CIFAR10_LT_COUNTS, channels))
    load_before = load_average()
    t = interleaved({"erm": erm, "open": open_}, reps, device)
    ratio = paired_ratio(t["open"], t["erm"])
    noise = sum(open_.noise_counts) / (len(open_.noise_counts) * batch)
    print(f"{name:>13} {size}x{size} batch {batch}: ERM {median(t['erm']) * 1e3:8.1f} ms  OPeN "
          f"{median(t['open']) * 1e3:8.1f} ms  ratio of medians {median(t['open']) / median(t['erm']):.3f}  "
          f"median paired ratio {ratio:.3f}  (noise {noise:.1%}, {reps} reps; before: {load_before}, "
          f"after: {load_average()})", flush=True)
    return ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--reps", type=int, default=None, help="repetitions of each step (default per model)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    print(header(device))
    worst = max(bench(name, args.batch, args.reps, device) for name in args.models)
    print(f"worst OPeN/ERM step ratio {worst:.3f} (target <= 1.05): {'met' if worst <= 1.05 else 'NOT met'}")


if __name__ == "__main__":
    main()
