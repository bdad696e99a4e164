"""Pre-activation WideResNet (Zagoruyko & Komodakis, 2016), the CIFAR variant the paper uses.

Follows the widely used CIFAR implementation (xternalz/WideResNet-pytorch): a 3x3 stem with 16
channels, three groups of ``(depth - 4) / 6`` pre-activation basic blocks with widths 16k, 32k,
64k (strides 1, 2, 2), dropout between the two convolutions of a block, a final BN-ReLU, global
average pooling and a linear classifier. The pooling is adaptive, so 28x28 inputs work too.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from purenoise.errors import ModelError
from purenoise.models.layers import init_resnet_weights, make_classifier
from purenoise.models.registry import register_model

__all__ = ["WideResNet", "wrn", "wrn28_10", "wrn28_2", "wrn16_4", "wrn16_8"]


class _BasicBlock(nn.Module):
    """BN-ReLU-conv3x3-(dropout)-BN-ReLU-conv3x3 with an identity or 1x1-conv shortcut."""

    def __init__(self, in_planes: int, out_planes: int, stride: int, dropout: float) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_planes, out_planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_planes)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(out_planes, out_planes, 3, 1, 1, bias=False)
        self.dropout = dropout
        self.equal_in_out = in_planes == out_planes and stride == 1
        self.shortcut = (None if self.equal_in_out
                         else nn.Conv2d(in_planes, out_planes, 1, stride, 0, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = self.relu1(self.bn1(x))
        # When the shape changes, the projection shortcut sees the pre-activated input, as in
        # the reference implementation; otherwise the shortcut is the raw input.
        residual = x if self.equal_in_out else self.shortcut(act)
        out = self.relu2(self.bn2(self.conv1(act)))
        if self.dropout > 0:
            out = F.dropout(out, p=self.dropout, training=self.training)
        return residual + self.conv2(out)


class WideResNet(nn.Module):
    """WRN-depth-width. ``fc`` is the classifier; ``num_features`` its input width (64k).

    Args:
        depth: total depth; ``(depth - 4) % 6 == 0`` (10, 16, 22, 28, 40, ...).
        width: widening factor k.
        num_classes: number of logits.
        dropout: dropout probability between the two convolutions of every block.
        in_chans: input channels.
        use_norm: cosine classifier (:class:`NormedLinear`) instead of a linear one, for LDAM.
    """

    def __init__(self, depth: int = 28, width: int = 10, num_classes: int = 10,
                 dropout: float = 0.0, in_chans: int = 3, use_norm: bool = False) -> None:
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 10 or (depth - 4) % 6:
            raise ModelError(
                f"WideResNet depth must satisfy (depth - 4) % 6 == 0 with depth >= 10 "
                f"(10, 16, 22, 28, 40, ...), got {depth!r}"
            )
        if isinstance(width, bool) or not isinstance(width, int) or width < 1:
            raise ModelError(f"WideResNet width must be an integer >= 1, got {width!r}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ModelError(f"WideResNet dropout must be in [0, 1), got {dropout!r}")
        n = (depth - 4) // 6
        widths = [16, 16 * width, 32 * width, 64 * width]
        self.depth, self.width = depth, width
        self.num_features = widths[3]
        self.conv1 = nn.Conv2d(in_chans, widths[0], 3, 1, 1, bias=False)
        self.block1 = self._group(widths[0], widths[1], n, 1, dropout)
        self.block2 = self._group(widths[1], widths[2], n, 2, dropout)
        self.block3 = self._group(widths[2], widths[3], n, 2, dropout)
        self.bn = nn.BatchNorm2d(widths[3])
        self.relu = nn.ReLU(inplace=True)
        self.fc = make_classifier(widths[3], num_classes, use_norm)
        init_resnet_weights(self)

    @staticmethod
    def _group(in_planes: int, out_planes: int, n: int, stride: int,
               dropout: float) -> nn.Sequential:
        return nn.Sequential(*[
            _BasicBlock(in_planes if i == 0 else out_planes, out_planes, stride if i == 0 else 1,
                        dropout)
            for i in range(n)
        ])

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``[N, num_features]``, the classifier's input."""
        out = self.block3(self.block2(self.block1(self.conv1(x))))
        out = self.relu(self.bn(out))
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def wrn(depth: int, width: int, dropout: float = 0.0, *, num_classes: int = 10,
        in_chans: int = 3, use_norm: bool = False) -> WideResNet:
    """WideResNet of any valid depth and width (see :class:`WideResNet`)."""
    return WideResNet(depth, width, num_classes, dropout, in_chans, use_norm)


@register_model(name="wrn")
def _wrn_any(num_classes: int = 10, in_chans: int = 3, depth: int = 28, width: int = 10,
             dropout: float = 0.0, use_norm: bool = False) -> WideResNet:
    """WideResNet with ``depth`` and ``width`` given as options (default WRN-28-10, no dropout)."""
    return wrn(depth, width, dropout, num_classes=num_classes, in_chans=in_chans, use_norm=use_norm)


@register_model
def wrn28_10(num_classes: int = 10, in_chans: int = 3, dropout: float = 0.3,
             use_norm: bool = False) -> WideResNet:
    """WRN-28-10 with dropout 0.3, the paper's CIFAR model (36.5M parameters)."""
    return wrn(28, 10, dropout, num_classes=num_classes, in_chans=in_chans, use_norm=use_norm)


@register_model
def wrn28_2(num_classes: int = 10, in_chans: int = 3, dropout: float = 0.0,
            use_norm: bool = False) -> WideResNet:
    """WRN-28-2 (1.5M parameters)."""
    return wrn(28, 2, dropout, num_classes=num_classes, in_chans=in_chans, use_norm=use_norm)


@register_model
def wrn16_4(num_classes: int = 10, in_chans: int = 3, dropout: float = 0.0,
            use_norm: bool = False) -> WideResNet:
    """WRN-16-4 (2.7M parameters)."""
    return wrn(16, 4, dropout, num_classes=num_classes, in_chans=in_chans, use_norm=use_norm)


@register_model
def wrn16_8(num_classes: int = 10, in_chans: int = 3, dropout: float = 0.0,
            use_norm: bool = False) -> WideResNet:
    """WRN-16-8 (11M parameters)."""
    return wrn(16, 8, dropout, num_classes=num_classes, in_chans=in_chans, use_norm=use_norm)
