"""A run's position as a checkpoint: writing it, resuming from it, and branching from another run.

:class:`RunState` holds the part of :class:`~purenoise.engine.trainer.Trainer` that turns the
training state (weights, optimizer, schedule, scaler, every generator, where in the epoch) into a
checkpoint and back. A checkpoint is written only when every weight and optimizer value is finite,
and one read from disk is validated (:func:`~purenoise.engine.checkpoint.validate_checkpoint`)
before anything of it is used.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from purenoise.config import saved_value
from purenoise.engine import checkpoint as ckpt
from purenoise.engine.run_folder import state_is_finite
from purenoise.engine.seeding import rng_state, set_rng_state
from purenoise.engine.setup import check_branch_compatible, load_model_state
from purenoise.engine.step import TrainingDiverged
from purenoise.errors import OutputError, PureNoiseError
from purenoise.run_paths import RunPaths

__all__ = ["RunState", "DIVERGED_ADVICE"]

DIVERGED_ADVICE = ("Usual causes: a learning rate too high for this batch size (lower lr or raise "
                    "warmup_epochs), amp: fp16 overflow (use bf16), no grad_clip with a large lr, or a loss "
                    "option out of range. Rerun with --detect-anomaly to find the operation that produced it.")


class RunState:
    """Checkpoint writing, resume and branching of a trainer (mixed into ``Trainer``).

    It uses the trainer's ``cfg``, ``env``, ``module``, ``optimizer``, ``scheduler``, ``scaler``,
    ``noise_gen``, ``folder``, ``out``, ``is_main``, ``steps_per_epoch`` and its position fields.
    """

    def _state(self, epoch: int, batch: int, epoch_state: dict[str, float] | None) -> dict[str, Any]:
        return {
            "config": self.cfg.as_dict(),
            "epoch": epoch,
            "batch": batch,
            "model": self.module.state_dict(),
            "param_names": [n for n, p in self.module.named_parameters() if p.requires_grad],
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "noise_generator": self.noise_gen.get_state(),
            "epoch_state": epoch_state,
            "class_counts": self.class_counts,
            "branch": self.branch,
            "world_size": self.env.world_size,
            "train_at_defer": self.train_at_defer,
        }

    def _save(self, name: str, epoch: int, batch: int = 0, epoch_state=None) -> Path | None:
        """Write checkpoint ``name`` of the position (``epoch``, ``batch``) on rank 0.

        Every rank first checks that the weights and optimizer state are finite (DDP keeps them
        identical, so all ranks agree): a diverged model is never saved over a good checkpoint.
        """
        self._check_state_finite(epoch, batch)
        if not self.is_main:
            return None
        try:
            return self.folder.save_checkpoint(name, self._state(epoch, batch, epoch_state))
        except OutputError as e:
            error = OutputError(f"{e}. Training stopped; once it can be written, continue with: purenoise "
                                f"train --config {RunPaths(self.out).config} --out {self.out} --resume auto")
            error.errno = e.errno
            raise error from None

    def _check_state_finite(self, epoch: int, batch: int) -> None:
        if state_is_finite(self.module, self.optimizer):
            return
        where = f"epoch {epoch + 1}, batch {batch}" if batch else f"the start of epoch {epoch + 1}"
        raise TrainingDiverged(
            f"the run diverged: the weights or optimizer state are NaN or infinite at {where}, so no "
            f"checkpoint was written; {self._last_good()}. {DIVERGED_ADVICE}"
        )

    def _last_good(self) -> str:
        last = RunPaths(self.out).last_checkpoint
        return f"the last good checkpoint is {last}" if last.exists() else "no checkpoint was written yet"

    def _restore(self, state: dict[str, Any], source: Path) -> None:
        load_model_state(self.module, state["model"], source)
        try:  # checked by validate_checkpoint; what remains is whether the states fit this run
            ckpt.load_optimizer_state(self.optimizer, self.module, state)
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state["scaler"])
            set_rng_state(state["rng"])
            self.noise_gen.set_state(state["noise_generator"])
        except (KeyError, IndexError, TypeError, ValueError, RuntimeError) as e:
            raise PureNoiseError(f"checkpoint {source}: its optimizer, scheduler or generator state does not "
                                 f"fit this run ({type(e).__name__}: {e}); use the run's own checkpoint") from None

    def _resume(self, resume: str) -> None:
        path = RunPaths(self.out).last_checkpoint if resume == "auto" else Path(resume)
        if resume == "auto" and not path.exists():
            if self.is_main:
                print(f"--resume auto: no checkpoint in {path.parent}, starting from scratch")
            return
        state = ckpt.load_checkpoint(path)
        if state.get("world_size", 1) != self.env.world_size:
            raise PureNoiseError(
                f"checkpoint {path} was written by {state.get('world_size', 1)} process(es); resume it "
                f"with the same number (this run has {self.env.world_size})"
            )
        ckpt.validate_checkpoint(state, path, training=True, model=self.module, epochs=self.cfg.epochs,
                                 steps_per_epoch=self.steps_per_epoch)
        check_branch_compatible(state["config"], self.cfg, path, same_run=True)
        self._restore(state, path)
        self.start_epoch, self.start_batch = state["epoch"], state["batch"]
        self.epoch_state = state.get("epoch_state")
        self.branch = state.get("branch")
        self.train_at_defer = state.get("train_at_defer")
        if self.is_main:
            print(f"resumed from {path}: epoch {self.start_epoch + 1}, batch {self.start_batch}")

    def _init_from(self, source: str) -> None:
        defer = self.cfg.defer_epoch
        if defer is None:
            raise PureNoiseError("--init-from needs defer_epoch in the config: the epoch to branch at")
        path = Path(source)
        if path.is_dir():
            path = RunPaths(source).epoch_checkpoint(defer)
            if not path.exists():
                found = [p.name for p in RunPaths(source).epoch_checkpoints()]
                raise PureNoiseError(
                    f"--init-from {source}: no checkpoint at the defer epoch {defer} ({path.name}); "
                    f"found: {', '.join(found) or 'none'}. Train the parent with defer_epoch: {defer}"
                )
        state = ckpt.load_checkpoint(path)
        ckpt.validate_checkpoint(state, path, training=True, model=self.module)
        if state["epoch"] != defer or state["batch"] != 0:
            raise PureNoiseError(
                f"--init-from {path}: it was taken at epoch {state['epoch']}, but this run branches "
                f"at defer_epoch {defer}"
            )
        check_branch_compatible(state["config"], self.cfg, path, same_run=False)
        self._restore(state, path)
        self.start_epoch, self.start_batch = defer, 0
        self.branch = {"from": str(path.resolve()), "epoch": defer, "parent": saved_value(state["config"], "name")}
        if self.is_main:
            self.folder.copy_parent_metrics(path.parent.parent, defer)
            print(f"branched from {path} at epoch {defer}")
