"""DAR-BN: distribution-aware routing batch normalization, as a package.

- :mod:`~purenoise.darbn.layers`: the layers, :class:`DARBatchNorm2d` and the auxiliary-BN
  ablation :class:`AuxBatchNorm2d` (the arithmetic in :mod:`~purenoise.darbn.functional`).
- :mod:`~purenoise.darbn.convert`: :func:`convert_darbn` / :func:`revert_darbn` for torchvision,
  timm and purenoise's own models.
- :mod:`~purenoise.darbn.routing`: :func:`noise_routing`, :func:`routed_forward` and the split
  policy (:func:`split_blockers`).
- :mod:`~purenoise.darbn.sync`: the synchronized layers for DDP (:func:`convert_sync_darbn`).

    model = convert_darbn(torchvision.models.resnet18(num_classes=10))
    images, labels, k = open_(images, labels)
    with noise_routing(model, k):
        logits = model(images)

The layers import nothing from purenoise's data, models or engine: they work in any training loop.
"""
from purenoise.darbn.convert import batch_norm_base, convert_darbn, revert_darbn, routed_layers
from purenoise.darbn.layers import AuxBatchNorm2d, DARBatchNorm2d
from purenoise.darbn.routing import noise_routing, routed_forward, split_blockers
from purenoise.darbn.sync import SyncAuxBatchNorm2d, SyncBatchNorm2d, SyncDARBatchNorm2d, convert_sync_darbn
from purenoise.schemes import BN_MODES, NOISE_GRAD_MODES, NOISE_PASSES

__all__ = [
    "DARBatchNorm2d",
    "AuxBatchNorm2d",
    "convert_darbn",
    "revert_darbn",
    "noise_routing",
    "routed_forward",
    "split_blockers",
    "routed_layers",
    "batch_norm_base",
    "SyncBatchNorm2d",
    "SyncDARBatchNorm2d",
    "SyncAuxBatchNorm2d",
    "convert_sync_darbn",
    "NOISE_GRAD_MODES",
    "BN_MODES",
    "NOISE_PASSES",
]
