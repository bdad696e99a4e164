"""CIFAR ResNets (He et al., 2016, section 4.2) as in the LDAM-DRW code (Cao et al., 2019).

A 3x3 stem with 16 channels, three stages of ``n`` basic blocks with 16, 32, 64 channels
(strides 1, 2, 2), "option A" parameter-free shortcuts (subsample and zero-pad the channels),
global average pooling and a linear or, for LDAM, cosine (:class:`NormedLinear`) classifier.
Depth ``6n + 2``: resnet20, 32, 44, 56, 110. Kaiming-normal (fan_in) initialization of every
convolution and of the classifier, as in LDAM-DRW.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from purenoise.errors import ModelError
from purenoise.models.layers import BasicBlock, make_classifier
from purenoise.models.registry import register_model

__all__ = ["CifarResNet", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110"]


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 images. ``fc`` is the classifier; ``num_features`` is 64.

    Args:
        depth: ``6n + 2`` (20, 32, 44, 56, 110, ...).
        num_classes: number of logits.
        in_chans: input channels.
        use_norm: cosine classifier, as LDAM-DRW uses with the LDAM loss.
    """

    def __init__(self, depth: int = 32, num_classes: int = 10, in_chans: int = 3,
                 use_norm: bool = False) -> None:
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise ModelError(
                f"CIFAR ResNet depth must be 6n + 2 (20, 32, 44, 56, 110), got {depth!r}"
            )
        n = (depth - 2) // 6
        self.depth = depth
        self.num_features = 64
        self.conv1 = nn.Conv2d(in_chans, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, n, 1)
        self.layer2 = self._stage(16, 32, n, 2)
        self.layer3 = self._stage(32, 64, n, 2)
        self.fc = make_classifier(64, num_classes, use_norm)
        for m in self.modules():
            # LDAM-DRW's _weights_init; a NormedLinear keeps its own unit-norm init.
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    @staticmethod
    def _stage(in_planes: int, planes: int, n: int, stride: int) -> nn.Sequential:
        return nn.Sequential(*[BasicBlock(in_planes if i == 0 else planes, planes,
                                          stride if i == 0 else 1, shortcut="pad") for i in range(n)])

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[N, 64]``, the classifier's input."""
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def _factory(depth: int):
    def make(num_classes: int = 10, in_chans: int = 3, use_norm: bool = False) -> CifarResNet:
        return CifarResNet(depth, num_classes, in_chans, use_norm)

    make.__name__ = f"resnet{depth}"
    make.__qualname__ = make.__name__
    make.__doc__ = (f"CIFAR ResNet-{depth} as in LDAM-DRW; ``use_norm=True`` gives the cosine "
                    "classifier the LDAM loss expects.")
    return register_model(make)


resnet20 = _factory(20)
resnet32 = _factory(32)
resnet44 = _factory(44)
resnet56 = _factory(56)
resnet110 = _factory(110)
