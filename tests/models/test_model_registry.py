"""create_model / list_models / register_model for purenoise's own models."""
import pytest
import torch
from torch import nn

from purenoise.errors import ModelError
from purenoise.models import create_model, list_models, register_model, registry

OWN = ["resnet110", "resnet20", "resnet32", "resnet44", "resnet56", "resnet_small", "wrn",
       "wrn16_4", "wrn16_8", "wrn28_10", "wrn28_2"]


def test_list_purenoise_models():
    assert list_models(source="purenoise") == OWN
    assert list_models("wrn*") == ["wrn", "wrn16_4", "wrn16_8", "wrn28_10", "wrn28_2"]
    assert "wrn28_10" in list_models() and "resnext50_32x4d" in list_models()
    assert all(not n.startswith("timm/") for n in list_models())


def test_unknown_source():
    with pytest.raises(ModelError, match="purenoise, torchvision, timm"):
        list_models(source="hub")


@pytest.mark.parametrize("typo, suggestion", [("wrn28_1", "wrn28_10"), ("resnet33", "resnet32"),
                                              ("resnext50", "resnext50_32x4d")])
def test_unknown_name_suggests_close_matches(typo, suggestion):
    with pytest.raises(ModelError) as e:
        create_model(typo, 10)
    msg = str(e.value)
    assert f"unknown model {typo!r}" in msg and suggestion in msg and "list_models()" in msg


def test_unknown_option_names_valid_ones():
    with pytest.raises(ModelError) as e:
        create_model("resnet32", 10, dropout=0.3)
    assert "dropout" in str(e.value) and "use_norm" in str(e.value)


def test_own_models_have_no_pretrained_weights():
    with pytest.raises(ModelError, match="no pretrained weights"):
        create_model("wrn28_10", 10, pretrained=True)


@pytest.mark.parametrize("kwargs", [{"num_classes": 0}, {"num_classes": 2.0},
                                    {"num_classes": True}, {"num_classes": 3, "in_chans": 0}])
def test_bad_num_classes_or_channels(kwargs):
    with pytest.raises(ModelError):
        create_model("resnet20", **kwargs)


def test_register_model(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    @register_model
    def tiny_net(num_classes=10, in_chans=3, hidden=4):
        return nn.Sequential(nn.Flatten(), nn.LazyLinear(hidden), nn.Linear(hidden, num_classes))

    assert "tiny_net" in list_models(source="purenoise")
    m = create_model("tiny_net", 3, hidden=5)
    assert m(torch.randn(2, 1, 4, 4)).shape == (2, 3)
    with pytest.raises(ValueError, match="already registered"):
        register_model(name="tiny_net")(lambda num_classes, in_chans: None)


def test_every_own_model_builds_and_runs():
    for name in ["resnet20", "resnet_small", "wrn16_4"]:
        m = create_model(name, 4, in_chans=1)
        assert m(torch.randn(2, 1, 28, 28)).shape == (2, 4)
