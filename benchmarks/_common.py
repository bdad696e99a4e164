"""Helpers shared by the benchmark scripts: machine header, load average, interleaved timing.

The CPU of the development machine is shared with other jobs, so every comparison runs its
variants interleaved (A B B A ...) in one process on the same inputs and reports medians, and
every figure is printed next to the load average measured while it was taken.
"""
from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence

import torch

CIFAR10_LT_COUNTS = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]  # ratio 100 (docs/method.md, section 3)


def _cpu_times() -> list[int] | None:
    try:
        with open("/proc/stat") as f:
            return [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):  # not Linux
        return None


_LAST_TIMES = _cpu_times()


def load_average() -> str:
    """Load averages, CPU count and CPU steal since the previous call, e.g.
    ``load 1.9/2.1/2.7 on 2 CPUs, steal 3%``. Steal is the time the hypervisor gave this
    machine's CPUs to others: on a shared virtual machine it says more about timing noise
    than the load average does."""
    global _LAST_TIMES
    try:
        a, b, c = os.getloadavg()
    except OSError:  # pragma: no cover - not on Linux/macOS
        return "load n/a"
    text = f"load {a:.2f}/{b:.2f}/{c:.2f} on {os.cpu_count()} CPUs"
    now = _cpu_times()
    if now is not None and _LAST_TIMES is not None:
        delta = [x - y for x, y in zip(now, _LAST_TIMES)]
        if sum(delta) > 0:
            text += f", steal {100 * delta[7] / sum(delta):.0f}%"
    _LAST_TIMES = now
    return text


def header(device: torch.device) -> str:
    """One line naming the software and the machine."""
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        where = f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
    return f"torch {torch.__version__} on {device} ({where}); {load_average()}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: dict[str, Callable[[], object]], reps: int, device: torch.device,
                warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each function, called in A B ... B A order ``reps`` times each."""
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    sync(device)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(reps):
        for n in (names if r % 2 == 0 else names[::-1]):
            sync(device)
            t = time.perf_counter()
            fns[n]()
            sync(device)
            times[n].append(time.perf_counter() - t)
    return times


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def paired_ratio(num: Sequence[float], den: Sequence[float]) -> float:
    """Median of the per-repetition ratios (robust to load that drifts during the run)."""
    return statistics.median(a / b for a, b in zip(num, den))


def training_flops_per_image(build: Callable[[], torch.nn.Module], image_shape: Sequence[int]) -> float:
    """Floating-point operations of one training image, forward and backward, as counted by
    :class:`torch.utils.flop_counter.FlopCounterMode` (convolutions and matrix products, the
    work a GPU's tensor cores do). The model is built on the meta device, so nothing is
    computed and the count takes about a second for a WRN-28-10."""
    from torch.utils.flop_counter import FlopCounterMode

    n = 2  # batch statistics need more than one row
    with torch.device("meta"):
        model = build()
        x = torch.empty(n, *image_shape)
    with FlopCounterMode(display=False) as counter:
        model(x).float().sum().backward()
    return counter.get_total_flops() / n
