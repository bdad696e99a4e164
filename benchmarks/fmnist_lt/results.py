"""Write RESULTS.md of the Fashion-MNIST-LT study from its run folders (no number typed by hand).

    python benchmarks/fmnist_lt/results.py --runs runs/fmnist_lt

Every figure in RESULTS.md is computed here from eval.json / metrics.jsonl / study_log.jsonl of
the runs, from the shipped configs, or quoted from the paper (SPEC section 4, with its source).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import study  # noqa: E402

HERE = Path(__file__).resolve().parent
METHOD_ORDER = ("erm", "rs", "drs", "open")
LABELS = {"erm": "ERM", "rs": "RS", "drs": "DRS", "open": "OPeN"}
# The paper's and the reproduction's top-1 (%), WRN-28-10 (SPEC section 4), to compare with.
PAPER = [
    ("CIFAR-10-LT, ratio 100", 79.6, 75.1, 83.0, 84.6, "paper Table 1"),
    ("CIFAR-10-LT, ratio 50", 84.9, 82.2, None, 87.9, "paper Table 1"),
    ("CIFAR-100-LT, ratio 100", 47.0, 42.5, None, 51.5, "paper Table 1"),
    ("CIFAR-100-LT, ratio 50", 52.4, 48.0, None, 56.3, "paper Table 1"),
    ("CIFAR-10-LT, ratio 100", 81.18, 74.82, 83.22, 85.04, "reproduction (ReScience C 2023)"),
    ("CIFAR-100-LT, ratio 100", 47.1, 41.6, 50.8, 52.1, "reproduction (ReScience C 2023)"),
]
PAPER_BN = [("CIFAR-10-LT 100", 81.45, 83.38, 84.64), ("CIFAR-100-LT 100", 49.18, 50.13, 51.50)]
PAPER_DELTA = [(1, 83.23), (2, 85.04), (3, 84.34), (4, 84.23), (5, 83.31), (6, 80.01)]


def _pm(values: list[float]) -> str:
    if not values:
        return "-"
    mean = 100 * statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {100 * statistics.stdev(values):.2f}"


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


class Study:
    """The finished runs of the study, by setting and method."""

    def __init__(self, runs: Path) -> None:
        from purenoise.report import load_run, minority_half_accuracy

        self.root = runs
        self.runs: dict[tuple[str, str], list] = {}
        for spec in study.plan("all"):
            folder = spec.folder(runs)
            if (folder / "eval.json").exists():
                run = load_run(folder)
                run.minority_half = minority_half_accuracy(run.eval["per_class_acc"], run.eval["class_counts"])
                self.runs.setdefault((spec.setting, spec.method), []).append(run)
        self.log = []
        log = runs / "study_log.jsonl"
        if log.exists():
            # A run trained again (after a code change) counts once, with its latest time.
            entries = [json.loads(x) for x in log.read_text().splitlines() if x.strip()]
            self.log = list({e["run"]: e for e in entries}.values())

    def values(self, setting: str, method: str, key: str) -> list[float]:
        out = []
        for run in self.runs.get((setting, method), []):
            v = run.minority_half if key == "minority_half" else run.eval.get(key)
            if v is not None:
                out.append(v)
        return out

    def row(self, setting: str, method: str, label: str | None = None) -> list[str]:
        n = len(self.runs.get((setting, method), []))
        keys = ("top1", "many", "medium", "few", "minority_half")
        return [label or LABELS.get(method, method), *[_pm(self.values(setting, method, k)) for k in keys], str(n)]


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def _claim(name: str, order: list[tuple[str, float | None]], spread: dict[str, float] | None = None,
           metric: str = "mean top-1") -> str:
    """One claim's verdict on mean top-1, and whether each gap in it exceeds the seed spread.

    ``spread``: per entry, the standard deviation over seeds; a gap smaller than the larger of
    the two deviations is flagged as no evidence either way.
    """
    known = [(m, v) for m, v in order if v is not None]
    if len(known) < len(order):
        return f"- {name}: not all runs are finished yet."
    holds = all(a[1] > b[1] for a, b in zip(known, known[1:]))
    chain = " > ".join(f"{m} ({100 * v:.2f})" for m, v in known)
    if holds:
        line = f"- **{name}: holds** on {metric}: {chain}."
    else:
        ranked = sorted(known, key=lambda x: -x[1])
        line = f"- **{name}: does not hold** on {metric}; the order is " + \
            " > ".join(f"{m} ({100 * v:.2f})" for m, v in ranked) + "."
        known = ranked
    if spread:
        small = [f"{a[0]} vs {b[0]} ({100 * (a[1] - b[1]):.2f} points, seed std up to "
                 f"{100 * max(spread.get(a[0], 0.0), spread.get(b[0], 0.0)):.2f})"
                 for a, b in zip(known, known[1:])
                 if a[1] - b[1] < max(spread.get(a[0], 0.0), spread.get(b[0], 0.0))]
        if small:
            line += " Within one seed standard deviation: " + "; ".join(small) + "."
    return line


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}"


def _recipe(setting: str) -> dict:
    from purenoise.config import load_config

    return load_config(study.REPO / "configs" / setting / "open.yaml")


def write(runs: Path, out: Path, joint_runs: Path | None = None) -> Path:
    from purenoise.models import create_model

    s = Study(runs)
    cfg = _recipe("fmnist_lt_r100")
    params = sum(p.numel() for p in create_model(cfg["model"], 10, in_chans=1).parameters())
    paper_cfg = _recipe("cifar10_lt_r100")
    paper_params = sum(p.numel() for p in create_model(paper_cfg["model"], 10).parameters())
    lines = ["# Fashion-MNIST-LT study: results", "",
             f"Written by `benchmarks/fmnist_lt/results.py` from the run folders on "
             f"{time.strftime('%Y-%m-%d')}; every number below comes from a script. Regenerate with "
             "`python benchmarks/fmnist_lt/study.py --plan all && python benchmarks/fmnist_lt/results.py`.", ""]

    # ------------------------------------------------------------------ set-up
    counts = {}
    for setting in ("fmnist_lt_r100", "fmnist_lt_r50"):
        some = next(iter(s.runs.get((setting, "erm"), [])), None)
        if some is not None:
            counts[setting] = some.eval["class_counts"]
    total_s = sum(e["seconds"] for e in s.log)
    lines += ["## Set-up", "",
              "- **Data**: Fashion-MNIST (Debian's `dataset-fashion-mnist`), long-tailed with the LDAM-DRW "
              "rule (exponential profile, class order as labelled, numpy seed 0); the test set is the "
              "original balanced 10,000 images, so top-1 equals balanced accuracy."]
    for setting, c in counts.items():
        lines.append(f"  - {setting}: {sum(c):,} training images, per class {', '.join(map(str, c))}.")
    lines += [
        f"- **Recipe** (`configs/_base/fmnist_lt.yaml`): `{cfg['model']}` ({params:,} parameters, "
        f"{cfg['epochs']} epochs, batch {cfg['batch_size']}, SGD lr {cfg['lr']} momentum {cfg['momentum']} "
        f"weight decay {cfg['weight_decay']}, {cfg['warmup_epochs']:g} warm-up epoch, lr x{cfg['lr_decay']} at "
        f"epochs {', '.join(map(str, cfg['milestones']))}, augmentation `{cfg['augment']}`, DRS/OPeN from epoch "
        f"{cfg['defer_epoch']}, delta {cfg['delta']:.4f}, `{cfg['bn_mode']}` with noise_grad `{cfg['noise_grad']}`, "
        f"loader `{cfg['loader']}`).",
        "  Why: it is the paper's CIFAR schedule (200 epochs, switch and decays at 80% and 90%) scaled to "
        "a budget where one seed of all four methods trains in minutes on a 2-core CPU; the small ResNet "
        "keeps BatchNorm layers for DAR-BN; flip and crop are the usual Fashion-MNIST augmentation "
        "(colour jitter means little on grayscale clothing).",
        "- **Seeds**: 0, 1, 2 (training seed; the long-tailed subset is the same for all). DRS and OPeN "
        "runs branch from the ERM run of the same seed at the defer epoch (`--init-from`), so the three "
        "share their first phase exactly.",
        f"- **Machine**: {_machine()}.",
        f"- **Wall time**: {len(s.log)} training runs took {total_s / 3600:.2f} h in all "
        f"(per run: {', '.join(f'{k} {v}' for k, v in _time_summary(s.log).items())}).", ""]

    # ------------------------------------------------------------------ main table
    lines += ["## ERM, RS, DRS and OPeN (top-1 %, mean ± std over seeds)", ""]
    for setting, ratio in (("fmnist_lt_r100", 100), ("fmnist_lt_r50", 50)):
        lines += [f"### Imbalance ratio {ratio}", ""]
        head = ["Method", "Top-1", "Many (>100)", "Medium (20-100)", "Few (<20)", "Minority half", "Seeds"]
        lines += _table(head, [s.row(setting, m) for m in METHOD_ORDER])
        lines += ["", f"Commands: `python benchmarks/fmnist_lt/study.py --plan main` runs, per seed S: "
                  f"`purenoise train --config configs/{setting}/erm.yaml --set seed=S --out "
                  f"runs/fmnist_lt/{setting}/erm_sS` (likewise `rs`), and `purenoise train --config "
                  f"configs/{setting}/drs.yaml --set seed=S --init-from runs/fmnist_lt/{setting}/erm_sS ...` "
                  "(likewise `open`).", ""]

    # ------------------------------------------------------------------ ablations
    r = "fmnist_lt_r100"
    lines += ["## BatchNorm ablation (ratio 100, OPeN)", ""]
    bn_rows = [s.row(r, "open_bn_standard", "standard BN (noise shares the BN)"),
               s.row(r, "open_bn_aux", "auxiliary BN (own statistics and affine)"),
               s.row(r, "open", "DAR-BN, noise_grad classifier (paper's code)"),
               s.row(r, "open_features", "DAR-BN, noise_grad features")]
    lines += _table(["BN for noise", "Top-1", "Many", "Medium", "Few", "Minority half", "Seeds"], bn_rows)
    lines += ["", "Commands: `python benchmarks/fmnist_lt/study.py --plan ablation` (configs "
              "`open_bn_standard.yaml`, `open_bn_aux.yaml`, `open_features.yaml` in `configs/fmnist_lt_r100/`, "
              "each branched from `erm_sS`).", "",
              "## Delta sweep (ratio 100, OPeN)", ""]
    delta_rows = []
    for k in range(1, 7):
        method = "open" if k == 2 else f"open_delta_{k}of6"
        delta_rows.append(s.row(r, method, f"{k}/6"))
    lines += _table(["delta", "Top-1", "Many", "Medium", "Few", "Minority half", "Seeds"], delta_rows)
    lines += ["", "delta 2/6 equals the default 1/3, so that row is the main OPeN run. Commands: "
              "`python benchmarks/fmnist_lt/study.py --plan delta` (configs `open_delta_Kof6.yaml`).", ""]

    # ------------------------------------------------------------------ claims
    lines += ["## Which of the paper's claims hold here", ""]
    for setting, ratio in (("fmnist_lt_r100", 100), ("fmnist_lt_r50", 50)):
        methods = ("open", "drs", "erm", "rs")
        order = [(LABELS[m], _mean(s.values(setting, m, "top1"))) for m in methods]
        spread = {LABELS[m]: _std(s.values(setting, m, "top1")) for m in methods}
        lines.append(_claim(f"OPeN > DRS > ERM > RS at ratio {ratio}", order, spread))
    bn = (("DAR-BN", "open"), ("aux BN", "open_bn_aux"), ("standard BN", "open_bn_standard"))
    bn_order = [(label, _mean(s.values(r, m, "top1"))) for label, m in bn]
    lines.append(_claim("DAR-BN > auxiliary BN > standard BN (ratio 100)", bn_order,
                        {label: _std(s.values(r, m, "top1")) for label, m in bn}))
    minority = [(LABELS[m], _mean(s.values(r, m, "minority_half"))) for m in ("open", "drs", "erm")]
    lines.append(_claim("on the minority half of the classes, OPeN > DRS > ERM (ratio 100)", minority,
                        {LABELS[m]: _std(s.values(r, m, "minority_half")) for m in ("open", "drs", "erm")},
                        metric="mean accuracy over the smaller half of the classes"))
    lines += ["", "Differences smaller than the seed standard deviations above are not evidence either "
              "way; three seeds are few.", "",
              "A possible reading, not tested here: the paper's case against RS and for OPeN is that a "
              f"large network (WRN-28-10, {paper_params / 1e6:.1f}M parameters, {paper_cfg['epochs']} epochs) "
              "memorizes the few images of a minority class when it sees them again and again. This "
              f"recipe's network has {params / 1e3:.0f}k parameters and {cfg['epochs']} epochs, and "
              "Fashion-MNIST's classes are easy to tell apart, so oversampling alone has little to overfit, "
              "and pure noise (which regularizes against that overfitting) has little to correct. A longer "
              "schedule or a larger model on this data would be the next experiment.", ""]

    # ------------------------------------------------------------------ figures
    fig_dir = out.parent / "figures"
    seed0 = [run for m in METHOD_ORDER for run in s.runs.get((r, m), []) if run.config.get("seed") == 0]
    if seed0:
        from purenoise.report import make_report

        make_report(seed0, out_dir=fig_dir, title="Fashion-MNIST-LT ratio 100, seed 0")
        lines += ["## Figures (ratio 100, seed 0)", "",
                  "![per-class accuracy](figures/per_class_accuracy.png)", "",
                  "![frequency groups](figures/frequency_groups.png)", "",
                  "![training curves](figures/training_curves.png)", ""]
        samples = sorted(fig_dir.glob("samples_*.png"))
        if samples:
            lines += [f"![pure-noise images next to real ones](figures/{samples[0].name})", ""]
        lines += ["The full report of these runs: [figures/report.md](figures/report.md).", ""]

    if joint_runs is not None and joint_runs.is_dir():
        lines += _noise_pass_section(runs, joint_runs)
    lines += _gpu_section()
    from purenoise.engine.checkpoint import atomic_write_text

    atomic_write_text(out, "\n".join(lines) + "\n")
    return out


def _noise_pass_section(runs: Path, joint_runs: Path) -> list[str]:
    """The OPeN runs trained both ways: noise rows in their own pass (now) and in one pass."""
    rows, diffs = [], []
    for spec in study.plan("all"):
        a, b = spec.folder(runs) / "eval.json", spec.folder(joint_runs) / "eval.json"
        if a.exists() and b.exists():
            split, joint = (json.loads(p.read_text())["top1"] * 100 for p in (a, b))
            diffs.append(split - joint)
            rows.append([f"{spec.setting}/{spec.name}", f"{split:.2f}", f"{joint:.2f}", f"{split - joint:+.2f}"])
    if not rows:
        return []
    mean_abs = sum(abs(d) for d in diffs) / len(diffs)
    lines = ["## One forward pass or two (`noise_pass`)", "",
             f"The OPeN runs above forward the noise rows in a pass of their own (`noise_pass: auto`); "
             f"their earlier versions, in `{joint_runs}`, used one pass for all rows (what `noise_pass: "
             "joint` does). The two compute the same values and gradients up to float rounding, and "
             "rounding differences grow over training steps, so the runs end close but not equal. "
             f"Over {len(rows)} runs, top-1 differs by {mean_abs:.2f} points on average "
             f"(largest {max(abs(d) for d in diffs):.2f}; mean signed difference "
             f"{sum(diffs) / len(diffs):+.2f}).", ""]
    lines += _table(["Run", "Top-1 two passes", "Top-1 one pass", "Difference"], rows)
    return lines + [""]


def _time_summary(log: list[dict]) -> dict[str, str]:
    full = [e["seconds"] for e in log if not e.get("parent")]
    branch = [e["seconds"] for e in log if e.get("parent")]
    out = {}
    if full:
        out["full runs median"] = f"{statistics.median(full) / 60:.1f} min"
    if branch:
        out["branched runs median"] = f"{statistics.median(branch) / 60:.1f} min"
    return out


def _gpu_section() -> list[str]:
    lines = ["## The paper's benchmarks on a GPU machine", "",
             "None of these were run for this page: CIFAR, CelebA, ImageNet and Places cannot be downloaded "
             "on the machine that wrote it. To run them:", "",
             "1. Data: CIFAR-10/100 as torchvision's `cifar-10-batches-py/` / `cifar-100-python/` under "
             "`data/` (or `--set download=true`); CelebA's `img_align_celeba/`, `list_attr_celeba.txt`, "
             "`list_eval_partition.txt` under `data/celeba/`; ImageNet-LT / Places-LT: the OLTR split files "
             "(`ImageNet_LT_train.txt`, ...) next to the ImageNet / Places365-Standard images "
             "(`--set data_root=...`). `purenoise data info NAME --root DIR` checks a dataset.",
             "2. One command per table row (per seed), ERM first so the others branch from it:", "",
             "```bash"]
    for setting in ("cifar10_lt_r100", "cifar10_lt_r50", "cifar100_lt_r100", "cifar100_lt_r50"):
        lines += [f"purenoise train -c configs/{setting}/erm.yaml --out runs/{setting}/erm",
                  f"purenoise train -c configs/{setting}/rs.yaml --out runs/{setting}/rs"]
        lines += [f"purenoise train -c configs/{setting}/{m}.yaml --out runs/{setting}/{m} "
                  f"--init-from runs/{setting}/erm" for m in ("drs", "open")]
    lines += ["# BN ablation, noise gradient, augmentation ablation and delta sweep (CIFAR-10-LT 100):",
              "for c in open_bn_standard open_bn_aux open_features open_aug_basic open_aug_cutout \\",
              "         open_delta_1of6 open_delta_3of6 open_delta_4of6 open_delta_5of6 open_delta_6of6; do",
              "  purenoise train -c configs/cifar10_lt_r100/$c.yaml --out runs/cifar10_lt_r100/$c "
              "--init-from runs/cifar10_lt_r100/erm; done",
              "# (erm_aug_basic / drs_aug_basic etc. need their own ERM parent with the same augmentation)",
              "purenoise train -c configs/celeba5/erm.yaml --out runs/celeba5/erm",
              "purenoise train -c configs/celeba5/open.yaml --out runs/celeba5/open --init-from runs/celeba5/erm",
              "torchrun --nproc_per_node=8 -m purenoise train -c configs/imagenet_lt/open.yaml --out runs/imagenet_lt/open",
              "torchrun --nproc_per_node=8 -m purenoise train -c configs/places_lt/open.yaml --out runs/places_lt/open",
              "purenoise train -c configs/cifar10_balanced/noise_aug.yaml --out runs/cifar10_balanced/noise_aug",
              "```", "",
              "3. Compare with the published numbers (top-1 %, balanced test sets, WRN-28-10):", ""]
    rows = [[name, *["-" if v is None else f"{v:.2f}" for v in vals], src] for name, *vals, src in PAPER]
    lines += _table(["Setting", "ERM", "RS", "DRS", "OPeN", "Source"], rows)
    lines += ["", "BN ablation (OPeN, ratio 100): " + "; ".join(
        f"{n}: standard {a:.2f}, aux {b:.2f}, DAR-BN {c:.2f}" for n, a, b, c in PAPER_BN) +
        ". Reproduction's delta sweep (CIFAR-10-LT 100): " +
        ", ".join(f"{k}/6: {v:.2f}" for k, v in PAPER_DELTA) + ".",
        "The paper's headline error rates: 13.9 (CIFAR-10-LT 100), 45.8 (CIFAR-100-LT 100), 40.2 "
        "(CIFAR-100-LT 50), 19.1 (CelebA-5); top-1 55.1 on ImageNet-LT (ResNeXt-50) and 40.5 on "
        "Places-LT (ResNet-152).", ""]
    measured = sorted((HERE.parent / "gpu_runs").glob("*_gpu_bench.json"))
    if measured:
        lines += ["Expected wall time of the 200-epoch CIFAR-10-LT OPeN recipe, projected by "
                  "`benchmarks/gpu_bench.py` (part of `gpu_check.sh`) from epochs of the real trainer on "
                  "CIFAR-shaped synthetic data (WRN-28-10, bf16, channels_last, compiled, device loader, "
                  "compile time and checkpoints included):", ""]
        for f in measured:
            g = json.loads(f.read_text())
            lines.append(f"- {g.get('gpu')}, torch {g.get('torch')}: {g['projected_recipe_s'] / 60:.1f} min "
                         f"(ERM steps {g['erm_img_s']:,.0f} img/s, OPeN/ERM step time "
                         f"{g['open_over_erm_time']:.3f}; `benchmarks/gpu_runs/{f.name}`)")
        lines += ["", "The reproduction reports about 1 h 50 min for 200 ERM epochs on one RTX A5000.", ""]
    else:
        lines += ["Expected wall time on a GPU: not measured yet (`benchmarks/gpu_check.sh` prints the "
                  "projection for the 200-epoch CIFAR-10-LT recipe). The reproduction reports about "
                  "1 h 50 min for 200 ERM epochs on one RTX A5000.", ""]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", default="runs/fmnist_lt")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--joint-runs", default="runs/fmnist_lt_joint",
                    help="the OPeN runs trained with one joint pass, compared when the folder exists")
    args = ap.parse_args(argv)
    os.chdir(study.REPO)
    path = write(Path(args.runs), Path(args.out), Path(args.joint_runs))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
