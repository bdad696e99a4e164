"""Models by name: purenoise's CIFAR and small networks, torchvision's, and timm's.

>>> from purenoise.models import create_model, list_models
>>> model = create_model("wrn28_10", num_classes=10)           # the paper's CIFAR model
>>> model = create_model("resnet_small", 10, in_chans=1)        # Fashion-MNIST on a CPU
>>> model = create_model("resnet152", 365, pretrained=True)     # torchvision, new head
>>> model = create_model("timm/convnext_tiny", 100)             # needs timm

purenoise models expose their classifier as ``model.fc`` and a ``forward_features`` method;
:func:`get_classifier` finds the classifier of any model.
"""
# Importing the model modules registers their models.
from purenoise.models.layers import NormedLinear
from purenoise.models.registry import create_model, is_registered, list_models, register_model
from purenoise.models.resnet_cifar import (
    CifarResNet,
    resnet20,
    resnet32,
    resnet44,
    resnet56,
    resnet110,
)
from purenoise.models.small import SmallResNet, resnet_small
from purenoise.models.utils import (
    classifier_name,
    count_batchnorm,
    get_classifier,
    replace_classifier,
)
from purenoise.models.wrn import WideResNet, wrn, wrn16_4, wrn16_8, wrn28_2, wrn28_10

__all__ = [
    "create_model",
    "list_models",
    "register_model",
    "is_registered",
    "count_batchnorm",
    "get_classifier",
    "classifier_name",
    "replace_classifier",
    "NormedLinear",
    "WideResNet",
    "wrn",
    "wrn28_10",
    "wrn28_2",
    "wrn16_4",
    "wrn16_8",
    "CifarResNet",
    "resnet20",
    "resnet32",
    "resnet44",
    "resnet56",
    "resnet110",
    "SmallResNet",
    "resnet_small",
]
