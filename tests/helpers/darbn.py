"""What the DAR-BN tests share: a seeded torchvision ResNet-18 and a gradient check."""
from __future__ import annotations

import torch
import torchvision
from torch import nn


def seeded_resnet18(num_classes: int = 10) -> nn.Module:
    """torchvision's ResNet-18, initialized from torch's global seed 0 (the same weights every call)."""
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=num_classes)


def has_nonzero_grad(p: torch.Tensor) -> bool:
    """Whether ``p`` received a gradient with a nonzero entry."""
    return p.grad is not None and bool(p.grad.abs().sum() > 0)
