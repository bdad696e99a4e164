"""Benchmark 2: peak memory of an OPeN training step (25% noise, DAR-BN) against an ERM step.

Method. On CUDA: ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``, around
one step (the caching allocator's own count of live tensor bytes). On the CPU there is no such
counter (and tracemalloc does not see torch's allocations), so a TorchDispatchMode follows every
storage an ATen operation returns during the step, forward, backward and optimizer included,
and frees it from the count when the storage dies (benchmarks/_memory.py): the peak of live
tensor bytes created by the step. Weights, momentum buffers and the input batch exist before
the step and are the same for both; they are reported apart ("static") and added for the totals.
Gradients are set to None before each measured step, so they count as created by it.

    python benchmarks/bench_memory.py [--device cpu|cuda] [--models wrn16_4 resnet_small]

Target: OPeN peak / ERM peak <= 1.05.
"""
from __future__ import annotations

import argparse

import torch

from purenoise.models import create_model

from _common import CIFAR10_LT_COUNTS, header, load_average
from _memory import PeakTensorMemory, tensor_bytes
from _step import Step, make_open, make_pair

SETUPS = {"wrn16_4": ("wrn16_4", 3, 32), "resnet_small": ("resnet_small", 1, 28)}


def peak_of(step: Step, device: torch.device) -> int:
    step.opt.zero_grad(set_to_none=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        base = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        step()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    with PeakTensorMemory() as mem:
        step()
    return mem.peak


def bench(name: str, batch: int, device: torch.device, reps: int) -> float:
    model_name, channels, size = SETUPS[name]
    torch.manual_seed(0)
    erm_model, open_model = make_pair(create_model(model_name, 10, in_chans=channels), device)
    gen = torch.Generator(device).manual_seed(0)
    images = torch.randn(batch, channels, size, size, generator=gen, device=device)
    labels = torch.randint(0, 10, (batch,), generator=gen, device=device)
    erm = Step(erm_model, images, labels)
    open_ = Step(open_model, images, labels, open_=make_open(CIFAR10_LT_COUNTS, channels))
    erm(), open_()  # momentum buffers exist from here on, as in training
    static = (tensor_bytes(erm_model.parameters()) * 2  # weights + momentum buffers
              + tensor_bytes([images, labels]))
    peaks = {"erm": [], "open": []}
    for r in range(reps):  # interleaved; peaks repeat exactly on the CPU, vary with k for OPeN
        for n, s in ((("erm", erm), ("open", open_)) if r % 2 == 0 else (("open", open_), ("erm", erm))):
            peaks[n].append(peak_of(s, device))
    e, o = max(peaks["erm"]), max(peaks["open"])
    ks = open_.noise_counts[1:]
    mb = 1024 ** 2
    print(f"{name:>13} {size}x{size} batch {batch}: step peak ERM {e / mb:7.1f} MiB  OPeN {o / mb:7.1f} MiB  "
          f"ratio {o / e:.4f};  with static {static / mb:.1f} MiB: {(static + e) / mb:.1f} vs {(static + o) / mb:.1f} "
          f"MiB ratio {(static + o) / (static + e):.4f}  (max over {reps} steps each, noise rows {min(ks)}-{max(ks)}; "
          f"{load_average()})", flush=True)
    return o / e


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=list(SETUPS), choices=list(SETUPS))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--reps", type=int, default=4)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    print(header(device))
    print("method:", "torch.cuda.max_memory_allocated" if device.type == "cuda" else
          "live tensor storages followed by a TorchDispatchMode (benchmarks/_memory.py)")
    worst = max(bench(n, args.batch, device, args.reps) for n in args.models)
    print(f"worst OPeN/ERM peak ratio {worst:.4f} (target <= 1.05): {'met' if worst <= 1.05 else 'NOT met'}")


if __name__ == "__main__":
    main()
