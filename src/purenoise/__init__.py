"""purenoise: OPeN (Oversampling with Pure Noise) and DAR-BN for long-tailed classification.

The method lives in three small modules that depend on nothing else in the package, so they can
be dropped into any PyTorch training loop:

- :mod:`purenoise.noise`: pure-noise images and per-channel dataset statistics.
- :mod:`purenoise.open`: the OPeN batch transform (replace minority samples by noise).
- :mod:`purenoise.darbn`: DAR-BN, the routing batch norm, and its ablation variants.
"""
from purenoise.darbn import (
    AuxBatchNorm2d,
    DARBatchNorm2d,
    convert_darbn,
    noise_routing,
    revert_darbn,
    routed_forward,
)
from purenoise.errors import ConfigError, DataError, DataNotFoundError, ModelError, PureNoiseError
from purenoise.noise import PureNoise, channel_stats
from purenoise.open import OPeN
from purenoise.schedule import OPeNSchedule

__version__ = "0.1.0"

__all__ = [
    "PureNoise",
    "channel_stats",
    "OPeN",
    "OPeNSchedule",
    "DARBatchNorm2d",
    "AuxBatchNorm2d",
    "convert_darbn",
    "revert_darbn",
    "noise_routing",
    "routed_forward",
    "PureNoiseError",
    "ConfigError",
    "DataError",
    "DataNotFoundError",
    "ModelError",
    "__version__",
]
