"""DAR-BN speed: forward+backward of BatchNorm2d, DAR-BN (25% noise) and the mask-based reference.

All variants run interleaved in one process on the same inputs, and each figure is the median
of many timed repetitions, so the ratios are comparable even on a busy machine.

    python benchmarks/bench_darbn.py [--reps 40] [--batch 128] [--noise 0.25] [--device cpu]

Targets: DAR-BN <= 1.10x BatchNorm2d, and >= 1.3x faster than the mask reference.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from purenoise import DARBatchNorm2d, noise_routing

SHAPES = [(64, 32), (640, 8), (16, 32), (320, 16)]  # (channels, size): CIFAR WRN activations


def mask_reference(bn, x, mask, noise_grad):
    """The paper's appendix algorithm: boolean gather of both groups, scatter back by mask."""
    out = torch.empty_like(x)
    out[~mask] = F.batch_norm(x[~mask], bn.running_mean, bn.running_var, bn.weight, bn.bias, True,
                              bn.momentum, bn.eps)
    with torch.set_grad_enabled(noise_grad == "features"):
        out[mask] = F.batch_norm(x[mask], None, None, bn.weight.detach(), bn.bias.detach(), True,
                                 0.0, bn.eps)
    return out


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--noise", type=float, default=0.25)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--channels-last", action="store_true")
    args = ap.parse_args()
    device = torch.device(args.device)
    k = round(args.batch * args.noise)
    print(f"torch {torch.__version__} on {device} ({platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads); batch {args.batch}, {k} noise rows, "
          f"{'channels_last' if args.channels_last else 'contiguous'}, median of {args.reps}")
    print(f"{'shape':>14} {'BN ms':>8} {'DAR/BN':>7} {'DARfeat/BN':>10} {'mask/BN':>8} {'mask/DAR':>9}")
    worst_bn, worst_mask = 0.0, float("inf")
    for channels, size in SHAPES:
        gen = torch.Generator(device).manual_seed(0)
        fmt = torch.channels_last if args.channels_last else torch.contiguous_format
        x0 = torch.randn(args.batch, channels, size, size, device=device, generator=gen).to(memory_format=fmt)
        g = torch.randn(x0.shape, device=device, generator=gen).to(memory_format=fmt)
        mask = torch.zeros(args.batch, dtype=torch.bool, device=device)
        mask[torch.randperm(args.batch, device=device, generator=gen)[:k]] = True
        bn = torch.nn.BatchNorm2d(channels).to(device)
        dar = DARBatchNorm2d(channels).to(device)
        dar_f = DARBatchNorm2d(channels, noise_grad="features").to(device)

        def run_bn():
            x = x0.detach().requires_grad_()
            bn(x).backward(g)

        def run_dar(layer):
            x = x0.detach().requires_grad_()
            with noise_routing(layer, k):
                y = layer(x)
            y.backward(g)

        def run_mask():
            x = x0.detach().requires_grad_()
            mask_reference(bn, x, mask, "classifier").backward(g)

        variants = {"bn": run_bn, "dar": lambda: run_dar(dar), "dar_f": lambda: run_dar(dar_f), "mask": run_mask}
        times = {name: [] for name in variants}
        for fn in variants.values():  # warm-up
            fn(), fn()
        for _ in range(args.reps):
            for name, fn in variants.items():
                sync(device)
                t = time.perf_counter()
                fn()
                sync(device)
                times[name].append(time.perf_counter() - t)
        med = {name: statistics.median(v) for name, v in times.items()}
        r_bn, r_f, r_mask = med["dar"] / med["bn"], med["dar_f"] / med["bn"], med["mask"] / med["bn"]
        worst_bn = max(worst_bn, r_bn)
        worst_mask = min(worst_mask, med["mask"] / med["dar"])
        print(f"{f'{channels}x{size}x{size}':>14} {med['bn'] * 1e3:8.2f} {r_bn:7.3f} {r_f:10.3f} "
              f"{r_mask:8.3f} {med['mask'] / med['dar']:9.2f}")
    print(f"worst DAR-BN/BatchNorm2d: {worst_bn:.3f} (target <= 1.10); "
          f"smallest mask-reference/DAR-BN speed-up: {worst_mask:.2f}x (target >= 1.3)")


if __name__ == "__main__":
    main()
