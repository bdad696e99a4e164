"""The layout of a run folder: the one place that names its files, for the engine that writes them
and the reports that read them. Torch-free, and below both (it imports only the errors).

    RUN/config.yaml        the resolved config
    RUN/metrics.jsonl      one JSON line per finished epoch
    RUN/eval.json          test metrics of the last epoch (and the memorization diagnostic)
    RUN/model.pt           plain-BN weights and what predict/eval need to feed them
    RUN/samples.pt         a few natural and pure-noise images that were trained on
    RUN/checkpoints/       last.pt (resumable), epoch_NNNN.pt (the branch point)
    RUN/tensorboard/       TensorBoard events (tensorboard: true)
    RUN/.purenoise-run     marks the folder as a run's and is locked while a run writes it

A run writes and deletes only these files (and its own temporary files, ``.NAME.XXXXXX.tmp``
beside them, the names :func:`purenoise.fileio.atomic_write` gives), so a folder holding anything
else is not a run folder (see :meth:`RunPaths.foreign`). Code elsewhere names a file through
:class:`RunPaths` or the constants here, never by a literal name, so the layout can change in
one place.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from purenoise.errors import ConfigError

__all__ = ["RunPaths", "check_run_name", "REPORT_FILES", "CONFIG_FILE", "METRICS_FILE", "EVAL_FILE", "MODEL_FILE",
           "SAMPLES_FILE", "CHECKPOINTS_DIR", "TENSORBOARD_DIR", "LAST_CHECKPOINT", "MARKER", "WRITE_PROBE"]

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval.json"
MODEL_FILE = "model.pt"
SAMPLES_FILE = "samples.pt"
CHECKPOINTS_DIR = "checkpoints"
TENSORBOARD_DIR = "tensorboard"
#: The resumable checkpoint in ``checkpoints/``, replaced at every save.
LAST_CHECKPOINT = "last.pt"
#: The marker and lock file a run keeps in its folder.
MARKER = ".purenoise-run"
#: The file a run writes and deletes at once to check that it can write the folder.
WRITE_PROBE = ".write-test"
#: The files a report reads (any of them marks a run folder).
REPORT_FILES = (CONFIG_FILE, METRICS_FILE, EVAL_FILE, SAMPLES_FILE)

_TOP_FILES = (CONFIG_FILE, METRICS_FILE, EVAL_FILE, MODEL_FILE, SAMPLES_FILE, MARKER, WRITE_PROBE)
_TOP_FOLDERS = (CHECKPOINTS_DIR, TENSORBOARD_DIR)
_CHECKPOINT = r"(?:%s|epoch_\d{4,}\.pt)" % re.escape(LAST_CHECKPOINT)
# fileio.atomic_write's temporary files: "." + the target's name + "." + a random part + ".tmp".
_TOP_TEMP = re.compile(r"\.(?:%s)\.\w+\.tmp" % "|".join(re.escape(n) for n in _TOP_FILES))
_CHECKPOINT_FILE = re.compile(_CHECKPOINT)
_CHECKPOINT_TEMP = re.compile(r"\.%s\.\w+\.tmp" % _CHECKPOINT)


@dataclass(frozen=True)
class RunPaths:
    """The paths of the run folder ``root``."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def config(self) -> Path:
        return self.root / CONFIG_FILE

    @property
    def metrics(self) -> Path:
        return self.root / METRICS_FILE

    @property
    def eval(self) -> Path:
        return self.root / EVAL_FILE

    @property
    def model(self) -> Path:
        return self.root / MODEL_FILE

    @property
    def samples(self) -> Path:
        return self.root / SAMPLES_FILE

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS_DIR

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / LAST_CHECKPOINT

    def epoch_checkpoint(self, epoch: int) -> Path:
        """The checkpoint taken at the start of ``epoch`` (the branch point, at ``defer_epoch``)."""
        return self.checkpoints / f"epoch_{epoch:04d}.pt"

    def epoch_checkpoints(self) -> list[Path]:
        """The epoch checkpoints present, in order."""
        return sorted(self.checkpoints.glob("epoch_*.pt"))

    @property
    def tensorboard(self) -> Path:
        return self.root / TENSORBOARD_DIR

    @property
    def marker(self) -> Path:
        return self.root / MARKER

    @property
    def write_probe(self) -> Path:
        return self.root / WRITE_PROBE

    def owned(self) -> list[Path]:
        """The entries present that a run writes or deletes (the files, ``checkpoints/`` and its
        checkpoints, temporary files), without following ``checkpoints/`` if it is a link."""
        found = [p for p in self._entries(self.root) if self._is_top_entry(p.name)]
        if self.checkpoints.is_dir() and not self.checkpoints.is_symlink():
            found += [p for p in self._entries(self.checkpoints) if self._is_checkpoint_entry(p.name)]
        return found

    def temporary_files(self) -> list[Path]:
        """The temporary files of interrupted atomic writes of this run's files (and no others)."""
        return [p for p in self.owned() if p.name.endswith(".tmp")]

    def foreign(self) -> list[Path]:
        """The entries a run does not write: anything in the folder, or in ``checkpoints/``, that is
        not one of its files (TensorBoard's folder is the run's, whatever is in it)."""
        found = [p for p in self._entries(self.root) if not self._is_top_entry(p.name)]
        if self.checkpoints.is_dir() and not self.checkpoints.is_symlink():
            found += [p for p in self._entries(self.checkpoints) if not self._is_checkpoint_entry(p.name)]
        return found

    @staticmethod
    def _entries(folder: Path) -> list[Path]:
        try:
            return sorted(folder.iterdir())
        except OSError:  # missing, not a folder, or unreadable (then the write check fails)
            return []

    @staticmethod
    def _is_top_entry(name: str) -> bool:
        return name in _TOP_FILES or name in _TOP_FOLDERS or _TOP_TEMP.fullmatch(name) is not None

    @staticmethod
    def _is_checkpoint_entry(name: str) -> bool:
        return _CHECKPOINT_FILE.fullmatch(name) is not None or _CHECKPOINT_TEMP.fullmatch(name) is not None


def check_run_name(name: object, source: str = "config key 'name'") -> str:
    """Return ``name`` if it can name a run folder, else raise :class:`ConfigError`.

    A run's name becomes a folder under ``runs/`` when no ``--out`` is given; a name that is a
    path (a separator, ``..``, an absolute path) would put the run, and what it deletes, elsewhere.
    """
    text = str(name)
    bad = None
    if not text.strip():
        bad = "is empty"
    elif "/" in text or "\\" in text:
        bad = "contains a path separator"
    elif text in (".", ".."):
        bad = "is a path, not a name"
    elif any(ord(c) < 32 for c in text):
        bad = "contains a control character"
    if bad is not None:
        raise ConfigError(
            f"{source} is {text!r}, which {bad}: a run's name is a name, not a path. Use letters, "
            f"digits, '-', '_' and '.', e.g. name: cifar10_open; to choose where the run is written, use --out"
        )
    return text
