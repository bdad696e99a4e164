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

from purenoise.darbn import routed_forward, routed_layers
from purenoise.engine.evaluate import autocast_context
from purenoise.errors import ConfigError, PureNoiseError

__all__ = ["StepResult", "TrainingDiverged", "train_step", "check_batch_size"]

# The start of BatchNorm's refusal of a batch that gives one value per channel.
_ONE_VALUE = "Expected more than 1 value per channel when training"


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


def _plain_batch_norms(model: nn.Module) -> list[str]:
    """Names of the BatchNorm layers in training mode that normalize every row together.

    DAR-BN and auxiliary-BN layers (and the auxiliary branches inside them) are left out: they
    normalize a group of one value per channel with their running statistics.
    """
    routed = routed_layers(model)
    inside = {id(m) for layer in routed for m in layer.modules()}
    return [name or "<model>" for name, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and id(m) not in inside]


def check_batch_size(model: nn.Module, batch_size: int) -> None:
    """Refuse a training batch of one row for a model with plain BatchNorm layers.

    BatchNorm normalizes a row with the statistics of its batch; one row gives one value per
    channel at a 1x1 feature map, which BatchNorm refuses in the middle of training. Called
    where the batch size and the model meet, before any step.

    Raises:
        ConfigError: For ``batch_size`` 1 and a BatchNorm layer that is not DAR-BN.
    """
    names = _plain_batch_norms(model) if batch_size == 1 else []
    if names:
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        raise ConfigError(
            f"config key 'batch_size' is 1, but the model's BatchNorm layers ({shown}) normalize each "
            "batch with its own statistics, and one image gives them a single value per channel. "
            "Set batch_size to 2 or more."
        )


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
    try:
        with autocast_context(images.device, amp):
            logits = routed_forward(model, images, k, noise_pass=noise_pass, blockers=blockers)
    except ValueError as e:
        if not str(e).startswith(_ONE_VALUE):
            raise
        raise ConfigError(
            f"config key 'batch_size': a BatchNorm layer got one value per channel from a batch of "
            f"{images.shape[0]} row(s){where} and cannot normalize it ({e}). Set batch_size to 2 or "
            "more, or use bn_mode darbn, whose layers normalize a one-value-per-channel group by its own "
            "statistics (it comes out as beta) and leave the running statistics as they are."
        ) from None
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
