"""Run folders as data: a run folder read into a :class:`Run`, its files checked on the way.

A run folder (written by the trainer; its layout is :mod:`purenoise.run_paths`) holds the resolved
config, the metrics (one JSON object per completed epoch), the test metrics (accuracies as
fractions) and optionally samples (real and pure-noise images that were trained on). Any of them
may be missing while a run is still training: the report shows what exists and says what is
missing. A file that exists but is malformed raises :class:`~purenoise.errors.DataError` naming the
file and line. The config is data from elsewhere (another version, a hand edit): it is read through
:func:`purenoise.config.saved_value`, by the accessors of :class:`Run`.

>>> from purenoise.reporting.runs import load_run
>>> load_run("runs/open").status                                    # doctest: +SKIP
'complete'
"""
from __future__ import annotations

import json
import math
import numbers
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml

from purenoise.config import SCHEMA, saved_value
from purenoise.config_io import MAX_CONFIG_BYTES, load_yaml
from purenoise.errors import ConfigError, DataError, DataNotFoundError, PureNoiseError
from purenoise.run_paths import CONFIG_FILE, EVAL_FILE, METRICS_FILE, MODEL_FILE, REPORT_FILES, RunPaths
from purenoise.schemes import CLASS_AWARE_SAMPLINGS, DEFERRED_SCHEMES, SAMPLING_KINDS

__all__ = ["Run", "RunLike", "load_run", "load_runs"]

FRACTION_KEYS = ("top1", "top5", "balanced_acc", "many", "medium", "few", "gmean", "ece")
#: A test-metrics file holds at least one of these (an older one may lack the others).
REQUIRED_EVAL_KEYS = ("top1", "balanced_acc", "per_class_acc")
EPOCH_NUMBER_KEYS = ("lr", "train_loss", "train_acc", "noise_frac", "images_per_s", "time_s",
                     "test_top1", "test_balanced_acc")
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
        """A value of the run: config key ``key`` as saved, else the same key of eval.json (where
        every other key, such as ``top1`` or ``run``, is read), else ``default``."""
        value = saved_value(self.config, key) if key in SCHEMA else None
        if value is not None:
            return value
        if self.eval and self.eval.get(key) is not None:
            return self.eval[key]
        return default

    def setting(self, key: str) -> Any:
        """The value of config key ``key`` the run trained with: the saved value, or the schema's
        default where the saved config lacks the key (it was written before the key existed)."""
        value = saved_value(self.config, key)
        if value is None and key not in self.config:
            return SCHEMA[key].default
        return value

    @property
    def seed(self) -> Any:
        """The saved config's ``seed``; ``None`` when it has none."""
        return saved_value(self.config, "seed")

    @property
    def method(self) -> str:
        return str(self.get("method", "?"))

    @property
    def epochs_done(self) -> int:
        return max((m["epoch"] for m in self.metrics), default=-1) + 1

    @property
    def defer_epoch(self) -> int | None:
        """0-based epoch from which sampling was class-aware after instance sampling.

        Read from the ``sampling`` field of the metrics when logged, else from the config for
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
        d = saved_value(self.config, "defer_epoch")
        if self.method in DEFERRED_SCHEMES and isinstance(d, numbers.Integral) and d > 0:
            return int(d)
        return None

    @property
    def status(self) -> str:
        total = saved_value(self.config, "epochs")
        if self.eval is not None:
            return "complete"
        done = f"{self.epochs_done}/{total}" if total else str(self.epochs_done)
        return f"no {EVAL_FILE} ({done} epochs logged)"


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
                notes.append(f"{METRICS_FILE}: ignored an incomplete last line {no} (still being written?)")
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
            notes.append(f"{METRICS_FILE}: epoch {ep} logged twice (a resumed run?); kept line {no}")
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
                        f"purenoise {EVAL_FILE}. Delete it, or write it again with purenoise eval --checkpoint "
                        f"RUN/{MODEL_FILE} --out RUN/{EVAL_FILE}")
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
    """A C x C list of lists of finite counts >= 0, C the number of classes where the test metrics say it."""
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


# Largest height or width of an image in the samples: the trainer stores training-size images.
SAMPLE_MAX_SIDE = 4096


def _check_samples(obj: Any, path: Path) -> dict[str, Any]:
    """The samples' images ``[n, C, H, W]`` (uint8, or floats in [0, 1]; C = 1 or 3) and labels ``[n]``."""
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
            raise DataError(f"{f}: {f.stat().st_size} bytes, more than a run's {CONFIG_FILE} can be "
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
        notes.append(f"{CONFIG_FILE} is missing")
    f = paths.metrics
    metrics = _read_metrics(f, notes) if f.exists() else []
    if not f.exists():
        notes.append(f"{METRICS_FILE} is missing: no training curves")
    elif not metrics:
        notes.append(f"{METRICS_FILE} has no completed epoch yet")
    f = paths.eval
    ev = None
    if f.exists():
        try:
            ev = _check_eval(json.loads(f.read_text(encoding="utf-8")), f)
        except json.JSONDecodeError as e:
            raise DataError(f"{f}, line {e.lineno}: not valid JSON ({e.msg})") from None
    else:
        notes.append(f"{EVAL_FILE} is missing (still training, or evaluation failed): no test metrics")
    f = paths.samples
    samples = None
    if f.exists():
        import torch  # only the samples need it: reading run folders is otherwise torch-free

        try:
            samples = torch.load(f, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any unpickling failure means a bad file
            raise DataError(f"{f}: cannot be read as a torch.save'd dict of tensors; it was not loaded "
                            f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
        samples = _check_samples(samples, f)
    name = str(saved_value(config, "name") or (ev or {}).get("run") or path.name)
    return Run(path=path, name=name, config=config, metrics=metrics, eval=ev, samples=samples, notes=notes)


def load_runs(runs: RunLike | Iterable[RunLike]) -> list[Run]:
    """:func:`load_run` of each run folder given (one, or several)."""
    if isinstance(runs, (str, os.PathLike, Run)):
        runs = [runs]
    out = [load_run(r) for r in runs]
    if not out:
        raise PureNoiseError("no run folders given")
    return out
