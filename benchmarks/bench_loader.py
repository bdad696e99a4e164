"""Benchmark 3: the input pipeline alone, ``cifar_simclr`` at batch 128: images per second.

- device loader (``loader: device``): the training set as uint8 on the device, class-balanced
  draws and the batched preset (purenoise.engine.device_batches) on the benchmark's device;
- torch loader (``loader: torch``): purenoise's DataLoader path (LoaderBatches: per-sample
  seeded torchvision v2 preset on PIL images) with ``--workers`` worker processes;
- a plain ``DataLoader(shuffle=True)`` with the same preset and workers, no per-sample seeding
  (what a hand-written loop would use), for reference.

Data: CIFAR-shaped random uint8 images (12,406 of them: the size of CIFAR-10-LT), served as PIL
images like torchvision's CIFAR10. Loaders run interleaved, one epoch each per repetition.

    python benchmarks/bench_loader.py [--device cpu] [--workers 2] [--reps 3]

Target: device loader >= 5x the DataLoader with 2 workers on the 2-core CPU.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from purenoise.data import create_transform
from purenoise.data.batch_augment import create_batch_augment
from purenoise.engine.batches import LoaderBatches
from purenoise.engine.device_batches import DeviceBatches

from _common import CIFAR10_LT_COUNTS, header, load_average, median

MEAN = (0.4914, 0.4822, 0.4465)


class ArrayImages(Dataset):
    """``(PIL image, label)`` from a uint8 NHWC array, as torchvision's CIFAR10 returns them."""

    def __init__(self, data: np.ndarray, targets: list[int], transform=None) -> None:
        self.data, self.targets, self.transform = data, targets, transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        img = Image.fromarray(self.data[i])
        return (self.transform(img) if self.transform else img), self.targets[i]


def epoch_rate(make_iter, device: torch.device) -> float:
    t = time.perf_counter()
    n = 0
    for images, _ in make_iter():
        n += images.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--images", type=int, default=sum(CIFAR10_LT_COUNTS))
    args = ap.parse_args()
    device = torch.device(args.device)
    print(header(device))
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, args.images).tolist()
    tf = create_transform("cifar_simclr", image_size=32, cutout_fill=MEAN)

    dev = DeviceBatches(torch.from_numpy(data).permute(0, 3, 1, 2), labels,
                        create_batch_augment("cifar_simclr", image_size=32, cutout_fill=MEAN),
                        batch_size=args.batch, device=device, seed=0)
    torch_loader = LoaderBatches(ArrayImages(data, labels), tf, labels, batch_size=args.batch, device=device,
                                 seed=0, workers=args.workers)
    plain = DataLoader(ArrayImages(data, labels, tf), batch_size=args.batch, shuffle=True, drop_last=True,
                       num_workers=args.workers, persistent_workers=args.workers > 0,
                       prefetch_factor=4 if args.workers else None)
    epoch = [0]

    def device_epoch():
        dev.set_epoch(epoch[0], "balanced")
        return iter(dev)

    def torch_epoch():
        torch_loader.set_epoch(epoch[0], "balanced")
        return iter(torch_loader)

    def plain_epoch():
        return ((x.to(device), y) for x, y in plain)

    runs = {"device loader": device_epoch, f"torch loader ({args.workers} workers)": torch_epoch,
            f"plain DataLoader ({args.workers} workers)": plain_epoch}
    rates: dict[str, list[float]] = {k: [] for k in runs}
    for name, fn in runs.items():  # warm-up: worker start, first-call costs
        epoch_rate(fn, device)
    for r in range(args.reps):
        epoch[0] = r + 1
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            rates[name].append(epoch_rate(runs[name], device))
            print(f"  rep {r + 1} {name}: {rates[name][-1]:,.0f} img/s ({load_average()})", flush=True)
    dev_rate = median(rates["device loader"])
    for name in runs:
        extra = "" if name == "device loader" else f"  device loader is {dev_rate / median(rates[name]):.1f}x"
        print(f"{name:>28}: {median(rates[name]):9,.0f} images/s (median of {args.reps} epochs of "
              f"{len(dev) * args.batch:,}){extra}")
    ratio = dev_rate / median(rates[f"torch loader ({args.workers} workers)"])
    print(f"device / torch loader {ratio:.1f}x (target >= 5x): {'met' if ratio >= 5 else 'NOT met'}; {load_average()}")


if __name__ == "__main__":
    main()
