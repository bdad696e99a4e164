"""The training loop: one readable loop for every scheme, with OPeN at one place in it.

    for epoch:
        sampler for the scheme (instance until defer_epoch, class-balanced after)
        for batch:
            normalize -> OPeN (when active) -> routed forward (DAR-BN) -> loss -> backward -> step

Everything around it (data, model, checkpoints, metrics) is set up by :class:`Trainer`.
"""
from __future__ import annotations

import copy
import os
import signal
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm.auto import tqdm

from purenoise.config import settings
from purenoise.darbn import convert_sync_darbn, revert_darbn, split_blockers
from purenoise.engine.batches import LoaderBatches
from purenoise.engine.device_batches import create_device_batches
from purenoise.engine.distributed import DistEnv, any_rank, init_distributed
from purenoise.engine.epoch_stats import EpochStats
from purenoise.engine.evaluate import Normalizer, evaluate
from purenoise.engine.memorization import memorization, training_set_view
from purenoise.engine.optim import create_optimizer, create_scheduler, optimizer_kwargs, schedule_kwargs
from purenoise.engine.run_folder import RunFolder
from purenoise.engine.seeding import derive_seed, seed_everything
from purenoise.engine.setup import (
    augment_name,
    build_data,
    build_model,
    default_transforms,
    export_state,
    loss_options,
)
from purenoise.engine.run_state import DIVERGED_ADVICE, RunState
from purenoise.engine.signals import StopSignals, TrainingInterrupted, leave_stop_signals_to_main
from purenoise.engine.step import StepResult, TrainingDiverged, check_batch_size, train_step
from purenoise.errors import ConfigError
from purenoise.losses import create_loss
from purenoise.noise import PureNoise
from purenoise.open import NoiseAugment, OPeN
from purenoise.provenance import provenance
from purenoise.run_paths import LAST_CHECKPOINT, RunPaths
from purenoise.schemes import NOISE_SCHEMES, noise_for_epoch, sampling_for_epoch
from purenoise.settings import Settings

__all__ = ["Trainer", "StepResult", "TrainingInterrupted", "TrainingDiverged", "train"]

_CHECK_EVERY = 25  # steps between host syncs for the progress bar and the non-finite check


class Trainer(RunState):
    """Trains one run described by a resolved config (see :mod:`purenoise.config`).

    Args:
        cfg: The run's :class:`~purenoise.settings.Settings`, or a resolved config from
            :func:`~purenoise.config.load_config` (turned into its settings); the trainer reads
            them as ``self.cfg.<key>``.
        out_dir: The run folder (config, metrics.jsonl, checkpoints, eval.json).
        resume: ``None``, ``"auto"`` (the run folder's last checkpoint, if any) or a checkpoint
            path: continue exactly where that run stopped.
        init_from: A run folder or checkpoint taken at this config's ``defer_epoch``: start the
            second phase from it instead of retraining the shared first phase.
        detect_anomaly: Run autograd anomaly detection (slow; for debugging NaNs).
        env: Process placement (default: from torchrun's environment, else one process).
        reuse: Write into ``out_dir`` even if it holds files a run does not write.
    """

    def __init__(self, cfg: Settings | Mapping[str, Any], out_dir: str | os.PathLike, *, resume: str | None = None,
                 init_from: str | None = None, detect_anomaly: bool = False,
                 env: DistEnv | None = None, reuse: bool = False) -> None:
        self.cfg = cfg = settings(cfg)  # read by attribute; the trainer keeps no other copy
        self.out = Path(out_dir)
        self.env = env or init_distributed(cfg.device)
        self.device = self.env.device
        self.detect_anomaly = detect_anomaly
        self.signals = StopSignals()
        self.is_main = self.env.is_main
        # Checked before any data is read: a bad --out should not cost a long set-up first.
        self.folder = RunFolder(self.out, cfg.tensorboard, reuse=reuse) if self.is_main else None
        self._setup()
        self.start_epoch, self.start_batch, self.epoch_state = 0, 0, None
        self.branch: dict[str, Any] | None = None
        if resume is not None:
            self._resume(resume)
        elif init_from is not None:
            self._init_from(init_from)
        # Continuing a run keeps its results; a new run (a branch too) clears the previous run's.
        self.resumed = resume is not None and (self.start_epoch, self.start_batch) != (0, 0)
        self._wrap_model()

    # ----------------------------------------------------------------- set-up
    def _setup(self) -> None:
        cfg, env = self.cfg, self.env
        seed_everything(derive_seed(cfg.seed, "init"))
        self.data = build_data(cfg)
        info = self.data.info
        self.class_counts = list(self.data.class_counts)
        self.num_classes = info.num_classes
        seed_everything(derive_seed(cfg.seed, "init"))  # model init independent of data set-up
        self.model = build_model(cfg, info, self.class_counts, warn=self.is_main)
        check_batch_size(self.model, cfg.batch_size)  # one row at a time cannot train plain BatchNorm
        if cfg.sync_bn and env.distributed:
            convert_sync_darbn(self.model)
        self.model.to(self.device)
        self.module = self.model  # the plain model: checkpoints, evaluation, export
        if cfg.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.normalize = Normalizer(info.mean, info.std, self.device, cfg.channels_last)
        train_tf, self.eval_tf = default_transforms(cfg, info)
        try:
            if cfg.loader == "device":  # train set, draws and augmentation all on the device
                self.batches = create_device_batches(
                    self.data, augment_name(cfg, info), dataset=cfg.dataset, batch_size=cfg.batch_size,
                    seed=cfg.seed, limit_batches=cfg.limit_batches, compile=cfg.compile, device=self.device,
                    rank=env.rank, world_size=env.world_size,
                )
            else:
                self.batches = LoaderBatches(
                    self.data.train, train_tf, self.data.targets, batch_size=cfg.batch_size,
                    device=self.device, seed=cfg.seed, workers=cfg.workers, rank=env.rank,
                    world_size=env.world_size, limit_batches=cfg.limit_batches,
                )
        except ConfigError:
            raise
        except ValueError as e:  # e.g. fewer images than one batch: a config value at fault
            raise ConfigError(f"config key 'batch_size' is {cfg.batch_size}: {e}") from None
        self.steps_per_epoch = len(self.batches)
        loader = getattr(self.batches, "loader", None)
        if getattr(loader, "num_workers", 0) > 0 and loader.worker_init_fn is None:
            # Ctrl-C or a scheduler's SIGTERM reaches the workers too; they leave stopping to
            # this process, which first saves a resumable checkpoint.
            loader.worker_init_fn = leave_stop_signals_to_main
        self.optimizer = create_optimizer(self.model, **optimizer_kwargs(cfg))
        self.scheduler = create_scheduler(self.optimizer, self.steps_per_epoch, **schedule_kwargs(cfg))
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg.amp == "fp16")

        self.criterion = create_loss(cfg.loss, self.class_counts, **loss_options(cfg)).to(self.device)
        noise = PureNoise(info.mean, info.std, kind=cfg.noise)
        norm = (info.mean, info.std)
        self.open_ = OPeN(self.class_counts, cfg.delta, noise=noise, normalize=norm) \
            if cfg.method == "open" else None
        self.noise_aug = NoiseAugment(self.num_classes, cfg.noise_ratio, noise=noise, normalize=norm) \
            if cfg.method == "noise_aug" else None
        self.noise_gen = torch.Generator(self.device)
        self.noise = noise
        self.train_at_defer: dict[str, Any] | None = None  # the memorization diagnostic there

    def _wrap_model(self) -> None:
        model = self.model
        if self.env.distributed:
            model = DDP(model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                        find_unused_parameters=self.cfg.bn_mode == "aux")
        if self.cfg.compile:
            model = torch.compile(model)
        self.train_model = model
        self.split_blockers = split_blockers(model)  # fixed for the run: not worked out per step
        if self.cfg.noise_pass == "split" and self.cfg.method in NOISE_SCHEMES and self.split_blockers:
            raise ConfigError(
                "config key 'noise_pass' is 'split', but noise rows cannot take their own forward "
                f"pass through this model without changing the result: {'; '.join(self.split_blockers)}. "
                "Use noise_pass 'auto' (splits only where exact) or 'joint'."
            )

    # ----------------------------------------------------------------- the loop
    def fit(self) -> dict[str, Any] | None:
        """Train to the last epoch, evaluate on the test set, write eval.json; return its metrics."""
        cfg = self.cfg
        if self.is_main:
            self.folder.truncate_metrics(self.start_epoch)
            if not self.resumed and (gone := self.folder.clear_results()):
                print(f"{self.out}: a new run starts here; removed the previous run's {', '.join(gone)}")
            self.folder.write_config(cfg)
        try:
            with self.signals, torch.autograd.set_detect_anomaly(self.detect_anomaly):
                for epoch in range(self.start_epoch, cfg.epochs):
                    start = self.start_batch if epoch == self.start_epoch else 0
                    if epoch == cfg.defer_epoch and start == 0 and epoch > 0 and self.branch is None:
                        # The branch point: ERM, DRS and OPeN runs can all start from here.
                        self._save(RunPaths(self.out).epoch_checkpoint(epoch).name, epoch)
                    if epoch == cfg.defer_epoch and start == 0 and epoch > 0:
                        # Parent and branches alike: the model every scheme starts its phase from.
                        self.train_at_defer = self._memorization(epoch)
                    record = self._train_epoch(epoch, start)
                    if cfg.eval_every and (epoch + 1) % cfg.eval_every == 0 and epoch + 1 < cfg.epochs:
                        record.update(self._test_curve())
                    if self.is_main:
                        self.folder.append_metrics(record)
                        self._print_epoch(record)
                    if self.stop_after_epoch:  # a signal in its last step: stop, its metrics line written
                        self._interrupt(epoch + 1, 0, None)
                    if (epoch + 1) % cfg.checkpoint_every == 0 or epoch + 1 == cfg.epochs:
                        self._save(LAST_CHECKPOINT, epoch + 1)
            return self._finish()
        finally:
            if self.folder is not None:
                self.folder.close()

    def _train_epoch(self, epoch: int, start: int) -> dict[str, Any]:
        cfg, env = self.cfg, self.env
        method = cfg.method
        kind = sampling_for_epoch(method, epoch, cfg.defer_epoch, cfg.sampling)
        noise_on = noise_for_epoch(method, epoch, cfg.defer_epoch)
        self.batches.set_epoch(epoch, kind, start)
        if hasattr(self.criterion, "set_epoch"):
            self.criterion.set_epoch(epoch)
        stats = EpochStats(self.device, self.epoch_state if start else None)
        self.epoch_state = None
        self.train_model.train()
        bar = self._progress(epoch, start)
        t0, rows0 = time.perf_counter(), stats.values()["rows"]
        for b, (images, labels) in enumerate(self.batches, start=start):
            step = epoch * self.steps_per_epoch + b
            self._seed_step(derive_seed(cfg.seed, "step", step, env.rank))  # dropout etc.
            self.noise_gen.manual_seed(derive_seed(cfg.seed, "noise", step, env.rank))
            out = self.train_step(images, labels, noise=noise_on,
                                  where=f" at epoch {epoch + 1}, step {b + 1} (global step {step})")
            if out.n_noise and self.is_main and cfg.save_samples and not self.folder.has_samples():
                self._save_samples(out.images, out.labels, out.n_noise)
            stats.update(out.loss, out.logits.detach(), out.labels, out.n_noise, step)
            last = b + 1 == self.steps_per_epoch
            if (b + 1) % _CHECK_EVERY == 0 or last:
                self._check_finite(stats, epoch)
                if bar is not None:
                    v = stats.values()
                    bar.set_postfix(loss=f"{v['loss_sum'] / max(v['rows'], 1):.4f}",
                                    acc=f"{v['correct'] / max(v['natural'], 1):.3f}",
                                    noise=f"{v['noise'] / max(v['rows'], 1):.2f}", refresh=False)
            if bar is not None:
                bar.update(cfg.batch_size)  # images drawn from the training set
            if any_rank(self.signals.received is not None, env) and not last:
                self._check_finite(stats, epoch)  # a diverged run is reported as such, not saved
                self._interrupt(epoch, b + 1, stats)
        if bar is not None:
            bar.close()
        self._check_finite(stats, epoch)
        # A signal during the last step: the caller writes this epoch's metrics line, then stops.
        self.stop_after_epoch = any_rank(self.signals.received is not None, env)
        return self._epoch_record(epoch, kind, stats, time.perf_counter() - t0, rows0)

    def train_step(self, images: torch.Tensor, labels: torch.Tensor, *, noise: bool = False,
                   noise_pass: str | None = None, where: str = "") -> StepResult:
        """One optimizer step on a batch, exactly as the training loop runs it (see :mod:`~purenoise.engine.step`).

        Args:
            images: Augmented images in ``[0, 1]`` (float or uint8), on the trainer's device.
            labels: Their labels.
            noise: Apply the run's noise transform (the loop does from ``defer_epoch`` for OPeN),
                drawing from the trainer's noise generator.
            noise_pass: Override the config's ``noise_pass`` for this step.
            where: Where the step is, for error messages (e.g. " at epoch 3, step 7").

        Returns:
            The loss, the logits, the batch as trained (normalized images with the noise rows
            last, and their labels) and the number of noise rows.
        """
        cfg = self.cfg
        transform = None
        if noise:
            transform = self.open_ if cfg.method == "open" else self.noise_aug
            if transform is None:
                raise ConfigError(f"method '{cfg.method}' trains on no pure noise; noise=True needs "
                                  "open or noise_aug")
        return train_step(self.train_model, self.normalize(images), labels, criterion=self.criterion,
                          optimizer=self.optimizer, noise=transform, generator=self.noise_gen, amp=cfg.amp,
                          noise_pass=noise_pass or cfg.noise_pass, blockers=self.split_blockers,
                          scaler=self.scaler, scheduler=self.scheduler, grad_clip=cfg.grad_clip,
                          clip_params=self.module.parameters(), detect_anomaly=self.detect_anomaly, where=where)

    def _seed_step(self, seed: int) -> None:
        # Only the generators this process draws from: torch.manual_seed would also reach every
        # CUDA device, which costs far more than a training step of a small model on the CPU.
        torch.random.default_generator.manual_seed(seed)
        if self.device.type == "cuda":
            torch.cuda.manual_seed(seed)

    def _epoch_record(self, epoch, kind, stats, seconds, rows0) -> dict[str, Any]:
        t = stats.t.clone()
        if self.env.distributed:
            torch.distributed.all_reduce(t)
        v = dict(zip(EpochStats.KEYS, t.tolist()))
        record = {
            "epoch": epoch,
            "lr": self.optimizer.param_groups[0]["lr"],
            "train_loss": v["loss_sum"] / max(v["rows"], 1),
            "train_acc": v["correct"] / max(v["natural"], 1),
            "noise_frac": v["noise"] / max(v["rows"], 1),
            "sampling": kind,
            "images_per_s": (v["rows"] - rows0 * self.env.world_size) / max(seconds, 1e-9),
            "time_s": seconds,
            "steps": self.steps_per_epoch,
        }
        if self.env.distributed:
            record["ranks_in_sync"] = self._ranks_in_sync()
        return record

    def _ranks_in_sync(self) -> bool:
        """Whether every process holds bit-identical weights (DDP must keep them so).

        Buffers are left out: without sync_bn each process's last forward updates its own BatchNorm
        running statistics, and DDP broadcasts rank 0's before the next forward (rank 0 saves them).
        """
        flat = torch.cat([p.detach().reshape(-1).double() for p in self.module.parameters()])
        # Two checksums that a bit flip anywhere changes: a plain and a position-weighted sum.
        weights = torch.arange(1, flat.numel() + 1, device=flat.device, dtype=torch.float64)
        mine = torch.stack([flat.sum(), (flat * weights.reciprocal()).sum()])
        gathered = [torch.empty_like(mine) for _ in range(self.env.world_size)]
        torch.distributed.all_gather(gathered, mine)
        ok = all(torch.equal(g, gathered[0]) for g in gathered)
        if not ok and self.is_main:
            warnings.warn("DDP processes hold different weights at the end of an epoch", stacklevel=2)
        return ok

    def _check_finite(self, stats: EpochStats, epoch: int) -> None:
        bad = stats.values()["bad_step"]
        if any_rank(bad >= 0, self.env):
            step = int(bad) if bad >= 0 else epoch * self.steps_per_epoch
            raise TrainingDiverged(
                f"the loss became NaN or infinite at epoch {epoch + 1}, step {step - epoch * self.steps_per_epoch + 1} "
                f"(global step {step}); training stopped and {self._last_good()}. {DIVERGED_ADVICE}"
            )

    # ----------------------------------------------------------------- signals
    def _interrupt(self, epoch: int, batch: int, stats: EpochStats | None) -> None:
        signum = self.signals.received or signal.SIGTERM
        try:
            path = self._save(LAST_CHECKPOINT, epoch, batch, stats.values() if stats is not None else None)
        except TrainingDiverged as e:
            raise TrainingDiverged(f"{signal.Signals(signum).name} received, but {e}") from None
        where = f"epoch {epoch + 1}, batch {batch}" if batch else f"the start of epoch {epoch + 1}"
        raise TrainingInterrupted(
            f"{signal.Signals(signum).name} received: saved a resumable checkpoint at {where} "
            f"({path or 'rank 0 writes it'}). Continue with: purenoise train --config "
            f"{RunPaths(self.out).config} --out {self.out} --resume auto",
            signum,
        )

    # ----------------------------------------------------------------- outputs
    def _progress(self, epoch: int, start: int):
        if not (self.cfg.progress and self.is_main):
            return None

        # Counted in images drawn from the training set, so its rate is images/s.
        bs = self.cfg.batch_size
        return tqdm(total=self.steps_per_epoch * bs, initial=start * bs, unit="img", unit_scale=True,
                    dynamic_ncols=True, leave=False, mininterval=1.0,
                    desc=f"{self.cfg.name or 'train'} epoch {epoch + 1}/{self.cfg.epochs}")

    def _print_epoch(self, record: dict[str, Any]) -> None:
        if self.cfg.progress:
            extra = f" test {record['test_top1']:.4f}" if "test_top1" in record else ""
            print(f"epoch {record['epoch'] + 1}/{self.cfg.epochs} [{record['sampling']}] loss "
                  f"{record['train_loss']:.4f} acc {record['train_acc']:.4f} noise {record['noise_frac']:.3f} "
                  f"lr {record['lr']:.4g} {record['images_per_s']:.0f} img/s{extra}", flush=True)

    def _save_samples(self, images: torch.Tensor, labels: torch.Tensor, k: int) -> None:
        n = min(8, k, images.shape[0] - k)
        b = images.shape[0]
        self.folder.save_samples(self.normalize.undo(images[:n]), self.normalize.undo(images[b - n:]),
                                 labels[:n], labels[b - n:])

    def _test_curve(self) -> dict[str, float]:
        m = self._evaluate()
        return {} if m is None else {"test_top1": m["top1"], "test_balanced_acc": m["balanced_acc"]}

    def _evaluate(self) -> dict[str, Any] | None:
        if not self.is_main or self.data.test is None:
            return None
        return evaluate(self.module, self.data.test, class_counts=self.class_counts, device=self.device,
                        normalize=self.normalize, batch_size=max(256, self.cfg.batch_size),
                        workers=self.cfg.workers, amp=self.cfg.amp,
                        class_names=self.data.info.class_names)

    def _memorization(self, epoch: int) -> dict[str, Any] | None:
        """The training-set diagnostic (see :mod:`purenoise.engine.memorization`), on rank 0."""
        if not self.is_main or not self.cfg.memorization:
            return None
        info = self.data.info
        result = memorization(self.module, training_set_view(self.data.train, self.eval_tf),
                              class_counts=self.class_counts, device=self.device, normalize=self.normalize,
                              noise=self.noise, image_size=info.image_size,
                              seed=derive_seed(self.cfg.seed, "memorization"),
                              batch_size=max(256, self.cfg.batch_size), workers=self.cfg.workers,
                              amp=self.cfg.amp)
        return {"epoch": epoch, **result}

    def _finish(self) -> dict[str, Any] | None:
        metrics = self._evaluate()
        train = self._memorization(self.cfg.epochs) if metrics is not None else None
        if self.env.distributed:
            torch.distributed.barrier()
        if not self.is_main:
            return None
        info = self.data.info
        export = revert_darbn(copy.deepcopy(self.module).cpu())
        self.folder.save_model(export_state(export, self.cfg, info, self.class_counts))
        if metrics is None:
            return None
        result = {**metrics, "class_counts": self.class_counts, "class_names": info.class_names,
                  "method": self.cfg.method, "dataset": self.cfg.dataset, "model": self.cfg.model,
                  "epoch": self.cfg.epochs, "run": self.cfg.name, "branch": self.branch,
                  "data_notes": list(info.notes), "provenance": provenance(self.device)}
        if train is not None:
            result.update({k: v for k, v in train.items() if k != "epoch"})
        if self.train_at_defer is not None:
            result["train_at_defer"] = self.train_at_defer
        self.folder.write_eval(result)
        return result


def train(cfg: Settings | Mapping[str, Any], out_dir: str | os.PathLike, **kwargs: Any) -> dict[str, Any] | None:
    """Train and evaluate one run; see :class:`Trainer`."""
    return Trainer(cfg, out_dir, **kwargs).fit()
