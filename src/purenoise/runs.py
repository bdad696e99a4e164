"""Run folders as data: loading, one summary row per run, tables and seed aggregates.

A run folder (written by the trainer) holds ``config.yaml``, ``metrics.jsonl`` (one JSON object
per completed epoch), ``eval.json`` (final test metrics, accuracies as fractions) and optionally
``samples.pt`` (real and pure-noise images that were trained on). Any of them may be missing
while a run is still training: the report shows what exists and says what is missing. A file that
exists but is malformed raises :class:`~purenoise.errors.DataError` naming the file and line.

>>> from purenoise.runs import load_run, format_table, aggregate
>>> print(format_table(["runs/erm", "runs/drs", "runs/open"]))      # doctest: +SKIP
"""
from __future__ import annotations

import json
import math
import numbers
import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import numpy as np
import yaml

from purenoise.config_io import MAX_CONFIG_BYTES, load_yaml
from purenoise.errors import ConfigError, DataError, DataNotFoundError, PureNoiseError
from purenoise.run_paths import REPORT_FILES, RunPaths
from purenoise.schemes import CLASS_AWARE_SAMPLINGS, DEFERRED_SCHEMES, SAMPLING_KINDS
from purenoise.tables import markdown_table, mean_std, pct

__all__ = [
    "Run",
    "load_run",
    "minority_half_accuracy",
    "summarize",
    "format_table",
    "aggregate",
    "format_aggregate",
    "MAIN_METRICS",
    "HEADERS",
    "RunLike",
    "load_runs",
    "pct",
    "run_labels",
]

FRACTION_KEYS = ("top1", "top5", "balanced_acc", "many", "medium", "few", "gmean", "ece")
#: An eval.json holds at least one of these (an older one may lack the others).
REQUIRED_EVAL_KEYS = ("top1", "balanced_acc", "per_class_acc")
EPOCH_NUMBER_KEYS = ("lr", "train_loss", "train_acc", "noise_frac", "images_per_s", "time_s",
                     "test_top1", "test_balanced_acc")
#: Metrics of the comparison table and of :func:`aggregate` (all fractions).
MAIN_METRICS = ("top1", "balanced_acc", "many", "medium", "few", "minority_half", "ece")
HEADERS = {"run": "Run", "method": "Method", "top1": "Top-1", "balanced_acc": "Bal. acc",
           "many": "Many", "medium": "Medium", "few": "Few", "minority_half": "Minority half",
           "ece": "ECE", "gmean": "G-mean", "top5": "Top-5"}

RunLike = Union["Run", str, os.PathLike]


@dataclass
class Run:
    """The contents of one run folder; ``eval`` and ``samples`` are ``None`` when absent."""

    path: Path
    name: str
    config: dict[str, Any]
    metrics: list[dict[str, Any]]
    eval: dict[str, Any] | None
    samples: dict[str, Any] | None
    notes: list[str] = field(default_factory=list)  # what is missing or was skipped, in words

    def get(self, key: str, default: Any = None) -> Any:
        """A field from the config, else eval.json, else ``default``."""
        if self.config.get(key) is not None:
            return self.config[key]
        if self.eval and self.eval.get(key) is not None:
            return self.eval[key]
        return default

    @property
    def method(self) -> str:
        return str(self.get("method", "?"))

    @property
    def epochs_done(self) -> int:
        return max((m["epoch"] for m in self.metrics), default=-1) + 1

    @property
    def defer_epoch(self) -> int | None:
        """0-based epoch from which sampling was class-aware after instance sampling.

        Read from the ``sampling`` field of metrics.jsonl when logged, else from the config for
        the deferred schemes (``drs``, ``open``). ``None`` when sampling never switched.
        """
        prev = None
        for m in self.metrics:
            s = m.get("sampling")
            if s in CLASS_AWARE_SAMPLINGS and prev == "instance":
                return int(m["epoch"])
            prev = s if s is not None else prev
        if any(m.get("sampling") is not None for m in self.metrics):
            return None
        d = self.config.get("defer_epoch")
        if self.method in DEFERRED_SCHEMES and isinstance(d, numbers.Integral) and d > 0:
            return int(d)
        return None

    @property
    def status(self) -> str:
        total = self.config.get("epochs")
        if self.eval is not None:
            return "complete"
        done = f"{self.epochs_done}/{total}" if total else str(self.epochs_done)
        return f"no eval.json ({done} epochs logged)"


# ----------------------------------------------------------------------------------- loading
def _is_num(v: Any) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def _read_metrics(path: Path, notes: list[str]) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    by_epoch: dict[int, dict[str, Any]] = {}
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            if no == len(lines) and not text.endswith("\n"):  # last line still being written
                notes.append(f"metrics.jsonl: ignored an incomplete last line {no} (still being written?)")
                break
            raise DataError(f"{path}, line {no}: not valid JSON ({e.msg}): {line[:80]!r}") from None
        if not isinstance(rec, dict):
            raise DataError(f"{path}, line {no}: expected a JSON object per epoch, got {type(rec).__name__}")
        ep = rec.get("epoch")
        if not isinstance(ep, int) or isinstance(ep, bool) or ep < 0:
            raise DataError(f"{path}, line {no}: key 'epoch' must be an integer >= 0, got {ep!r}")
        for k in EPOCH_NUMBER_KEYS:
            if rec.get(k) is not None and not _is_num(rec[k]):
                raise DataError(f"{path}, line {no}: key {k!r} must be a number, got {rec[k]!r}")
        if rec.get("sampling") not in (None, *SAMPLING_KINDS):
            raise DataError(f"{path}, line {no}: key 'sampling' must be one of {list(SAMPLING_KINDS)}, "
                            f"got {rec['sampling']!r}")
        if ep in by_epoch:
            notes.append(f"metrics.jsonl: epoch {ep} logged twice (a resumed run?); kept line {no}")
        by_epoch[ep] = rec
    return [by_epoch[e] for e in sorted(by_epoch)]


def _check_eval(d: Any, path: Path) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(d).__name__}")
    d = dict(d)

    def frac(key: str, v: Any) -> float | None:
        if v is None or (_is_num(v) and math.isnan(v)):
            return None
        if not _is_num(v) or not -1e-6 <= v <= 1 + 1e-6:
            raise DataError(f"{path}: key {key!r} must be a fraction in [0, 1] or null, got {v!r}")
        return float(v)

    for k in FRACTION_KEYS:
        if k in d:
            d[k] = frac(k, d[k])
    if not any(k in d for k in REQUIRED_EVAL_KEYS):
        raise DataError(f"{path}: holds none of the test metrics {', '.join(REQUIRED_EVAL_KEYS)}; it is not a "
                        f"purenoise eval.json. Delete it, or write it again with purenoise eval --checkpoint "
                        f"RUN/model.pt --out RUN/eval.json")
    for k in ("per_class_acc", "groups5", "train_per_class_acc"):
        if d.get(k) is not None:
            if not isinstance(d[k], list):
                raise DataError(f"{path}: key {k!r} must be a list, got {type(d[k]).__name__}")
            d[k] = [frac(f"{k}[{i}]", v) for i, v in enumerate(d[k])]
    n = len(d["per_class_acc"]) if d.get("per_class_acc") is not None else None
    for k in ("class_counts", "class_names"):
        v = d.get(k)
        if v is None:
            continue
        ok = isinstance(v, list) and all(
            (isinstance(x, int) and not isinstance(x, bool) and x >= 0) if k == "class_counts" else isinstance(x, str)
            for x in v)
        if not ok:
            raise DataError(f"{path}: key {k!r} must be a list of "
                            + ("non-negative integers" if k == "class_counts" else "strings"))
        if n is not None and len(v) != n:
            raise DataError(f"{path}: key {k!r} has {len(v)} entries but per_class_acc has {n}")
    ep = d.get("epoch")
    if ep is not None and not (_is_num(ep) and math.isfinite(ep) and ep >= 0 and ep == int(ep)):
        raise DataError(f"{path}: key 'epoch' must be an integer >= 0 or null, got {d['epoch']!r}")
    sizes = {k: len(d[k]) for k in ("per_class_acc", "class_counts", "class_names") if d.get(k) is not None}
    if len(set(sizes.values())) > 1:
        raise DataError(f"{path}: keys {', '.join(sizes)} must have one entry per class, but have "
                        f"{', '.join(map(str, sizes.values()))} entries")
    if d.get("confusion") is not None:
        d["confusion"] = _check_confusion(d["confusion"], path, next(iter(sizes.values()), None))
    return d


def _check_confusion(cm: Any, path: Path, n: int | None) -> list[list[Any]]:
    """A C x C list of lists of finite counts >= 0, C the number of classes where eval.json says it."""
    what = "a square C x C list of lists of counts >= 0" + (f" with C = {n} (the number of classes)" if n else "")
    c = len(cm) if isinstance(cm, list) else -1
    if c < 1 or any(not isinstance(r, list) or len(r) != c for r in cm) or (n is not None and c != n):
        shape = f"{c} rows of lengths {sorted({len(r) if isinstance(r, list) else -1 for r in cm})}" if c > 0 else (
            "an empty list" if c == 0 else f"a {type(cm).__name__}")
        raise DataError(f"{path}: key 'confusion' must be {what}, got {shape}")
    for i, row in enumerate(cm):
        for j, v in enumerate(row):
            if not _is_num(v) or not math.isfinite(v) or v < 0:
                raise DataError(f"{path}: key 'confusion' must be {what}; entry [{i}][{j}] is {v!r}")
    return cm


# Largest height or width of an image in samples.pt: the trainer stores training-size images.
SAMPLE_MAX_SIDE = 4096


def _check_samples(obj: Any, path: Path) -> dict[str, Any]:
    """samples.pt's images ``[n, C, H, W]`` (uint8, or floats in [0, 1]; C = 1 or 3) and labels ``[n]``."""
    import torch

    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict with 'natural' and 'noise' images, got {type(obj).__name__}")
    for kind in ("natural", "noise"):
        x = obj.get(kind)
        if x is None:
            continue
        ok = (isinstance(x, torch.Tensor) and x.ndim == 4 and x.shape[1] in (1, 3)
              and 1 <= min(x.shape[2:]) and max(x.shape[2:]) <= SAMPLE_MAX_SIDE
              and (x.dtype == torch.uint8 or x.dtype.is_floating_point))
        if not ok:
            got = (f"a {x.dtype} tensor of shape {list(x.shape)}" if isinstance(x, torch.Tensor)
                   else f"a {type(x).__name__}")
            raise DataError(f"{path}: {kind!r} must be images [n, C, H, W] (C = 1 or 3, H and W from 1 to "
                            f"{SAMPLE_MAX_SIDE}; uint8, or floats in [0, 1]), got {got}")
        labels = obj.get(f"{kind}_labels")
        if labels is None:
            continue
        ok = (isinstance(labels, torch.Tensor) and labels.ndim == 1 and len(labels) >= len(x)
              and not labels.is_floating_point() and not labels.is_complex() and labels.dtype != torch.bool)
        if not ok:
            got = (f"a {labels.dtype} tensor of shape {list(labels.shape)}" if isinstance(labels, torch.Tensor)
                   else f"a {type(labels).__name__}")
            raise DataError(f"{path}: {kind + '_labels'!r} must be an integer tensor [n] with one class "
                            f"index per image ({len(x)}), got {got}")
    return obj


def load_run(run_dir: RunLike) -> Run:
    """Read a run folder. Missing files are noted in ``Run.notes``; malformed ones raise DataError."""
    if isinstance(run_dir, Run):
        return run_dir
    path = Path(run_dir)
    if not path.is_dir():
        raise DataNotFoundError(f"run folder {path} does not exist (or is not a folder)")
    if not any((path / f).exists() for f in REPORT_FILES):
        subs = sorted(p.name for p in path.iterdir() if p.is_dir() and any((p / f).exists() for f in REPORT_FILES))
        hint = f"; it holds run folders {', '.join(subs)}: pass those instead" if subs else ""
        raise DataError(f"{path} is not a run folder: none of {', '.join(REPORT_FILES)} is in it{hint}")
    notes: list[str] = []
    config: dict[str, Any] = {}
    paths = RunPaths(path)
    f = paths.config
    if f.exists():
        if f.stat().st_size > MAX_CONFIG_BYTES:
            raise DataError(f"{f}: {f.stat().st_size} bytes, more than a run's config.yaml can be "
                            f"({MAX_CONFIG_BYTES}); it was not written by purenoise")
        try:  # a received run folder: read within the same bounds as any config
            loaded = load_yaml(f.read_text(encoding="utf-8", errors="replace"), str(f))
        except ConfigError as e:
            raise DataError(str(e)) from None
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f", line {mark.line + 1}" if mark is not None else ""
            raise DataError(f"{f}{where}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise DataError(f"{f}: expected a mapping of config keys, got {type(loaded).__name__}")
        config = loaded or {}
    else:
        notes.append("config.yaml is missing")
    f = paths.metrics
    metrics = _read_metrics(f, notes) if f.exists() else []
    if not f.exists():
        notes.append("metrics.jsonl is missing: no training curves")
    elif not metrics:
        notes.append("metrics.jsonl has no completed epoch yet")
    f = paths.eval
    ev = None
    if f.exists():
        try:
            ev = _check_eval(json.loads(f.read_text(encoding="utf-8")), f)
        except json.JSONDecodeError as e:
            raise DataError(f"{f}, line {e.lineno}: not valid JSON ({e.msg})") from None
    else:
        notes.append("eval.json is missing (still training, or evaluation failed): no test metrics")
    f = paths.samples
    samples = None
    if f.exists():
        import torch  # only samples.pt needs it: reading run folders is otherwise torch-free

        try:
            samples = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
            raise DataError(f"{f}: cannot be read as a torch.save'd dict of tensors; it was not loaded "
                            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
        samples = _check_samples(samples, f)
    name = str(config.get("name") or (ev or {}).get("run") or path.name)
    return Run(path=path, name=name, config=config, metrics=metrics, eval=ev, samples=samples, notes=notes)


def load_runs(runs: RunLike | Iterable[RunLike]) -> list[Run]:
    if isinstance(runs, (str, os.PathLike, Run)):
        runs = [runs]
    out = [load_run(r) for r in runs]
    if not out:
        raise PureNoiseError("no run folders given")
    return out


# ----------------------------------------------------------------------------------- metrics
def minority_half_accuracy(per_class_acc: Sequence[float | None], class_counts: Sequence[int]) -> float | None:
    """Mean accuracy of the ``C // 2`` classes (at least one) with the fewest training images.

    Ties in count are broken by class index. Classes without test images (``None``) are skipped.
    """
    if not per_class_acc or class_counts is None or len(class_counts) != len(per_class_acc):
        return None
    order = np.argsort(np.asarray(class_counts), kind="stable")[: max(1, len(class_counts) // 2)]
    vals = [per_class_acc[i] for i in order if per_class_acc[i] is not None]
    return float(np.mean(vals)) if vals else None


def summarize(run: RunLike) -> dict[str, Any]:
    """One comparison-table row of a run: identity fields and metrics (fractions; None if absent)."""
    run = load_run(run)
    ev = run.eval or {}
    pca, counts = ev.get("per_class_acc"), ev.get("class_counts")
    bal = ev.get("balanced_acc")
    if bal is None and pca and any(v is not None for v in pca):
        bal = float(np.mean([v for v in pca if v is not None]))
    return {
        "run": run.name, "method": run.method, "dataset": run.get("dataset"), "model": run.get("model"),
        "seed": run.get("seed"), "epochs": run.epochs_done if ev.get("epoch") is None else int(ev["epoch"]),  # epochs trained
        "status": run.status,
        "top1": ev.get("top1"), "top5": ev.get("top5"), "balanced_acc": bal,
        "many": ev.get("many"), "medium": ev.get("medium"), "few": ev.get("few"),
        "minority_half": minority_half_accuracy(pca, counts) if pca and counts else None,
        "gmean": ev.get("gmean"), "ece": ev.get("ece"), "nll": ev.get("nll"),
        "path": str(run.path),
    }


def run_labels(runs: Sequence[Run]) -> list[str]:
    """Run names, made unique with the folder name (then a counter) where they clash."""
    names = [r.name for r in runs]
    out = [n if names.count(n) == 1 else f"{n} ({r.path.name})" for n, r in zip(names, runs)]
    return [o if out.count(o) == 1 else f"{o} #{i + 1}" for i, o in enumerate(out)]


def format_table(runs: RunLike | Iterable[RunLike], metrics: Sequence[str] = MAIN_METRICS) -> str:
    """A fixed-width table of runs for a terminal; accuracies (and ECE) in % with 2 decimals."""
    runs = load_runs(runs)
    rows = [summarize(r) for r in runs]
    cols = ["run", "method", *metrics]
    cells = [[HEADERS.get(c, c) + ("" if c in ("run", "method") else " %") for c in cols]]
    for lab, row in zip(run_labels(runs), rows):
        cells.append([lab, row["method"]] + [pct(row[m]) for m in metrics])
    widths = [max(len(r[i]) for r in cells) for i in range(len(cols))]

    def fmt(r: list[str]) -> str:  # text columns left-aligned, numbers right-aligned
        return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))

    lines = [fmt(cells[0]), "  ".join("-" * w for w in widths)] + [fmt(r) for r in cells[1:]]
    lines += [f"* {lab}: {r.status}" for lab, r in zip(run_labels(runs), runs) if r.eval is None]
    return "\n".join(lines)


def aggregate(runs: RunLike | Iterable[RunLike], by: Sequence[str] = ("method",),
              metrics: Sequence[str] = MAIN_METRICS) -> list[dict[str, Any]]:
    """Mean and sample standard deviation (ddof=1) of ``metrics`` over runs grouped by ``by``.

    Group keys are looked up in the config, then eval.json (e.g. ``("dataset", "method")``).
    Returns one dict per group, in order of first appearance: the ``by`` keys, ``n`` (runs with
    eval.json), ``runs`` (their names), and ``<metric>_mean`` / ``<metric>_std`` (fractions;
    std is None for a single run, both None when no run has the metric). Runs without eval.json
    are left out and named in ``missing``.
    """
    groups: dict[tuple, list[Run]] = {}
    for r in load_runs(runs):
        groups.setdefault(tuple(r.get(k) for k in by), []).append(r)
    out = []
    for key, members in groups.items():
        done = [r for r in members if r.eval is not None]
        rows = [summarize(r) for r in done]
        row: dict[str, Any] = dict(zip(by, key))
        row.update(n=len(done), runs=[r.name for r in done], missing=[r.name for r in members if r.eval is None])
        for m in metrics:
            vals = [x[m] for x in rows if x[m] is not None]
            row[f"{m}_mean"] = statistics.fmean(vals) if vals else None
            row[f"{m}_std"] = statistics.stdev(vals) if len(vals) > 1 else None
        out.append(row)
    return out


def format_aggregate(rows: Sequence[dict[str, Any]], by: Sequence[str] = ("method",),
                     metrics: Sequence[str] = MAIN_METRICS) -> str:
    """A Markdown table of :func:`aggregate` rows: ``mean ± std`` in % with 2 decimals."""
    head = [*by, "n", *(HEADERS.get(m, m) for m in metrics)]
    cells = [[*(row[k] for k in by), row["n"], *(mean_std(row[f"{m}_mean"], row[f"{m}_std"]) for m in metrics)]
             for row in rows]
    return "\n".join(markdown_table(head, cells, right_from=len(by) + 1))
