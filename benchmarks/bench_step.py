"""Benchmark 1: a training step with OPeN (25% noise, DAR-BN) against an ERM step.

Same model weights, same batch, same optimizer; the OPeN step also runs the OPeN transform
(noise drawn on the device, rows reordered) and routes its DAR-BN layers. Two OPeN steps are
timed: the trainer's default (``noise_pass: auto``, which forwards the noise rows in a pass of
their own and so skips the backward work that their zero feature gradients would cost) and
``joint`` (one pass for all rows, what compiled and DDP runs use). The steps run interleaved
(ERM, auto, joint, then reversed, ...) and each figure is a median. Warm-up steps come first,
as many for the small model as a training run's first epoch has: each noise count gives the
split pass new batch sizes, for which oneDNN builds its CPU kernels once (about 15 ms each
time for resnet_small), and a run meets its ~30 counts in the first few dozen steps.

    python benchmarks/bench_step.py                     # CPU: WRN-16-4 32x32 and resnet_small 28x28
    python benchmarks/bench_step.py --models resnet_small --reps 40

Target: OPeN step / ERM step <= 1.05.
"""
from __future__ import annotations

import argparse
import copy

import torch

from purenoise.models import create_model

from _common import CIFAR10_LT_COUNTS, header, interleaved, load_average, median, paired_ratio
from _step import Step, make_open, make_pair

SETUPS = {  # name: (model, channels, size, default repetitions on a 2-core CPU, warm-up steps)
    "wrn16_4": ("wrn16_4", 3, 32, 10, 3),
    "resnet_small": ("resnet_small", 1, 28, 30, 60),
}


def bench(name: str, batch: int, reps: int | None, device: torch.device) -> float:
    model_name, channels, size, default_reps, warmup = SETUPS[name]
    reps = reps or default_reps
    torch.manual_seed(0)
    erm_model, open_model = make_pair(create_model(model_name, 10, in_chans=channels), device)
    gen = torch.Generator(device).manual_seed(0)
    images = torch.randn(batch, channels, size, size, generator=gen, device=device)
    labels = torch.randint(0, 10, (batch,), generator=gen, device=device)  # class-balanced batch
    erm = Step(erm_model, images, labels)
    joint_model = copy.deepcopy(open_model)
    steps = {"erm": erm}
    for noise_pass, model in (("auto", open_model), ("joint", joint_model)):
        steps[noise_pass] = Step(model, images, labels, open_=make_open(CIFAR10_LT_COUNTS, channels),
                                 noise_pass=noise_pass)
    load_before = load_average()
    t = interleaved(steps, reps, device, warmup=warmup)
    noise = sum(steps["auto"].noise_counts) / (len(steps["auto"].noise_counts) * batch)
    line = f"{name:>13} {size}x{size} batch {batch}: ERM {median(t['erm']) * 1e3:8.1f} ms"
    ratios = {}
    for noise_pass in ("auto", "joint"):
        ratios[noise_pass] = paired_ratio(t[noise_pass], t["erm"])
        line += (f" | OPeN {noise_pass} {median(t[noise_pass]) * 1e3:8.1f} ms, ratio of medians "
                 f"{median(t[noise_pass]) / median(t['erm']):.3f}, median paired {ratios[noise_pass]:.3f}")
    print(f"{line}  (noise {noise:.1%}, {reps} reps; before: {load_before}, after: {load_average()})",
          flush=True)
    # The verdict takes the larger of the two summaries of the default step.
    return max(ratios["auto"], median(t["auto"]) / median(t["erm"]))


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
    print(f"worst OPeN/ERM step ratio, trainer default (auto) {worst:.3f} (target <= 1.05): "
          f"{'met' if worst <= 1.05 else 'NOT met'}")


if __name__ == "__main__":
    main()
