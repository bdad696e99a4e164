"""A small ResNet for 28x28 one-channel images (Fashion-MNIST), cheap enough for CPU studies.

Sized so that a study of many Fashion-MNIST-LT runs fits on a CPU, while keeping what OPeN
needs: BatchNorm layers (DAR-BN replaces them) and enough capacity to fit balanced Fashion-MNIST
well. The stem convolution has
stride 2 (28 -> 14 pixels), which is where most of the saving comes from; three stages of one
basic block each (16, 32, 64 channels at 14, 7, 4 pixels) follow. Any input size and channel
count works (adaptive pooling), e.g. 3x32x32.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from purenoise.errors import ModelError
from purenoise.models.layers import BasicBlock, init_resnet_weights, make_classifier
from purenoise.models.registry import register_model

__all__ = ["SmallResNet", "resnet_small"]


class SmallResNet(nn.Module):
    """Stem conv3x3 (stride ``stem_stride``) + BN + ReLU, one basic block per width, pool, fc.

    The first stage keeps the stem's resolution, every later one halves it. ``fc`` is the
    classifier; ``num_features`` its input width.

    Args:
        num_classes: number of logits.
        in_chans: input channels (1 for Fashion-MNIST).
        widths: channels of each stage.
        stem_stride: stride of the stem convolution (2 for speed on 28x28 inputs).
        use_norm: cosine classifier (for LDAM).
    """

    def __init__(self, num_classes: int = 10, in_chans: int = 1,
                 widths: Sequence[int] = (16, 32, 64), stem_stride: int = 2,
                 use_norm: bool = False) -> None:
        super().__init__()
        widths = tuple(widths)
        if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1
                             for w in widths):
            raise ModelError(
                f"widths must be a non-empty list of positive integers, got {widths!r}"
            )
        if stem_stride not in (1, 2):
            raise ModelError(f"stem_stride must be 1 or 2, got {stem_stride!r}")
        self.num_features = widths[-1]
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, widths[0], 3, stem_stride, 1, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(inplace=True),
        )
        stages, prev = [], widths[0]
        for i, w in enumerate(widths):
            stages.append(BasicBlock(prev, w, 1 if i == 0 else 2))
            prev = w
        self.stages = nn.Sequential(*stages)
        self.fc = make_classifier(prev, num_classes, use_norm)
        init_resnet_weights(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[N, num_features]``, the classifier's input."""
        out = self.stages(self.stem(x))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


@register_model
def resnet_small(num_classes: int = 10, in_chans: int = 1, widths: Sequence[int] = (16, 32, 64),
                 stem_stride: int = 2, use_norm: bool = False) -> SmallResNet:
    """Small ResNet for Fashion-MNIST-sized images (78k parameters, 9 BatchNorm layers).

    Note that :func:`create_model` passes its own ``in_chans`` (default 3): give ``in_chans=1``
    for one-channel images.
    """
    return SmallResNet(num_classes, in_chans, widths, stem_stride, use_norm)
