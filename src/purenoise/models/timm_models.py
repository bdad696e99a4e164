"""timm models, reached through ``create_model("timm/<name>", ...)`` when timm is installed."""
from __future__ import annotations

import difflib

from torch import nn

from purenoise.errors import ModelError
from purenoise.models.utils import replace_classifier

__all__ = ["create", "import_timm"]


def import_timm():
    """The optional timm package, or a ModelError that says how to install it."""
    try:
        import timm  # optional, and slow to import: only when a timm model is asked for
    except ImportError as e:
        raise ModelError(
            "timm models need the optional timm package: pip install 'purenoise[timm]' "
            "(or pip install timm)"
        ) from e
    return timm


def create(name: str, num_classes: int, *, in_chans: int = 3, pretrained: bool = False,
           **kwargs) -> nn.Module:
    """Build timm model ``name`` (without the ``timm/`` prefix) with ``timm.create_model``.

    ``pretrained``, ``num_classes`` and ``in_chans`` are passed to timm, which adapts the head and
    the stem itself; weights come from the Hugging Face Hub cache. ``use_norm=True`` swaps the
    classifier for a cosine one (for LDAM).
    """
    timm = import_timm()
    if not name.startswith("hf-hub:") and not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
        hint = f" Did you mean: {', '.join('timm/' + c for c in close)}?" if close else ""
        raise ModelError(f"unknown timm model {name!r}.{hint} List them with "
                         "purenoise.models.list_models('timm/*').")
    use_norm = bool(kwargs.pop("use_norm", False))
    try:
        model = timm.create_model(name, pretrained=pretrained, num_classes=num_classes,
                                  in_chans=in_chans, **kwargs)
    except TypeError as e:
        raise ModelError(f"timm model {name!r} does not accept these options "
                         f"{sorted(kwargs)}: {e}") from e
    except Exception as e:  # noqa: BLE001 - hub/network errors come in many types
        if not pretrained:
            raise
        raise ModelError(
            f"could not load timm's pretrained weights for {name!r} ({type(e).__name__}: {e}). "
            "timm fetches them from the Hugging Face Hub into its cache ($HF_HOME/hub, by default "
            "~/.cache/huggingface/hub). Offline: on a machine with internet run "
            f"python -c \"import timm; timm.create_model('{name}', pretrained=True)\" and copy "
            "that cache directory here, or pass pretrained_cfg_overlay=dict(file='/path/to/"
            "weights.safetensors') to load a local file."
        ) from e
    if use_norm:
        replace_classifier(model, num_classes, use_norm=True)
    return model
