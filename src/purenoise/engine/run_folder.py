"""The run folder: everything a run writes (layout: :class:`purenoise.run_paths.RunPaths`), each
file written atomically.

Only rank 0 of a multi-process run holds a :class:`RunFolder`.
"""
from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import torch

from purenoise.config import dump_config
from purenoise.engine import checkpoint as ckpt
from purenoise.fileio import atomic_write, atomic_write_json, atomic_write_text
from purenoise.run_paths import RunPaths
from purenoise.errors import ConfigError, PureNoiseError

__all__ = ["RunFolder", "json_safe"]


def json_safe(obj: Any) -> Any:
    """``obj`` with non-finite floats as ``None`` (JSON has no NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


class RunFolder:
    """Writes the files of one run under ``path`` (see the module doc for the layout)."""

    def __init__(self, path: str | Path, tensorboard: bool = False) -> None:
        self.path = Path(path)
        self.paths = RunPaths(self.path)
        self.checkpoints = self.paths.checkpoints
        self._check_writable()
        self._tb = self._tensorboard() if tensorboard else None
        # Asked at every OPeN step until the first noise batch is saved: kept here, not stat'ed.
        self._has_samples = self.paths.samples.exists()

    def _check_writable(self) -> None:
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            probe = self.path / ".write-test"
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as e:
            raise PureNoiseError(
                f"cannot write to the output folder {self.path} ({e.strerror}); choose another with --out"
            ) from None
        # A process killed in the middle of an atomic write leaves its temporary file behind
        # (the file it was replacing is intact); clear them so the run folder holds whole files.
        for folder in (self.path, self.checkpoints):
            for stale in folder.glob(".*.tmp"):
                stale.unlink(missing_ok=True)

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional package, and slow to import
        except ImportError:
            raise ConfigError(
                "config key 'tensorboard' is true but the tensorboard package is not installed: "
                "pip install tensorboard (or pip install 'purenoise[tensorboard]'), or set tensorboard: false"
            ) from None
        return SummaryWriter(log_dir=str(self.paths.tensorboard))

    # ------------------------------------------------------------------ metrics
    def write_config(self, cfg: dict[str, Any]) -> None:
        atomic_write_text(self.paths.config, dump_config(cfg))

    def _metric_lines(self, source: Path, upto: int) -> tuple[list[str], int]:
        if not source.exists():
            return [], 0
        lines = [ln for ln in source.read_text().splitlines() if ln.strip()]
        return [ln for ln in lines if json.loads(ln)["epoch"] < upto], len(lines)

    def truncate_metrics(self, upto: int) -> None:
        """Drop the lines of epochs ``>= upto`` (a resumed run writes them again)."""
        path = self.paths.metrics
        kept, total = self._metric_lines(path, upto)
        if len(kept) != total:
            atomic_write_text(path, "".join(ln + "\n" for ln in kept))

    def copy_parent_metrics(self, parent_run: Path, upto: int) -> None:
        """A branch starts its metrics with the parent's lines of the shared epochs."""
        kept, _ = self._metric_lines(RunPaths(parent_run).metrics, upto)
        if kept:
            atomic_write_text(self.paths.metrics, "".join(ln + "\n" for ln in kept))

    def append_metrics(self, record: dict[str, Any]) -> None:
        path = self.paths.metrics
        old = path.read_text() if path.exists() else ""
        atomic_write_text(path, old + json.dumps(json_safe(record)) + "\n")
        if self._tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "epoch":
                    self._tb.add_scalar(key, value, record["epoch"] + 1)
            self._tb.flush()

    # ------------------------------------------------------------------ files
    def has_samples(self) -> bool:
        return self._has_samples

    def save_samples(self, natural: torch.Tensor, noise: torch.Tensor, natural_labels: torch.Tensor,
                     noise_labels: torch.Tensor) -> None:
        """Images in pixel space ``[0, 1]`` for the report's "what was trained on" figure."""
        buf = io.BytesIO()
        torch.save({"natural": natural.cpu(), "noise": noise.cpu(), "natural_labels": natural_labels.cpu(),
                    "noise_labels": noise_labels.cpu()}, buf)
        atomic_write(self.paths.samples, buf.getbuffer())
        self._has_samples = True

    def save_checkpoint(self, name: str, state: dict[str, Any]) -> Path:
        return ckpt.save_checkpoint(self.checkpoints / name, state)

    def save_model(self, state: dict[str, Any]) -> Path:
        return ckpt.save_checkpoint(self.paths.model, state)

    def write_eval(self, result: dict[str, Any]) -> Path:
        return atomic_write_json(self.paths.eval, json_safe(result))

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
