"""The running sums of one training epoch: loss, accuracy on natural rows, rows of each kind."""
from __future__ import annotations

import torch

__all__ = ["EpochStats"]


class EpochStats:
    """Per-epoch running sums, kept on the device to avoid a host sync per step.

    ``loss_sum`` and ``rows`` count every row of a batch (noise rows too); ``correct`` counts the
    natural rows predicted right, ``natural`` and ``noise`` the rows of each kind, and ``bad_step``
    is the first step whose loss was not finite (-1: none). :meth:`values` is what a checkpoint
    stores, so a run resumed mid-epoch continues the same sums.
    """

    KEYS = ("loss_sum", "rows", "correct", "natural", "noise", "bad_step")

    def __init__(self, device: torch.device, state: dict[str, float] | None = None) -> None:
        self.t = torch.zeros(len(self.KEYS), dtype=torch.float64, device=device)
        self.t[5] = -1
        if state:
            self.t.copy_(torch.tensor([state[k] for k in self.KEYS], dtype=torch.float64))

    def update(self, loss: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, n_noise: int,
               step: int) -> None:
        rows = labels.shape[0]
        nat = rows - n_noise
        correct = (logits[:nat].argmax(1) == labels[:nat]).sum()
        bad = ~torch.isfinite(loss.detach())
        self.t[0] += loss.detach().double() * rows
        self.t[1] += rows
        self.t[2] += correct
        self.t[3] += nat
        self.t[4] += n_noise
        self.t[5] = torch.where(bad & (self.t[5] < 0), float(step), self.t[5])

    def values(self) -> dict[str, float]:
        return dict(zip(self.KEYS, self.t.tolist()))
