"""Evaluation on a held-out set: logits for every image, then the long-tail metrics."""
from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from purenoise.metrics import compute_metrics

__all__ = ["Normalizer", "autocast_context", "predict_logits", "evaluate"]


class Normalizer:
    """``(x - mean) / std`` per channel on the device, optionally to channels_last."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device,
                 channels_last: bool = False) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.inv_std = (1.0 / torch.tensor(std, dtype=torch.float32, device=device)).view(1, -1, 1, 1)
        self.channels_last = channels_last

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype == torch.uint8:
            images = images.float().div_(255.0)
        out = (images.float() - self.mean) * self.inv_std
        return out.contiguous(memory_format=torch.channels_last) if self.channels_last else out

    def undo(self, images: torch.Tensor) -> torch.Tensor:
        """Back to pixel space ``[0, 1]`` (for saving images a person can look at)."""
        return (images.float() / self.inv_std + self.mean).clamp(0, 1)


def autocast_context(device: torch.device, amp: str):
    """bfloat16 autocast on CPU or GPU, float16 on GPU, or nothing."""
    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


@torch.no_grad()
def predict_logits(model: nn.Module, loader: DataLoader, device: torch.device, normalize: Normalizer,
                   amp: str = "none") -> tuple[torch.Tensor, torch.Tensor]:
    """Float32 logits and labels of every batch of ``loader``, on the CPU."""
    was_training = model.training
    model.eval()
    logits, labels = [], []
    try:
        for images, y in loader:
            images = normalize(images.to(device, non_blocking=True))
            with autocast_context(device, amp):
                out = model(images)
            logits.append(out.float().cpu())
            labels.append(torch.as_tensor(y).cpu())
    finally:
        model.train(was_training)
    return torch.cat(logits), torch.cat(labels)


def evaluate(model: nn.Module, dataset: Dataset, *, class_counts: Sequence[int], device: torch.device,
             normalize: Normalizer, batch_size: int = 256, workers: int = 2, amp: str = "none",
             class_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Metrics of ``model`` on ``dataset`` (its own transform applied): see ``compute_metrics``."""

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=device.type == "cuda")
    logits, labels = predict_logits(model, loader, device, normalize, amp)
    return compute_metrics(logits, labels, class_counts, class_names=class_names)
