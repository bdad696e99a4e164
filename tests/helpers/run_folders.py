"""Run folders written the way the trainer writes them, for the report, replicate and study tests.

config.yaml, metrics.jsonl, eval.json and samples.pt of a 10-class Fashion-MNIST-LT at imbalance
ratio 100, with an eval.json whose numbers are consistent with its confusion matrix.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml

NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
COUNTS = [int(5000 * 0.01 ** (i / 9)) for i in range(10)]  # 5000 ... 50, ratio 100
TEST_PER_CLASS = 1000
# per-class accuracies (most to least frequent) loosely shaped like the paper's figure
ACCS = {
    "erm": [0.97, 0.98, 0.90, 0.88, 0.82, 0.80, 0.55, 0.70, 0.60, 0.45],
    "drs": [0.95, 0.97, 0.86, 0.87, 0.80, 0.84, 0.58, 0.80, 0.72, 0.66],
    "open": [0.94, 0.97, 0.86, 0.88, 0.82, 0.87, 0.62, 0.85, 0.80, 0.74],
    "rs": [0.90, 0.95, 0.80, 0.82, 0.76, 0.80, 0.50, 0.75, 0.66, 0.60],
}


def eval_record(method: str, acc: list[float], seed: int = 0) -> dict:
    """An eval.json for per-class accuracies ``acc``: a confusion matrix with them, and its summaries."""
    c = len(acc)
    rng = np.random.default_rng(seed)
    cm = np.zeros((c, c), dtype=int)
    for t, a in enumerate(acc):
        right = round(a * TEST_PER_CLASS)
        cm[t, t] = right
        wrong = rng.multinomial(TEST_PER_CLASS - right, np.ones(c - 1) / (c - 1))
        cm[t, [j for j in range(c) if j != t]] = wrong
    pca = (np.diag(cm) / cm.sum(1)).tolist()
    order = np.argsort(-np.asarray(COUNTS), kind="stable")
    many = [pca[i] for i in range(c) if COUNTS[i] > 100]
    med = [pca[i] for i in range(c) if 20 <= COUNTS[i] <= 100]
    return {
        "top1": float(np.trace(cm) / cm.sum()), "top5": 0.995, "balanced_acc": float(np.mean(pca)),
        "per_class_acc": pca, "many": float(np.mean(many)), "medium": float(np.mean(med)), "few": None,
        "groups5": [float(np.mean([pca[i] for i in g])) for g in np.array_split(order, 5)],
        "gmean": float(np.exp(np.mean(np.log(pca)))), "ece": 0.031 + 0.01 * seed, "nll": 0.41,
        "confusion": cm.tolist(), "num_samples": int(cm.sum()), "class_counts": COUNTS, "class_names": NAMES,
        "method": method, "dataset": "fmnist_lt", "model": "resnet_small", "epoch": 10, "run": method,
    }


def metrics_records(method: str, epochs: int = 10, defer: int = 6) -> list[dict]:
    """metrics.jsonl's lines, one per epoch; DRS and OPeN switch to balanced sampling at ``defer``."""
    out = []
    for e in range(epochs):
        balanced = method == "rs" or (method in ("drs", "open") and e >= defer)
        bump = (0.2 + 0.15 * (method == "open")) if balanced else 0.0  # the loss rises after the switch
        rec = {"epoch": e, "lr": 0.1 if e < 8 else 0.01, "train_loss": 2.0 * 0.8 ** e + bump,
               "train_acc": min(0.99, 0.4 + 0.06 * e - (0.05 if balanced else 0)),
               "noise_frac": 0.25 if method == "open" and balanced else 0.0,
               "sampling": "balanced" if balanced else "instance", "images_per_s": 900.0, "time_s": 4.0}
        if method == "open":
            rec.update(test_top1=0.5 + 0.03 * e, test_balanced_acc=0.5 + 0.03 * e)
        out.append(rec)
    return out


def write_run(root: Path, method: str, *, seed: int = 0, eval_=True, metrics=True, samples=False,
              acc: list[float] | None = None, name: str | None = None) -> Path:
    """Write one run folder under ``root`` (``name``, else ``<method>_s<seed>``) and return it."""
    d = root / (name or f"{method}_s{seed}")
    d.mkdir(parents=True)
    cfg = {"name": name or method, "method": method, "dataset": "fmnist_lt", "model": "resnet_small", "epochs": 10,
           "defer_epoch": 6, "delta": 0.3333, "bn_mode": "darbn", "noise_grad": True, "seed": seed, "loss": "ce"}
    (d / "config.yaml").write_text(yaml.safe_dump(cfg))
    if metrics:
        (d / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics_records(method)))
    if eval_:
        (d / "eval.json").write_text(json.dumps(eval_record(method, acc or ACCS[method], seed)))
    if samples:
        g = torch.Generator().manual_seed(0)
        torch.save({"natural": (torch.rand(8, 1, 28, 28, generator=g) * 255).to(torch.uint8),
                    "noise": (0.3 + 0.2 * torch.randn(6, 1, 28, 28, generator=g)).clamp(0, 1),
                    "natural_labels": torch.arange(8), "noise_labels": torch.tensor([9, 9, 8, 8, 7, 6])},
                   d / "samples.pt")
    return d
