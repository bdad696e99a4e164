"""The run folder: everything a run writes, each file written atomically.

Which file is where is :mod:`purenoise.run_paths`'s alone; this module writes them. A run folder
belongs to one run. Before anything is written the folder is checked: a folder holding files a run
does not write is refused (unless the user says to reuse it), as is one whose run files or
checkpoint folder are symbolic links (a run never writes or deletes through a link, which could
lead outside the folder). While a run writes the folder it holds an exclusive lock on the marker
file (:attr:`RunPaths.marker`), which records who holds it; a second run into the same folder is
refused. Only rank 0 of a multi-process run holds a :class:`RunFolder`.
"""
from __future__ import annotations

import io
import json
import math
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from purenoise.config import dump_config
from purenoise.engine import checkpoint as ckpt
from purenoise.errors import ConfigError, PureNoiseError, first_lines
from purenoise.fileio import atomic_write, atomic_write_json, atomic_write_text
from purenoise.run_paths import RunPaths
from purenoise.settings import Settings

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: runs are not locked
    fcntl = None

__all__ = ["RunFolder", "json_safe", "state_is_finite"]

# Lock files this process holds, by the run folder's real path: a second RunFolder on the same
# folder in this process (a library caller training again) shares the lock instead of failing.
_HELD: dict[str, int] = {}


def json_safe(obj: Any) -> Any:
    """``obj`` with non-finite floats as ``None`` (JSON has no NaN)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def state_is_finite(module: torch.nn.Module, optimizer: torch.optim.Optimizer) -> bool:
    """Whether the weights, buffers and optimizer state are all finite (one host sync).

    A checkpoint of a diverged model would replace the last good one and fail on resume.
    """
    state = [v for s in optimizer.state.values() for v in s.values() if torch.is_tensor(v)]
    tensors = [t for t in (*module.state_dict().values(), *state) if t.is_floating_point()]
    if not tensors:
        return True
    device = tensors[0].device
    return bool(torch.stack([torch.isfinite(t).all().to(device) for t in tensors]).all())


def _names(paths: list[Path], root: Path) -> str:
    return first_lines([str(p.relative_to(root)) for p in paths], limit=5).replace("\n", ", ")


def _listed(*paths: Path) -> str:
    return ", ".join(p.name for p in paths)


def _epoch_of(line: str) -> int | None:
    """The ``epoch`` of a metrics line, or ``None`` if the line is not a metrics record."""
    try:
        record = json.loads(line)
    except ValueError:
        return None
    epoch = record.get("epoch") if isinstance(record, dict) else None
    return epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None


def _not_metrics(source: Path, what: str) -> PureNoiseError:
    return PureNoiseError(
        f"{source}, {what} (one JSON object with an integer 'epoch' per line); the file is damaged or "
        f"was not written by purenoise. Move it away (a new run starts it again), or choose another --out"
    )


class RunFolder:
    """Writes the files of one run under ``path`` (see the module doc for the layout)."""

    def __init__(self, path: str | Path, tensorboard: bool = False, *, reuse: bool = False) -> None:
        self.path = Path(path)
        self.paths = RunPaths(self.path)
        self.checkpoints = self.paths.checkpoints
        self._lock_key: str | None = None
        self._check_links()
        if not reuse:
            self._check_foreign()
        self._check_writable()
        self._lock()
        # A damaged metrics file stops the run here, before a long set-up, naming its line.
        self._metric_lines(self.paths.metrics, 0)
        # A process killed in the middle of an atomic write leaves its temporary file behind
        # (the file it was replacing is intact); clear the run's own so the folder holds whole files.
        for stale in self.paths.temporary_files():
            stale.unlink(missing_ok=True)
        self._tb = self._tensorboard() if tensorboard else None
        # Asked at every OPeN step until the first noise batch is saved: kept here, not stat'ed.
        self._has_samples = self.paths.samples.exists()

    # ------------------------------------------------------------------ whose folder
    def _check_links(self) -> None:
        links = [p for p in self.paths.owned() if p.is_symlink()]
        if links:
            raise PureNoiseError(
                f"the run folder {self.path} holds symbolic links where a run writes its files "
                f"({_names(links, self.path)}); a run never writes or deletes through a link, which "
                f"could lead outside the run folder. Replace each link with the file or folder itself, "
                f"or choose another --out"
            )

    def _check_foreign(self) -> None:
        """Refuse a folder that is not a run folder: it holds files a run does not write.

        The marker says it is a run folder; a run folder of an earlier version has none, but
        holds the config and the metrics.
        """
        paths = self.paths
        if paths.marker.is_file() or (paths.config.is_file() and paths.metrics.is_file()):
            return
        foreign = paths.foreign()
        if foreign:
            raise PureNoiseError(
                f"the output folder {self.path} is not a purenoise run folder: it holds files a run does not write "
                f"({_names(foreign, self.path)}), and a run there would replace or delete its "
                f"{_listed(paths.config, paths.eval, paths.model, paths.samples)} and {paths.checkpoints.name}/. "
                f"Choose a new or empty folder with --out, or pass --reuse to write the run into this one anyway"
            )

    def _check_writable(self) -> None:
        try:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            probe = self.paths.write_probe
            probe.write_bytes(b"ok")
            probe.unlink()
        except OSError as e:
            raise PureNoiseError(
                f"cannot write to the output folder {self.path} ({e.strerror}); choose another with --out"
            ) from None

    def _lock(self) -> None:
        """Hold an exclusive lock on the marker file until :meth:`close` (or the process ends).

        The lock is released by the operating system when the process ends, however it ends,
        so a killed run never leaves its folder locked.
        """
        key = os.path.realpath(self.path)
        if fcntl is None or key in _HELD:
            self._lock_key = None if fcntl is None else key
            return
        marker = self.paths.marker
        try:
            fd = os.open(marker, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0), 0o666)
        except OSError as e:
            raise PureNoiseError(f"cannot write {marker} ({e.strerror}); choose another --out") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._holder(marker)
            os.close(fd)
            raise PureNoiseError(
                f"the run folder {self.path} is in use by another purenoise run ({holder}); two runs "
                f"writing one folder would mix their checkpoints and results. Wait for that run to end, "
                f"or choose another --out"
            ) from None
        except OSError as e:  # a file system without locks (some network mounts)
            warnings.warn(f"cannot lock {marker} ({e.strerror}): make sure no other run writes to "
                          f"{self.path} at the same time", stacklevel=3)
        info = {"purenoise_run": 1, "pid": os.getpid(), "host": socket.gethostname(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        _HELD[key] = fd
        self._lock_key = key

    @staticmethod
    def _holder(marker: Path) -> str:
        try:
            info = json.loads(marker.read_text(encoding="utf-8"))
            return f"pid {info['pid']} on {info['host']}, started {info['started']}"
        except (OSError, ValueError, KeyError, TypeError):
            return "its process is not recorded"

    def _release(self) -> None:
        fd = _HELD.pop(self._lock_key, None) if self._lock_key is not None else None
        self._lock_key = None
        if fd is not None:
            os.close(fd)  # closing the file releases the lock

    def clear_results(self) -> list[str]:
        """Delete the results of the run that used this folder before (a new run starts here).

        Only the run's own result files go: the test metrics, the exported model, the samples and
        the checkpoints (the metrics are rewritten by :meth:`truncate_metrics`). Returns the names
        deleted.
        """
        paths = self.paths
        gone = []
        for path in (paths.eval, paths.model, paths.samples, paths.last_checkpoint, *paths.epoch_checkpoints()):
            if path.is_file():
                path.unlink()
                gone.append(str(path.relative_to(self.path)))
        self._has_samples = False
        return gone

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
    def write_config(self, cfg: Settings) -> None:
        """Write the run's resolved settings to ``config.yaml``, in schema order."""
        atomic_write_text(self.paths.config, dump_config(cfg))

    @staticmethod
    def _metric_lines(source: Path, upto: int) -> tuple[list[str], int]:
        """The lines of ``source`` of epochs ``< upto``, and how many lines it has.

        Raises:
            PureNoiseError: A line is not a metrics record; the message names the file and line.
        """
        if not source.exists():
            return [], 0
        try:
            lines = source.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise _not_metrics(source, f"byte {e.start}: not UTF-8 text") from None
        except OSError as e:
            raise PureNoiseError(f"cannot read {source} ({e.strerror}); move it away or choose another --out") from None
        kept, total = [], 0
        for no, line in enumerate(lines, 1):
            if not line.strip():
                continue
            epoch = _epoch_of(line)
            if epoch is None:
                raise _not_metrics(source, f"line {no}: not a metrics record")
            total += 1
            if epoch < upto:
                kept.append(line)
        return kept, total

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
        """Close TensorBoard's writer and release the folder's lock."""
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        self._release()
