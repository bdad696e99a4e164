"""Layers shared by purenoise's own networks."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["NormedLinear", "make_classifier", "init_resnet_weights"]


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
