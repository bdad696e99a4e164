"""Write RESULTS.md of the Fashion-MNIST-LT regime study from its run folders (no number typed by hand).

    python benchmarks/fmnist_lt/results.py

Every figure in RESULTS.md is computed here from the run folders' eval.json / config.yaml and
``study_log.jsonl``, from the shipped configs, or quoted from the paper (docs/method.md, with
its source). Means and standard deviations are over seeds; differences between methods are
**paired** by seed (the same seed: the same initialization and first phase; every seed trains on
the same long-tailed subset) with a 95% t-interval over the seeds (``purenoise.reporting.replicates``, the code ``purenoise report`` uses).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import evidence_section  # noqa: E402
import readme_block  # noqa: E402
import study_plan  # noqa: E402
from study_runs import LABELS, LT_KEYS, METHOD_ORDER, Study, metric  # noqa: E402,F401
from study_runs import paired as _paired  # noqa: E402
from study_runs import values as _values  # noqa: E402
from purenoise.reporting.text import interval, markdown_table, mean_std_of, pct, verdict, verdict_word  # noqa: E402
from purenoise.run_paths import RunPaths  # noqa: E402

HERE = Path(__file__).resolve().parent
# Facts of the study's history that RESULTS.md quotes (the commit that fixed the main cell's rule),
# kept as data beside this file so that rendering the page needs no git.
PROVENANCE = HERE / "provenance.json"
CELL_TITLES = {
    "fmnist_lt_r100_n1000": "n_max 1000, widths x1 (16-32-64), 200 epochs",
    "fmnist_lt_r100_n1000_w2": "n_max 1000, widths x2 (32-64-128), 200 epochs",
    "fmnist_lt_r100_n1000_w4": "n_max 1000, widths x4 (64-128-256), 200 epochs",
    "fmnist_lt_r100_long": "n_max 6000 (full LT set), widths x1, 200 epochs",
    "fmnist_lt_r100": "n_max 6000, widths x1, 30 epochs (the short reference)",
}
DIFFS = (("open", "drs"), ("drs", "rs"), ("open", "erm"), ("open", "rs"))
# The orderings of the paper's Table 1 on CIFAR-10-LT 100 (OPeN > DRS > ERM > RS; figures in PAPER).
CLAIMS = (("open", "drs"), ("drs", "erm"), ("erm", "rs"), ("open", "erm"), ("drs", "rs"), ("open", "rs"))
BONFERRONI = 1 - 0.05 / len(CLAIMS)  # the level at which a cell's orderings hold together
# The paper's and the reproduction's top-1 (%), WRN-28-10 (docs/method.md, section 4), to compare with.
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




def _method_rows(s: Study, cell: str, methods, keys=LT_KEYS) -> list[list[str]]:
    rows = []
    for m in methods:
        g = s.get(cell, m)
        if g is None:
            continue
        rows.append([LABELS.get(m, m), str(len(g.runs)), *(mean_std_of(_values(g, k)) for k in keys)])
    return rows


METHOD_HEAD = ["Method", "Seeds", "Top-1", "Minority half", "Many (>100)", "Medium (20-100)", "Few (<20)",
               "Train top-1 (end)", "Train minority half (end)"]


def _cell_section(s: Study, cell: str) -> list[str]:
    done, total = s.done(cell)
    lines = [f"### `{cell}`: {CELL_TITLES.get(cell, cell)}", "",
             f"{done} of {total} planned runs finished. Accuracies in %, mean ± std over seeds; the two "
             "last columns are the memorization diagnostic (un-augmented training set, eval mode, end of "
             "training).", ""]
    rows = _method_rows(s, cell, METHOD_ORDER)
    if not rows:
        return lines + ["No run finished yet.", ""]
    lines += markdown_table(METHOD_HEAD, rows)
    diffs = [[f"{LABELS[a]} − {LABELS[b]}", *(interval(_paired(s.get(cell, a), s.get(cell, b), k))
                                             for k in ("top1", "minority_half")),
              (lambda d: "-" if d is None else f"{d['wins']}/{d['n']}")(_paired(s.get(cell, a), s.get(cell, b)))]
             for a, b in DIFFS]
    lines += ["", "Paired differences (points; mean ± std [95% t-interval] over shared seeds):", ""]
    lines += markdown_table(["Difference", "Top-1", "Minority half", "Seeds ahead"], diffs)
    lines += ["", "The paper's orderings, tested on paired top-1:", ""]
    lines += markdown_table(["Claim", "Paired difference", "Verdict"],
                    [[f"{LABELS[a]} > {LABELS[b]}", interval(_paired(s.get(cell, a), s.get(cell, b))),
                      verdict(_paired(s.get(cell, a), s.get(cell, b)))] for a, b in CLAIMS])
    return lines + [""]


def _claims_overview(s: Study) -> list[str]:
    """The paper's orderings, one row each, one column per cell with paired runs: which way they fall."""
    cells = [c for c in (*study_plan.REGIME_CELLS, study_plan.WIDE_CELL, study_plan.SHORT_CELL)
             if any(s.get(c, m) and len(s.get(c, m).runs) > 1 for m in ("drs", "open", "rs"))]
    if not cells:
        return []

    def short(c: str, a: str, b: str) -> str:
        d = _paired(s.get(c, a), s.get(c, b))
        if verdict_word(d) is None:
            return "-"
        strict = verdict_word(_paired(s.get(c, a), s.get(c, b), level=BONFERRONI))
        return f"{verdict_word(d)} ({100 * d['mean']:+.2f}); Bonferroni: {strict}"

    rows = [[f"{LABELS[a]} > {LABELS[b]}", *(short(c, a, b) for c in cells)] for a, b in CLAIMS]
    return ([f"Each ordering tested on paired top-1 in every cell: it **holds** when the 95% interval of the "
             "difference (in brackets: its mean, points) lies above 0, is **reversed** when it lies below 0, "
             "and is not resolved when the interval contains 0 (no equivalence margin is tested here, so "
             "\"not resolved\" never means \"the same\"); - : fewer than two paired seeds. Every ordering "
             "follows from the paper's Table 1 (OPeN > DRS > ERM > RS on CIFAR-10-LT). \"Bonferroni\" gives the "
             f"verdict of the {100 * BONFERRONI:.2f}% interval: the correction for the {len(CLAIMS)} orderings "
             f"tested in each cell (0.05 / {len(CLAIMS)} each), for a reader who wants the verdicts of a cell "
             "to hold together.", ""]
            + markdown_table(["Ordering", *(f"`{c}`" for c in cells)], rows) + [""])


def _headline_points(s: Study) -> list[tuple]:
    """(cell, x: DRS minority-half training accuracy, y: OPeN − DRS top-1, lo, hi, the paired
    difference) per cell with at least two paired seeds; x, y, lo, hi in points."""
    pts = []
    for cell in (*study_plan.REGIME_CELLS, study_plan.WIDE_CELL, study_plan.SHORT_CELL):
        d = _paired(s.get(cell, "open"), s.get(cell, "drs"))
        x = _values(s.get(cell, "drs"), "train_minority_half")
        if d is not None and d["n"] >= 2 and x:
            pts.append((cell, 100 * statistics.fmean(x), 100 * d["mean"], 100 * d["lo"], 100 * d["hi"], d))
    return pts


def _rule_provenance() -> dict:
    """The main cell's rule as ``provenance.json`` records it: its file, commit and commit time."""
    return json.loads(PROVENANCE.read_text(encoding="utf-8"))["main_cell_rule"]


def _machines(log: list[dict]) -> str:
    seen = sorted({e.get("machine", "not recorded") for e in log})
    return "; ".join(seen) if seen else "no run yet"


def _selection(s: Study) -> list[str]:
    import select_cell

    choice = s.main or select_cell.select(s.root)
    rule = _rule_provenance()
    lines = ["## The main job's cell", "",
             f"Chosen by a rule on memorization alone (it reads no OPeN number): {choice['rule']}. The rule "
             f"is in `{rule['file']}` since commit {rule['commit']} ({rule['committed']}); the study's first "
             f"run finished at {min((e['finished'] for e in s.log), default='-')}, and its first OPeN run later.", ""]
    rows = []
    for c in choice["cells"]:
        now = select_cell.erm_memorization(s.root, c["cell"])  # measured now, unfinished cells included
        rows.append([f"`{c['cell']}`", f"{c['pflop']:.3f}", ", ".join(pct(a) for a in c["erm_train_top1"]),
                     ", ".join(pct(a) for a in now),
                     {True: "yes", False: "no", None: "not decided"}[c["memorizes"]]])
    lines += markdown_table(["Cell", "Training work (PFLOP)", "ERM train top-1, seeds 0-2, at the choice (%)",
                             "The same now (%)", "≥ 99%?"], rows)
    lines += ["", "The rule stopped at the first cell that memorizes, so cells it did not need were not decided; "
              "the column \"now\" shows their ERM runs as they finished later."]
    if s.main is None:
        return lines + ["", "**Not chosen yet**: the cheapest cells are not all decided (their ERM runs are "
                        "not finished). `python benchmarks/fmnist_lt/select_cell.py` writes the choice once "
                        "they are.", ""]
    return lines + ["", f"Chosen: **`{s.main['cell']}`** (decided {s.main['decided']}).", ""]


def write(runs: Path, out: Path) -> Path:
    from purenoise.reporting import plots
    from purenoise.fileio import atomic_write_text

    s = Study(runs)
    done = sum(RunPaths(spec.folder(runs)).eval.exists() for spec in s.required)
    total_s = sum(e["seconds"] for e in s.log)  # every logged part of every run
    pts = _headline_points(s)
    ahead = [p[0] for p in pts if p[3] > 0]
    lines = ["# Fashion-MNIST-LT: where pure noise pays off", "",
             f"Written by `benchmarks/fmnist_lt/results.py` from the run folders in "
             f"`benchmarks/fmnist_lt/runs/` on {time.strftime('%Y-%m-%d')}; every number below comes from a "
             "script. Regenerate with `python benchmarks/fmnist_lt/study.py` (all plans, resumable; it runs "
             "`select_cell.py` on the way) and `python benchmarks/fmnist_lt/results.py`.", "",
             "## In short", ""]
    status = (f"**The study is not finished: {done} of {len(s.required)} required runs are done**, so what "
              "follows is provisional." if done < len(s.required) else f"All {done} required runs are done.")
    if len(s.planned) > len(s.required):
        wide = [x for x in s.planned if x not in s.required]
        status += (f" The optional x4 cell (trained only if no cheaper cell memorizes) has "
                   f"{sum(RunPaths(x.folder(runs)).eval.exists() for x in wide)} of {len(wide)} runs.")
    lines.append(status)
    if pts:
        lines.append("OPeN − DRS (top-1, paired by seed): its 95% interval lies above 0 in "
                     + (", ".join(f"`{c}`" for c in ahead) if ahead else "**no cell so far**")
                     + f" ({len(ahead)} of the {len(pts)} cells with paired seeds).")
    lines += ["", *_claims_overview(s)][:-1]
    lines += ["", "## Set-up", "",
              "- **Data**: Fashion-MNIST (Debian's `dataset-fashion-mnist`), long-tailed with the LDAM-DRW rule "
              "(ratio 100, exponential profile); the test set is the balanced 10,000 images, so top-1 equals "
              "balanced accuracy. Cells vary the data (`n_max` 6000 or 1000 images in the largest class) and "
              "the width of `resnet_small`; configs are in `configs/<cell>/`.",
              "- **Schedule**: the paper's CIFAR shape (`configs/_base/fmnist_lt_paper.yaml`): 200 epochs, "
              "5 warm-up epochs, lr x0.01 at 160 and 180, DRS/OPeN from 160, weight decay 2e-4, batch 128, "
              "flip and crop; the short reference cell `fmnist_lt_r100` keeps its 30-epoch schedule "
              "(`configs/_base/fmnist_lt.yaml`), which also differs in weight decay (5e-4) and warm-up (1 "
              "epoch), so it differs from the long cell in more than its length. DRS and OPeN branch from the ERM run of the same seed at "
              "the defer epoch.",
              "- **Seeds and intervals**: the training seed changes the initialization and every sampling "
              "and augmentation draw; all seeds share one long-tailed subset (`subset_seed` 0, LDAM-DRW's). "
              "Intervals are 95% t-intervals over paired seeds, one per comparison, with no correction for "
              "the number of comparisons made on this page.",
              f"- **Machine(s)**: {_machines(s.log)}; torch {_torch()}. CPU runs repeat bit for bit on one "
              "CPU model, not across models.",
              f"- **Wall time**: {len(s.runs_logged)} runs logged, {total_s / 3600:.2f} h in all (on a shared "
              "machine: times include other work). Every part of a run counts, the parts an interruption "
              "ended included, as `study.py` logs them since 2026-12-06; runs trained by older code logged only "
              "the part that finished them, so where those were resumed the total is a lower bound. A run "
              "finished by hand outside the study's scripts is not logged at all (the evidence study's "
              "deviations name the one).", ""]
    lines += _selection(s)
    lines += ["## The headline: OPeN − DRS against memorization", ""]
    if pts:
        fig = plots.plot_intervals(
            [p[:5] for p in pts], out.parent / "figures" / "open_minus_drs.png",
            "training accuracy of the minority half at the end of the DRS run (%)",
            "OPeN − DRS, top-1 (points, 95% interval)", "Where pure noise pays off")
        gap = [(c, 100 * statistics.fmean(_values(s.get(c, "drs"), "gap_minority_half")), *rest)
               for c, _, *rest in (p[:5] for p in pts)]
        fig_gap = plots.plot_intervals(
            gap, out.parent / "figures" / "open_minus_drs_gap.png",
            "DRS run: training minus test accuracy of the minority half (points)",
            "OPeN − DRS, top-1 (points, 95% interval)", "The same against the generalization gap")
        lines += ["One point per cell with paired seeds. The cells differ in more than memorization (images per "
                  "class, width, schedule), so the figure maps the cells; it is not a dose-response curve, and "
                  f"{len(pts)} points cannot show a trend on their own.", "",
                  f"![OPeN minus DRS against memorization](figures/{fig.name})", "",
                  "A second measure of memorization: how far the DRS run's "
                  "training accuracy on the minority half stands above its test accuracy there.", "",
                  f"![OPeN minus DRS against the generalization gap](figures/{fig_gap.name})", ""]
        lines += markdown_table(["Cell", "DRS train minority half (%)", "DRS gap, minority half (points)",
                                 "OPeN − DRS, top-1 (points, mean ± std [95% interval])", "Seeds ahead"],
                                [[f"`{p[0]}`", mean_std_of(_values(s.get(p[0], "drs"), "train_minority_half")),
                                  mean_std_of(_values(s.get(p[0], "drs"), "gap_minority_half")),
                                  interval(p[5]), f"{p[5]['wins']}/{p[5]['n']}"] for p in pts])
        lines.append("")
    else:
        lines += ["No cell has two paired seeds of DRS and OPeN yet.", ""]
    lines += evidence_section.section(runs)
    lines += ["## The cells", ""]
    for cell in (*study_plan.REGIME_CELLS, study_plan.WIDE_CELL, study_plan.SHORT_CELL):
        lines += _cell_section(s, cell)
    if s.main:
        cell = s.main["cell"]
        lines += [f"## BN ablation and delta in the main cell (`{cell}`)", ""]
        rows = _method_rows(s, cell, ("open_bn_standard", "open_bn_aux", "open", "open_features",
                                      "open_delta_1of6", "open_delta_3of6"))
        lines += markdown_table(METHOD_HEAD, rows) if rows else ["No run finished yet."]
        lines += ["", "OPeN is DAR-BN with noise_grad classifier and delta 2/6 (the paper's code). There is no "
                  "validation split: these variants are compared on the test set, so a delta or BN mode picked "
                  "from this table would be picked on test data. Paired against it:", ""]
        lines += markdown_table(["Variant − OPeN", "Top-1", "Minority half"],
                        [[LABELS[m], interval(_paired(s.get(cell, m), s.get(cell, "open"))),
                          interval(_paired(s.get(cell, m), s.get(cell, "open"), "minority_half"))]
                         for m in ("open_bn_standard", "open_bn_aux", "open_features", "open_delta_1of6",
                                   "open_delta_3of6")])
        lines.append("")
    if s.main:
        lines += _main_report(s, s.main["cell"], out.parent / "figures")
    cell = study_plan.BALANCED_CELL
    lines += ["## Noise as augmentation on scarce balanced data (`fmnist_n100_w2`)", "",
              "100 training images per class, widths x2, 200 epochs: `noise_aug` (one noise image per four "
              "natural ones, DAR-BN) against plain ERM. The paper's balanced experiment (CIFAR-10, +0.9 points "
              "reported) trained with Adam at a fixed lr 0.001 and AutoAugment; this cell keeps the study's "
              "SGD schedule and flip and crop, so it tests noise as an augmentation under the study's recipe, "
              "not the paper's exact one. Every class has 100 images, so the frequency columns of the other "
              "tables have no meaning here.", ""]
    rows = _method_rows(s, cell, ("erm", "noise_aug"), ("top1", "train_top1"))
    lines += (markdown_table(["Method", "Seeds", "Top-1", "Train top-1 (end)"], rows)
              if rows else ["No run finished yet."])
    lines += ["", "noise_aug − ERM, top-1 paired: " + interval(_paired(s.get(cell, "noise_aug"), s.get(cell, "erm")))
              + "; " + verdict(_paired(s.get(cell, "noise_aug"), s.get(cell, "erm"))) + ".", ""]
    lines += _gpu_section()
    return atomic_write_text(out, "\n".join(lines) + "\n")


def _main_report(s: Study, cell: str, fig_dir: Path) -> list[str]:
    """``purenoise report`` of the main cell's ERM, DRS and OPeN runs, every seed, grouped by method."""
    from purenoise.reporting.report import make_report

    runs = [r for m in ("erm", "drs", "open") if s.get(cell, m) for r in s.get(cell, m).runs]
    if not runs:
        return []
    make_report(runs, out_dir=fig_dir, title=f"Fashion-MNIST-LT, main cell {cell}: ERM, DRS, OPeN over seeds")
    return [f"## Figures of the main cell (`{cell}`, mean over seeds, ± one std)", "",
            "![per-class accuracy](figures/per_class_accuracy.png)", "",
            "![training against test accuracy per class](figures/train_vs_test.png)", "",
            "The full report of these runs (`purenoise report`): [figures/report.md](figures/report.md).", ""]


def _torch() -> str:
    import torch

    return torch.__version__


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
    lines += markdown_table(["Setting", "ERM", "RS", "DRS", "OPeN", "Source"], rows)
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
    ap.add_argument("--runs", default=str(study_plan.RUNS))
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    args = ap.parse_args(argv)
    path = write(Path(args.runs), Path(args.out))
    print(f"wrote {path}")
    if Path(args.runs).resolve() == study_plan.RUNS.resolve():  # the README summarizes the study's own runs
        readme = study_plan.REPO / "README.md"
        changed = readme_block.update(readme, readme_block.render(Study(Path(args.runs))))
        print(f"{'updated' if changed else 'unchanged'}: {readme}'s study summary")
        from purenoise.fileio import atomic_write_json

        target = study_plan.REPO / "src" / "purenoise" / "findings.json"  # quoted by compare and report
        atomic_write_json(target, readme_block.findings(Study(Path(args.runs))))
        print(f"wrote {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
