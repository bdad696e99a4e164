"""Where a WRN-28-10 training step's time goes on a GPU: model, optimizer, loader, OPeN, syncs.

Times each part alone on warm (compiled) code, so a slow full step can be traced to its cause.
Every "step" figure is the trainer's own step (``purenoise.engine.step.train_step`` through
``benchmarks/_step.py``: OPeN transform, routed forward, bf16 autocast, backward, clipping when
``--grad-clip`` is given, SGD step, scheduler step); the "only" figures time one piece of it.

    python benchmarks/gpu_breakdown.py            # CUDA
    python benchmarks/gpu_breakdown.py --device cpu --quick
    python benchmarks/gpu_breakdown.py --mode max-autotune-no-cudagraphs   # autotuned kernels
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from purenoise import OPeN, PureNoise, convert_darbn, noise_routing
from purenoise.models import create_model

from _common import CIFAR10_LT_COUNTS
from _step import Step


def timed(fn, device, reps: int, warm: int = 3) -> float:
    """Median seconds of ``fn`` over ``reps`` calls, synchronized."""
    for _ in range(warm):
        fn()
    out = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--mode", default=None,
                    help="torch.compile mode, e.g. max-autotune-no-cudagraphs: inductor then times its own "
                         "convolution and matmul templates against cuDNN's (long compile)")
    ap.add_argument("--noise-pass", default="auto", choices=["auto", "joint", "split"],
                    help="how OPeN steps forward their noise rows (the trainer's config key noise_pass)")
    ap.add_argument("--grad-clip", type=float, default=None, help="clip the gradient norm (config key grad_clip)")
    args = ap.parse_args()
    device = torch.device(args.device)
    quick = args.quick
    model_name, batch = ("wrn16_4", 32) if quick else ("wrn28_10", 128)
    reps = 3 if quick else args.reps
    torch.manual_seed(0)
    model = convert_darbn(create_model(model_name, 10)).to(device).to(memory_format=torch.channels_last)
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    open_ = OPeN(CIFAR10_LT_COUNTS, 1 / 3, noise=PureNoise(mean, std), normalize=(mean, std))
    gen = torch.Generator(device).manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.arange(batch, device=device) % 10
    results = {}

    def step(m, open_k: bool, **kw) -> Step:
        """The trainer's step on ``m`` (OPeN when ``open_k``), bf16 autocast, this run's options."""
        return Step(m, x, y, open_=open_ if open_k else None, amp=torch.bfloat16, lr=1e-3,
                    noise_pass=args.noise_pass, grad_clip=args.grad_clip, **kw)

    erm_eager, open_eager = step(model, False), step(model, True)
    results["eager ERM step"] = timed(erm_eager, device, reps)
    results["eager OPeN step"] = timed(open_eager, device, reps)
    compiled = torch.compile(model, mode=args.mode)
    erm_compiled, open_compiled = step(compiled, False), step(compiled, True)
    t0 = time.perf_counter()
    erm_compiled()
    results["compile ERM graph (s, once)"] = time.perf_counter() - t0
    results["compiled ERM step"] = timed(erm_compiled, device, reps)
    t0 = time.perf_counter()
    open_compiled()
    results["compile OPeN graph (s, once)"] = time.perf_counter() - t0
    results["compiled OPeN step"] = timed(open_compiled, device, reps)
    if device.type == "cuda":
        opt_fused = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=2e-4, fused=True)
        results["compiled ERM step, fused SGD"] = timed(step(compiled, False, optimizer=opt_fused), device, reps)

    def fwd_bwd():
        """Forward and backward alone: the step without noise, optimizer and scheduler."""
        with torch.autocast(device.type, dtype=torch.bfloat16), noise_routing(compiled, 0):
            out = compiled(x)
        F.cross_entropy(out.float(), y).backward()
    results["compiled ERM forward+backward only"] = timed(fwd_bwd, device, reps)
    results["optimizer step only (foreach)"] = timed(erm_compiled.opt.step, device, reps)
    results["OPeN transform (batch)"] = timed(lambda: open_(x, y, generator=gen), device, reps)

    from purenoise.data.batch_augment import create_batch_augment

    augment = create_batch_augment("cifar_simclr", image_size=32, channels=3, cutout_fill=mean)
    data = torch.randint(0, 256, (12406, 3, 32, 32), dtype=torch.uint8, device=device)
    index = torch.randint(0, 12406, (batch,), device=device)
    results["device augmentation cifar_simclr (batch)"] = timed(lambda: augment(data, index, gen), device, reps)
    if device.type == "cuda":
        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            for _ in range(5):
                augment(data, index, gen)
                open_compiled()  # the OPeN transform runs inside the step
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=18, max_name_column_width=60))
    ks = open_eager.noise_counts + open_compiled.noise_counts
    print(f"{model_name}, batch {batch}, {device}, torch {torch.__version__}, compile mode {args.mode or 'default'}, "
          f"noise_pass {args.noise_pass}, grad_clip {args.grad_clip}; OPeN steps: {sum(ks) / len(ks):.1f} noise "
          f"rows on average ({min(ks)}-{max(ks)})")
    for k, v in results.items():
        per_img = "" if "(s, once)" in k else f"  -> {batch / v:,.0f} img/s"
        print(f"  {k:<40} {v * 1e3:9.2f} ms{per_img}")


if __name__ == "__main__":
    main()
