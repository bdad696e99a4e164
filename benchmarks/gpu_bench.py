"""Benchmark 5 (GPU): the paper's CIFAR-10-LT OPeN recipe at full speed, on synthetic data.

WRN-28-10 at 32x32, batch 128, bfloat16 autocast, channels_last, torch.compile, the device
loader with the ``cifar_simclr`` preset: the settings of ``configs/cifar10_lt_r100/open.yaml``.
The data are random CIFAR-shaped images with the CIFAR-10-LT class counts (12,406 training
images, 10,000 test images), registered as a dataset so that the real :class:`Trainer` runs:

1. training: a few ERM epochs, then OPeN epochs (25% noise), through ``Trainer.fit``: the
   first epoch of each phase includes compilation, the others give the epoch times, and the
   number of compiled graphs is read after every epoch (one for ERM, one for all noise counts);
2. ERM and OPeN steps interleaved on the warm compiled model (blocks of steps, medians);
3. peak memory of one ERM and one OPeN step (``torch.cuda.max_memory_allocated``);
4. the projected wall time of the full 200-epoch recipe (160 ERM + 40 OPeN epochs, a
   checkpoint per epoch, compilation, the final evaluation);
5. OPeN steps with the noise rows in a forward pass of their own (``noise_pass: split``,
   compiled), against ERM and one-pass OPeN steps, interleaved.

Every phase adds its figures to ``<out>/gpu_bench.json`` as soon as it ends, so a timeout keeps
what was measured.

    python benchmarks/gpu_bench.py --out DIR             # on a CUDA machine (gpu_check.sh)
    python benchmarks/gpu_bench.py --device cpu --quick  # the same code, tiny sizes, on a CPU

Targets: >= 10,000 images/s on one H100, OPeN within 5% of ERM, projected < 10 min.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from purenoise.config import load_config, settings
from purenoise.data.bundle import DatasetBundle, DatasetInfo
from purenoise.data.registry import register_dataset
from purenoise.engine.setup import build_model
from purenoise.engine.trainer import Trainer

from _common import CIFAR10_LT_COUNTS, header, load_average, training_flops_per_image

ROOT = Path(__file__).resolve().parent.parent
RECIPE = {"erm_epochs": 160, "open_epochs": 40, "train_images": 12406, "test_images": 10000}


def _fake_cifar(n_per_class: list[int], seed: int, train: bool):
    """A torchvision CIFAR10 object holding random images (no files)."""
    from torchvision.datasets import CIFAR10, VisionDataset

    ds = CIFAR10.__new__(CIFAR10)
    VisionDataset.__init__(ds, "synthetic")
    rng = np.random.default_rng(seed)
    ds.train = train
    ds.data = rng.integers(0, 256, (sum(n_per_class), 32, 32, 3), dtype=np.uint8)
    ds.targets = [c for c, n in enumerate(n_per_class) for _ in range(n)]
    ds.classes = [f"class{c}" for c in range(len(n_per_class))]
    return ds


@register_dataset("synthetic_cifar10_lt")
def synthetic_cifar10_lt(root: str | None, *, download: bool = False, scale: float = 1.0, ratio: float = 100,
                         profile: str = "exp", seed: int = 0) -> DatasetBundle:
    """Random 32x32 RGB images with the CIFAR-10-LT (ratio 100) class counts, times ``scale``.

    ``ratio``, ``profile`` and ``seed`` are accepted so that the CIFAR-10-LT configs apply as
    they are; the counts are always those of ratio 100.
    """
    counts = [max(2, int(n * scale)) for n in CIFAR10_LT_COUNTS]
    train = _fake_cifar(counts, 0, True)
    test = _fake_cifar([max(2, int(1000 * scale))] * 10, 1, False)
    info = DatasetInfo(name="synthetic_cifar10_lt", num_classes=10, class_names=train.classes, image_size=(32, 32),
                       channels=3, options={"scale": scale}, root=None)  # stats cache: the user cache
    return DatasetBundle(train, test, counts, info)


def graphs() -> int:
    """Graphs dynamo has compiled in this process (one per distinct specialization)."""
    try:
        from torch._dynamo.utils import counters
    except ImportError:  # pragma: no cover
        return -1
    return int(counters["stats"]["unique_graphs"])


class Results:
    def __init__(self, path: Path) -> None:
        self.path, self.data = path, {}

    def add(self, **kw) -> None:
        self.data.update(kw)
        self.path.write_text(json.dumps(self.data, indent=2, default=str))


def _step(tr: Trainer, images, labels, noise: bool, noise_pass: str | None = None) -> int:
    """One training step: the trainer's own (:meth:`Trainer.train_step`)."""
    return tr.train_step(images, labels, noise=noise, noise_pass=noise_pass).n_noise


# Kinds of step: (OPeN on, noise_pass; None: the trainer's, which keeps one pass when compiled).
KINDS = {"erm": (False, None), "open": (True, None), "open_split": (True, "split")}


def interleaved_blocks(tr: Trainer, rounds: int, block: int,
                       kinds: tuple[str, ...] = ("erm", "open")) -> dict[str, list[float]]:
    """Images/s of blocks of steps of each kind (loader, OPeN and step included), alternating."""
    rates: dict[str, list[float]] = {kind: [] for kind in kinds}
    dev = tr.device
    epoch = 1000
    for r in range(rounds):
        for kind in (kinds if r % 2 == 0 else kinds[::-1]):
            epoch += 1
            noise, noise_pass = KINDS[kind]
            tr.batches.set_epoch(epoch, "balanced" if noise else "instance")
            batches = iter(tr.batches)
            n = min(block, len(tr.batches))
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t = time.perf_counter()
            rows = 0
            for _ in range(n):
                images, labels = next(batches)
                _step(tr, images, labels, noise, noise_pass)
                rows += images.shape[0]
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            rates[kind].append(rows / (time.perf_counter() - t))
    return rates


def cudnn_benchmark_blocks(tr: Trainer, rounds: int, block: int) -> dict[str, list[float]]:
    """Images/s of ERM step blocks with ``torch.backends.cudnn.benchmark`` off and on, alternating.

    The compiled graph calls cuDNN's convolutions at run time, so the flag takes effect on the
    warm model; the first block with it on also pays the algorithm search (medians ignore it).
    """
    rates: dict[str, list[float]] = {"off": [], "on": []}
    old = torch.backends.cudnn.benchmark
    try:
        for r in range(rounds):
            for flag in ((False, True) if r % 2 == 0 else (True, False)):
                torch.backends.cudnn.benchmark = flag
                tr.batches.set_epoch(3000 + r, "instance")
                batches = iter(tr.batches)
                n = min(block, len(tr.batches))
                torch.cuda.synchronize(tr.device)
                t = time.perf_counter()
                for _ in range(n):
                    images, labels = next(batches)
                    _step(tr, images, labels, False)
                torch.cuda.synchronize(tr.device)
                rates["on" if flag else "off"].append(n * tr.cfg.batch_size / (time.perf_counter() - t))
    finally:
        torch.backends.cudnn.benchmark = old
    return rates


def loader_rates(tr: Trainer, n: int) -> dict[str, float]:
    """Images/s of the device loader alone (draw + augmentation), eager and compiled augmentation."""
    db = tr.batches
    compiled = getattr(db, "_apply", None)
    out = {}
    for name, apply in (("eager", None), ("compiled", compiled)):
        if name == "compiled" and compiled is None:
            continue
        db._apply = apply
        db.set_epoch(4000, "instance")
        db.batch(0)
        if tr.device.type == "cuda":
            torch.cuda.synchronize(tr.device)
        t = time.perf_counter()
        for b in range(min(n, len(db))):
            db.batch(b)
        if tr.device.type == "cuda":
            torch.cuda.synchronize(tr.device)
        out[name] = min(n, len(db)) * tr.cfg.batch_size / (time.perf_counter() - t)
    db._apply = compiled
    return out


def step_peaks(tr: Trainer) -> dict[str, float]:
    out = {}
    if tr.device.type != "cuda":
        return out
    for kind in ("erm", "open"):
        tr.batches.set_epoch(2000, "instance" if kind == "erm" else "balanced")
        images, labels = next(iter(tr.batches))
        tr.optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize(tr.device)
        base = torch.cuda.memory_allocated(tr.device)
        torch.cuda.reset_peak_memory_stats(tr.device)
        _step(tr, images, labels, kind == "open")
        torch.cuda.synchronize(tr.device)
        out[kind] = (torch.cuda.max_memory_allocated(tr.device) - base) / 2 ** 20
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=None, help="folder for gpu_bench.json (default: a temporary folder)")
    ap.add_argument("--quick", action="store_true", help="tiny model and data: checks the script on a CPU")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--erm-epochs", type=int, default=4, help="the first one includes compiling")
    ap.add_argument("--open-epochs", type=int, default=4, help="the first one includes compiling")
    ap.add_argument("--rounds", type=int, default=6, help="interleaved blocks of each kind")
    ap.add_argument("--block", type=int, default=40, help="steps per block")
    args = ap.parse_args()
    device = torch.device(args.device)
    out = Path(args.out or tempfile.mkdtemp(prefix="gpu_bench_"))
    out.mkdir(parents=True, exist_ok=True)
    res = Results(out / "gpu_bench.json")
    print(header(device), flush=True)
    res.add(machine=header(device), torch=torch.__version__, device=str(device),
            gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None)

    sets = [
        "dataset=synthetic_cifar10_lt", f"device={args.device}", f"compile={str(not args.no_compile).lower()}",
        f"epochs={args.erm_epochs + args.open_epochs}", f"defer_epoch={args.erm_epochs}", "milestones=[]",
        "warmup_epochs=0", "lr=0.01", "progress=false", "eval_every=0", "checkpoint_every=1", "save_samples=false",
    ]
    if args.quick:
        sets += ["model=wrn", "model_options.depth=10", "model_options.width=1", "dataset_options.scale=0.05",
                 "batch_size=32", "workers=0"]
    if device.type != "cuda":
        sets += ["workers=0"]
    s = settings(load_config(ROOT / "configs" / "cifar10_lt_r100" / "open.yaml", sets))
    run_dir = Path(tempfile.mkdtemp(prefix="gpu_bench_run_"))  # checkpoints stay out of <out>

    # ---- 1. the Trainer: ERM epochs, then OPeN epochs
    t0 = time.perf_counter()
    tr = Trainer(s, run_dir)
    setup_s = time.perf_counter() - t0
    print(f"setup {setup_s:.1f} s: {s.model} batch {s.batch_size}, {tr.steps_per_epoch} steps/epoch, "
          f"amp {s.amp}, channels_last {s.channels_last}, compile {s.compile}, loader {s.loader}",
          flush=True)
    epochs: list[dict] = []
    original_epoch, original_eval, original_save = tr._train_epoch, tr._evaluate, tr._save
    timing = {"eval_s": 0.0, "save_s": [], "save_bytes": 0}

    def epoch_hook(epoch, start):
        rec = original_epoch(epoch, start)
        rec["graphs"] = graphs()
        epochs.append(rec)
        print(f"  epoch {epoch}: {rec['sampling']:>8} {rec['time_s']:7.2f} s  {rec['images_per_s']:9,.0f} img/s  "
              f"noise {rec['noise_frac']:.3f}  loss {rec['train_loss']:.3f}  graphs so far {rec['graphs']}", flush=True)
        res.add(epochs=epochs)
        return rec

    def eval_hook():
        t = time.perf_counter()
        m = original_eval()
        timing["eval_s"] = time.perf_counter() - t
        return m

    def save_hook(name, *a, **kw):
        t = time.perf_counter()
        path = original_save(name, *a, **kw)
        timing["save_s"].append(time.perf_counter() - t)
        if path is not None and Path(path).exists():
            timing["save_bytes"] = Path(path).stat().st_size
        return path

    tr._train_epoch, tr._evaluate, tr._save = epoch_hook, eval_hook, save_hook
    t0 = time.perf_counter()
    tr.fit()
    fit_s = time.perf_counter() - t0
    erm = [e for e in epochs if e["sampling"] == "instance"]
    opn = [e for e in epochs if e["sampling"] == "balanced"]
    erm_s = statistics.median(e["time_s"] for e in erm[1:]) if len(erm) > 1 else erm[0]["time_s"]
    open_s = statistics.median(e["time_s"] for e in opn[1:]) if len(opn) > 1 else opn[0]["time_s"]
    compile_s = max(0.0, erm[0]["time_s"] - erm_s) + max(0.0, opn[0]["time_s"] - open_s)
    graphs_erm, graphs_total = erm[-1]["graphs"], epochs[-1]["graphs"]
    save_s = statistics.median(timing["save_s"]) if timing["save_s"] else 0.0
    res.add(setup_s=setup_s, fit_s=fit_s, erm_epoch_s=erm_s, open_epoch_s=open_s, compile_s=compile_s,
            graphs_after_erm=graphs_erm, graphs_total=graphs_total, eval_s=timing["eval_s"],
            checkpoint_s=save_s, checkpoint_mb=timing["save_bytes"] / 2 ** 20)
    steps = tr.steps_per_epoch
    rows = steps * s.batch_size
    print(f"trainer epochs: ERM {rows / erm_s:,.0f} img/s ({erm_s:.2f} s/epoch), OPeN {rows / open_s:,.0f} img/s "
          f"({open_s:.2f} s/epoch), OPeN/ERM epoch time {open_s / erm_s:.3f}; compile ~{compile_s:.0f} s; graphs "
          f"compiled: {graphs_erm} in the ERM epochs, {graphs_total} in all (recompiles for OPeN's varying noise "
          f"count: {graphs_total - graphs_erm}); checkpoint {save_s:.2f} s ({timing['save_bytes'] / 2 ** 20:.0f} MB); "
          f"final eval {timing['eval_s']:.1f} s", flush=True)

    # ---- 2. interleaved steps on the warm model
    rates = interleaved_blocks(tr, args.rounds if not args.quick else 2, args.block if not args.quick else 3)
    erm_rate, open_rate = statistics.median(rates["erm"]), statistics.median(rates["open"])
    res.add(interleaved=rates, erm_img_s=erm_rate, open_img_s=open_rate, open_over_erm_time=erm_rate / open_rate,
            graphs_after_interleaved=graphs())
    print(f"interleaved steps (device loader + step): ERM {erm_rate:,.0f} img/s, OPeN {open_rate:,.0f} img/s, "
          f"OPeN step time / ERM {erm_rate / open_rate:.3f} (target <= 1.05); graphs now {graphs()}", flush=True)

    # What share of the GPU the ERM step uses: tensor-core work per image over the step's rate.
    info = tr.data.info
    per_image = training_flops_per_image(lambda: build_model(tr.cfg, info, tr.class_counts, warn=False),
                                          (info.channels, *info.image_size))
    res.add(train_flops_per_image=per_image, erm_tflops=erm_rate * per_image / 1e12)
    print(f"work per training image: {per_image / 1e9:.2f} GFLOP (forward and backward, torch.utils.flop_counter); "
          f"ERM steps sustain {erm_rate * per_image / 1e12:.3g} TFLOP/s, 10,000 img/s needs "
          f"{1e4 * per_image / 1e12:.3g}", flush=True)

    # ---- 2b. the input pipeline alone, and cuDNN's algorithm search on the warm model
    lr = loader_rates(tr, 5 if args.quick else 50)
    res.add(loader_img_s=lr)
    print("device loader alone (cifar_simclr): " + ", ".join(f"{k} augmentation {v:,.0f} img/s" for k, v in lr.items()),
          flush=True)
    if tr.device.type == "cuda":
        cb = cudnn_benchmark_blocks(tr, 4, args.block if not args.quick else 3)
        off, on = statistics.median(cb["off"]), statistics.median(cb["on"])
        res.add(cudnn_benchmark=cb, cudnn_benchmark_speedup=on / off)
        print(f"cudnn.benchmark (ERM step blocks, alternating): off {off:,.0f} img/s, on {on:,.0f} img/s, "
              f"x{on / off:.3f}", flush=True)

    # ---- 3. peak memory
    peaks = step_peaks(tr)
    if peaks:
        res.add(peak_mib=peaks, peak_ratio=peaks["open"] / peaks["erm"])
        print(f"peak memory of a step: ERM {peaks['erm']:.0f} MiB, OPeN {peaks['open']:.0f} MiB, ratio "
              f"{peaks['open'] / peaks['erm']:.3f} (torch.cuda.max_memory_allocated)", flush=True)

    # ---- 4. the full recipe, projected (epoch times scaled to the real data size)
    scale = RECIPE["train_images"] // s.batch_size / steps
    erm_full, open_full = erm_s * scale, open_s * scale
    eval_full = timing["eval_s"] * RECIPE["test_images"] / max(1, len(tr.data.test))
    epochs_total = RECIPE["erm_epochs"] + RECIPE["open_epochs"]
    # The recipe's own checkpoint interval, plus the branch-point checkpoint at the defer epoch.
    every = settings(load_config(ROOT / "configs" / "cifar10_lt_r100" / "open.yaml")).checkpoint_every
    n_ckpt = epochs_total // every + 1
    total = (RECIPE["erm_epochs"] * erm_full + RECIPE["open_epochs"] * open_full + n_ckpt * save_s
             + compile_s + eval_full + setup_s)
    res.add(projected_recipe_s=total, projection={
        "erm_epochs_s": RECIPE["erm_epochs"] * erm_full, "open_epochs_s": RECIPE["open_epochs"] * open_full,
        "checkpoints_s": n_ckpt * save_s, "compile_s": compile_s, "eval_s": eval_full, "setup_s": setup_s})
    print(f"projected 200-epoch CIFAR-10-LT OPeN recipe: {total / 60:.1f} min = 160 x {erm_full:.2f} s ERM + "
          f"40 x {open_full:.2f} s OPeN + {n_ckpt} checkpoints x {save_s:.2f} s + compile {compile_s:.0f} s + eval "
          f"{eval_full:.1f} s + setup {setup_s:.1f} s (target < 10 min; loading the real CIFAR files adds ~2 s)")
    met = [erm_rate >= 10000, erm_rate / open_rate <= 1.05, total < 600]
    print(f"targets: >= 10,000 img/s {'met' if met[0] else 'NOT met'} ({erm_rate:,.0f}); OPeN within 5% "
          f"{'met' if met[1] else 'NOT met'}; recipe < 10 min {'met' if met[2] else 'NOT met'}; {load_average()}",
          flush=True)
    res.add(targets_met=met)

    # ---- 5. OPeN with the noise rows in a pass of their own (noise_pass: split), compiled too;
    # last, so that its compiling cannot cost the figures above. One untimed block compiles it.
    rounds, block = (2, 3) if args.quick else (args.rounds, args.block)
    before = graphs()
    interleaved_blocks(tr, 1, block, ("open_split",))
    sp = interleaved_blocks(tr, rounds, block, ("erm", "open", "open_split"))
    med = {k: statistics.median(v) for k, v in sp.items()}
    res.add(split_interleaved=sp, split_img_s=med["open_split"], split_graphs_added=graphs() - before,
            split_over_erm_time=med["erm"] / med["open_split"], joint_over_erm_time=med["erm"] / med["open"])
    print(f"OPeN with noise rows in their own pass (noise_pass split, compiled; {graphs() - before} graphs "
          f"added): ERM {med['erm']:,.0f} img/s, OPeN one pass {med['open']:,.0f}, two passes "
          f"{med['open_split']:,.0f}; step time / ERM: one pass {med['erm'] / med['open']:.3f}, two passes "
          f"{med['erm'] / med['open_split']:.3f} (target <= 1.05)", flush=True)


if __name__ == "__main__":
    main()
