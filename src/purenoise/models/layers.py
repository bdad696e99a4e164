"""Layers shared by purenoise's own networks."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from purenoise.errors import ModelError

__all__ = ["NormedLinear", "make_classifier", "init_resnet_weights", "PadShortcut", "BasicBlock"]


class NormedLinear(nn.Module):
    """Cosine classifier of LDAM-DRW (Cao et al., 2019): logits are cosine similarities.

    Features and class weight vectors are L2-normalized, so every logit lies in [-1, 1]; the
    LDAM loss multiplies them by its scale ``s`` (30). Same parameter layout and initialization
    as the LDAM-DRW code (``weight`` is ``[in_features, out_features]``), so its checkpoints load.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # LDAM-DRW's init: uniform, then every column rescaled to unit norm.
        with torch.no_grad():
            self.weight.uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) @ F.normalize(self.weight, dim=0)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}"


def make_classifier(in_features: int, num_classes: int, use_norm: bool) -> nn.Module:
    """A linear classifier, or a :class:`NormedLinear` one when ``use_norm`` (for LDAM)."""
    if use_norm:
        return NormedLinear(in_features, num_classes)
    return nn.Linear(in_features, num_classes)


def init_resnet_weights(model: nn.Module) -> None:
    """The ResNet initialization of purenoise's own networks, module by module in order.

    Convolutions: Kaiming normal (fan-out, ReLU); BatchNorm: weight 1, bias 0; linear classifier:
    bias 0 (its weight keeps PyTorch's default); :class:`NormedLinear`: LDAM-DRW's init.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)
        elif isinstance(m, NormedLinear):
            m.reset_parameters()


class PadShortcut(nn.Module):
    """Option-A shortcut: take every second pixel and zero-pad the new channels on both sides."""

    def __init__(self, pad_channels: int) -> None:
        super().__init__()
        self.pad_channels = pad_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.pad_channels
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, p, p))


class BasicBlock(nn.Module):
    """Post-activation ResNet basic block: conv3x3-BN-ReLU, conv3x3-BN, add the shortcut, ReLU.

    Args:
        in_planes: Input channels.
        planes: Output channels.
        stride: Stride of the first convolution.
        shortcut: When the shape changes, ``"projection"`` (1x1 conv + BN, "option B") or
            ``"pad"`` (subsample and zero-pad the channels, "option A", which needs stride 2 and
            doubled channels). An unchanged shape always takes the identity.
    """

    def __init__(self, in_planes: int, planes: int, stride: int, shortcut: str = "projection") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            if shortcut == "pad":
                if stride != 2 or planes != 2 * in_planes:
                    raise ModelError("option-A shortcut needs stride 2 and doubled channels")
                self.shortcut = PadShortcut(planes // 4)
            elif shortcut == "projection":
                self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False),
                                              nn.BatchNorm2d(planes))
            else:
                raise ModelError(f"unknown shortcut {shortcut!r}; choose 'projection' or 'pad'")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x), inplace=True)
