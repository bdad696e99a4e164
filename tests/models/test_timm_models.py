"""timm models through the ``timm/`` prefix (skipped when timm is not installed)."""
import sys

import pytest
import torch

from purenoise.errors import ModelError
from purenoise.models import NormedLinear, create_model, get_classifier, list_models


def test_missing_timm_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # makes `import timm` fail
    with pytest.raises(ModelError, match=r"pip install 'purenoise\[timm\]'"):
        create_model("timm/resnet18", 10)


timm = pytest.importorskip("timm")


def test_create_passes_num_classes_and_in_chans():
    m = create_model("timm/resnet18", 7, in_chans=1)
    assert m(torch.randn(2, 1, 32, 32)).shape == (2, 7)
    assert get_classifier(m).out_features == 7


def test_use_norm():
    m = create_model("timm/resnet18", 7, use_norm=True)
    assert isinstance(get_classifier(m), NormedLinear)


def test_list_and_unknown_names():
    assert "timm/resnet18" in list_models("timm/resnet1*")
    assert all(n.startswith("timm/") for n in list_models(source="timm")[:10])
    with pytest.raises(ModelError, match="timm/resnet18"):
        create_model("timm/resnet18x", 7)


def test_name_only_timm_knows_gets_a_hint():
    with pytest.raises(ModelError, match="use 'timm/convnext_atto'"):
        create_model("convnext_atto", 7)


def test_pretrained_offline_is_a_model_error(monkeypatch):
    import timm.models._hub as hub

    def offline(*args, **kwargs):
        raise OSError("test is offline")

    monkeypatch.setattr(hub, "hf_hub_download", offline)
    monkeypatch.setattr(hub, "download_cached_file", offline)
    with pytest.raises(ModelError, match="Hugging Face Hub"):
        create_model("timm/resnet18", 7, pretrained=True)
