"""Where each file of a run folder lives: the one list that writers and readers share. Torch-free.

    RUN/config.yaml        the resolved config
    RUN/metrics.jsonl      one JSON line per finished epoch
    RUN/eval.json          test metrics of the last epoch (and the memorization diagnostic)
    RUN/model.pt           plain-BN weights and what predict/eval need to feed them
    RUN/samples.pt         a few natural and pure-noise images that were trained on
    RUN/checkpoints/       last.pt (resumable), epoch_NNNN.pt (the branch point)
    RUN/tensorboard/       TensorBoard events (tensorboard: true)
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["RunPaths", "REPORT_FILES"]


@dataclass(frozen=True)
class RunPaths:
    """The paths of the run folder ``root``."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.jsonl"

    @property
    def eval(self) -> Path:
        return self.root / "eval.json"

    @property
    def model(self) -> Path:
        return self.root / "model.pt"

    @property
    def samples(self) -> Path:
        return self.root / "samples.pt"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    def epoch_checkpoint(self, epoch: int) -> Path:
        """The checkpoint taken at the start of ``epoch`` (the branch point, at ``defer_epoch``)."""
        return self.checkpoints / f"epoch_{epoch:04d}.pt"

    def epoch_checkpoints(self) -> list[Path]:
        """The epoch checkpoints present, in order."""
        return sorted(self.checkpoints.glob("epoch_*.pt"))

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"


#: The files a report reads (any of them marks a run folder).
REPORT_FILES = ("config.yaml", "metrics.jsonl", "eval.json", "samples.pt")
