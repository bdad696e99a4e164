"""Benchmark 4: engine overhead. A purenoise ERM epoch against a minimal hand-written loop.

Both train the same model (``resnet_small``, same initial weights) on the same data
(Fashion-MNIST-LT, ratio 100: the real files) with the same batch size (128), augmentation
(the ``fmnist_basic`` torchvision preset in a DataLoader with 2 workers), optimizer (SGD 0.1,
momentum 0.9, weight decay 5e-4) and input normalization. The purenoise side is
``Trainer._train_epoch`` of the ``configs/fmnist_lt_r100/erm.yaml`` recipe (its sampler,
per-sample seeded augmentation, per-step seeding, normalizer, routing context, loss, scheduler
and on-device statistics); the hand-written side is the textbook loop below. Epochs alternate,
and each figure is a median. ``--device-loader`` also times purenoise with ``loader: device``
against the same hand-written loop over the same device batches (the engine alone, without
DataLoader workers competing for the CPU).

    python benchmarks/bench_engine.py [--reps 3] [--device-loader]

Target: purenoise epoch / hand-written epoch <= 1.05.
"""
from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from purenoise.config import load_config, settings
from purenoise.data import create_transform
from purenoise.engine.trainer import Trainer

from _common import header, load_average, median

ROOT = Path(__file__).resolve().parent.parent


class WithTransform(Dataset):
    def __init__(self, base: Dataset, transform) -> None:
        self.base, self.transform = base, transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        image, label = self.base[i]
        return self.transform(image), label


def hand_written_epoch(model, loader, optimizer, mean, std) -> int:
    """The minimal loop: normalize, forward, cross-entropy, backward, step."""
    model.train()
    n = 0
    for x, y in loader:
        x = (x - mean) / std
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        n += x.shape[0]
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3, help="epochs of each loop")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--config", default=str(ROOT / "configs" / "fmnist_lt_r100" / "erm.yaml"))
    ap.add_argument("--device-loader", action="store_true", help="also time purenoise with loader: device")
    args = ap.parse_args()
    sets = ["device=cpu", "progress=false", f"workers={args.workers}", "loader=torch"]
    s = settings(load_config(args.config, sets))
    device = torch.device("cpu")
    print(header(device))
    tmp = Path(tempfile.mkdtemp(prefix="bench_engine_"))
    trainer = Trainer(s, tmp / "torch")
    info = trainer.data.info
    print(f"data: {s.dataset} ratio {s.ratio:g}, {len(trainer.data.targets):,} training images, "
          f"{trainer.steps_per_epoch} steps of {s.batch_size}; model {s.model}; augment fmnist_basic")
    torch.manual_seed(0)
    model = copy.deepcopy(trainer.module)  # the same initial weights
    optimizer = torch.optim.SGD(model.parameters(), lr=s.lr, momentum=s.momentum,
                                weight_decay=s.weight_decay)
    train_tf = create_transform("fmnist_basic", image_size=info.image_size, channels=info.channels)
    loader = DataLoader(WithTransform(trainer.data.train, train_tf), batch_size=s.batch_size, shuffle=True,
                        drop_last=True, num_workers=args.workers, persistent_workers=args.workers > 0,
                        prefetch_factor=4 if args.workers else None)
    mean = torch.tensor(info.mean).view(1, -1, 1, 1)
    std = torch.tensor(info.std).view(1, -1, 1, 1)
    runs = {"purenoise (loader: torch)": lambda e: trainer._train_epoch(e, 0),
            "hand-written loop": lambda e: hand_written_epoch(model, loader, optimizer, mean, std)}
    if args.device_loader:
        dev_trainer = Trainer(load_config(args.config, [*sets[:-1], "loader=device"]), tmp / "device")
        runs["purenoise (loader: device)"] = lambda e: dev_trainer._train_epoch(e, 0)
        # The same hand-written loop over the very same device batches: the engine alone, with
        # no DataLoader workers competing for the two cores.
        model2 = copy.deepcopy(trainer.module)
        opt2 = torch.optim.SGD(model2.parameters(), lr=s.lr, momentum=s.momentum,
                               weight_decay=s.weight_decay)

        def hand_device(e):
            dev_trainer.batches.set_epoch(e, "instance")
            return hand_written_epoch(model2, dev_trainer.batches, opt2, mean, std)

        runs["hand-written (device batches)"] = hand_device
    times: dict[str, list[float]] = {k: [] for k in runs}
    for name, fn in runs.items():  # warm-up epoch: worker start-up, first-call costs
        t = time.perf_counter()
        fn(0)
        print(f"  warm-up {name}: {time.perf_counter() - t:.1f} s ({load_average()})", flush=True)
    for r in range(args.reps):
        for name in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
            t = time.perf_counter()
            runs[name](r + 1)
            times[name].append(time.perf_counter() - t)
            print(f"  rep {r + 1} {name}: {times[name][-1]:.2f} s ({load_average()})", flush=True)
    base = median(times["hand-written loop"])
    for name in runs:
        print(f"{name:>27}: {median(times[name]):7.2f} s/epoch  ratio to hand-written {median(times[name]) / base:.3f}"
              f"  (median of {args.reps})")
    pairs = sorted(a / b for a, b in zip(times["purenoise (loader: torch)"], times["hand-written loop"]))
    ratio = median(times["purenoise (loader: torch)"]) / base
    print(f"engine overhead: purenoise / hand-written {ratio:.3f}, paired ratios {', '.join(f'{p:.3f}' for p in pairs)}"
          f" (target <= 1.05): {'met' if ratio <= 1.05 else 'NOT met'}; {load_average()}")
    if args.device_loader:
        dev = median(times["purenoise (loader: device)"]) / median(times["hand-written (device batches)"])
        pairs = sorted(a / b for a, b in zip(times["purenoise (loader: device)"], times["hand-written (device batches)"]))
        print(f"engine overhead on the same device batches: {dev:.3f}, paired ratios "
              f"{', '.join(f'{p:.3f}' for p in pairs)} (target <= 1.05): {'met' if dev <= 1.05 else 'NOT met'}")


if __name__ == "__main__":
    main()
