"""One training step: the trainer's, and the one the benchmarks time.

    normalized batch -> pure noise (OPeN or noise augmentation; noise rows last) -> routed
    forward under autocast -> loss -> backward (scaled for fp16) -> gradient clipping ->
    optimizer step -> scheduler step

:class:`~purenoise.engine.trainer.Trainer` runs every step of a run through :func:`train_step`;
``benchmarks/`` time the same function, so what they measure is what training does.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from purenoise.darbn import routed_forward
from purenoise.engine.evaluate import autocast_context
from purenoise.errors import PureNoiseError

__all__ = ["StepResult", "TrainingDiverged", "train_step"]


class TrainingDiverged(PureNoiseError):
    """The loss became NaN or infinite; training stopped, the last good checkpoint is kept."""


@dataclass
class StepResult:
    """What a training step returns: the batch as trained and its outputs."""

    loss: torch.Tensor
    logits: torch.Tensor
    images: torch.Tensor  # normalized, noise rows last
    labels: torch.Tensor
    n_noise: int


def train_step(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
               criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], optimizer: torch.optim.Optimizer,
               noise: Callable | None = None, generator: torch.Generator | None = None, amp: str = "none",
               noise_pass: str = "auto", blockers: Sequence[str] | None = None,
               scaler: torch.amp.GradScaler | None = None, scheduler=None, grad_clip: float | None = None,
               clip_params: Iterable[torch.nn.Parameter] | None = None, detect_anomaly: bool = False,
               where: str = "") -> StepResult:
    """One optimizer step on a normalized batch.

    Args:
        model: The model as trained (DDP- or compile-wrapped where the run wraps it).
        images: The normalized batch.
        labels: Its labels.
        criterion: ``loss(logits float32, labels)``.
        optimizer: The optimizer of the model's parameters.
        noise: A pure-noise transform (:class:`~purenoise.open.OPeN` or
            :class:`~purenoise.open.NoiseAugment`) drawing from ``generator``; ``None`` for none.
        generator: Source of the noise transform's draws.
        amp: Autocast mode of the forward (``none``, ``bf16``, ``fp16``).
        noise_pass: How noise rows are forwarded (see :func:`purenoise.darbn.routed_forward`).
        blockers: ``split_blockers(model)``, worked out once per run.
        scaler: The fp16 gradient scaler (``None``: none).
        scheduler: A learning-rate scheduler stepped after the optimizer (``None``: none).
        grad_clip: Clip the gradient norm of ``clip_params`` to this value.
        clip_params: The parameters to clip (default: the model's).
        detect_anomaly: Autograd anomaly detection is on: its error becomes :class:`TrainingDiverged`.
        where: Where the step is, for error messages (e.g. " at epoch 3, step 7").

    Returns:
        The loss, the logits, the batch as trained and the number of noise rows.
    """
    k = 0
    if noise is not None:
        images, labels, k = noise(images, labels, generator=generator)
    with autocast_context(images.device, amp):
        logits = routed_forward(model, images, k, noise_pass=noise_pass, blockers=blockers)
    loss = criterion(logits.float(), labels)
    optimizer.zero_grad(set_to_none=True)
    try:
        (scaler.scale(loss) if scaler is not None else loss).backward()
    except RuntimeError as e:
        if not detect_anomaly:
            raise
        raise TrainingDiverged(f"autograd anomaly detection stopped training{where}: {e} The forward "
                               "operation that produced it is in the warning printed above.") from None
    if grad_clip:
        if scaler is not None:
            scaler.unscale_(optimizer)
        nn.utils.clip_grad_norm_(list(clip_params) if clip_params is not None else model.parameters(), grad_clip)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return StepResult(loss, logits, images, labels, k)
