"""torchvision models by name: heads, input channels, and pretrained weights without network."""
import urllib.error

import pytest
import torch
import torchvision

from purenoise.errors import ModelError
from purenoise.models import (
    NormedLinear,
    classifier_name,
    count_batchnorm,
    create_model,
    get_classifier,
    list_models,
)
from purenoise.models.torchvision_models import weights_path


@pytest.fixture(autouse=True)
def no_downloads(monkeypatch, tmp_path):
    """An empty torch hub cache, and any download attempt fails the way an offline one does."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))

    def offline(url, *args, **kwargs):
        raise urllib.error.URLError(f"test is offline: {url}")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)


def test_every_torchvision_classifier_is_listed():
    tv = set(torchvision.models.list_models(module=torchvision.models))
    assert len(tv) > 50
    assert tv <= set(list_models(source="torchvision"))
    assert {"resnet18", "resnext50_32x4d", "resnet152"} <= tv


@pytest.mark.parametrize("name, head", [
    ("resnet18", "fc"), ("mobilenet_v3_small", "classifier.3"), ("squeezenet1_1", "classifier.1"),
    ("efficientnet_b0", "classifier.1"), ("shufflenet_v2_x0_5", "fc"),
    ("densenet121", "classifier"),
    ("regnet_x_400mf", "fc"), ("googlenet", "fc"),
])
def test_families_num_classes_and_one_channel(name, head):
    m = create_model(name, 7, in_chans=1)
    assert classifier_name(m) == head
    m.train()
    out = m(torch.randn(2, 1, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 7)  # no auxiliary tuple


def test_torchvision_prefix_and_batchnorm_count():
    m = create_model("torchvision/resnet18", 5)
    assert count_batchnorm(m) == 20 and get_classifier(m).out_features == 5


def test_use_norm_swaps_in_a_cosine_classifier():
    m = create_model("resnet18", 5, use_norm=True)
    assert isinstance(m.fc, NormedLinear) and m.fc.in_features == 512
    assert m(torch.randn(2, 3, 32, 32)).abs().max() <= 1 + 1e-6


def test_unknown_option():
    with pytest.raises(ModelError, match="does not accept"):
        create_model("resnet18", 5, bogus=1)


def _fake_cached_weights(name):
    """Write a randomly initialized 1000-class state dict where torch hub caches the real one."""
    weights = torchvision.models.get_model_weights(name).DEFAULT
    torch.manual_seed(1)
    reference = torchvision.models.get_model(name, num_classes=len(weights.meta["categories"]))
    path = weights_path(weights)
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    return reference.state_dict(), path


def test_pretrained_from_cache_replaces_head(tmp_path):
    ref, path = _fake_cached_weights("resnet18")
    assert path == tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    m = create_model("resnet18", 7, pretrained=True, download=False)
    sd = m.state_dict()
    assert all(torch.equal(sd[k], ref[k]) for k in ref if not k.startswith("fc."))
    assert m.fc.out_features == 7 and not torch.equal(m.fc.weight[:7], ref["fc.weight"][:7])
    # Same number of classes as the weights: the pretrained head is kept.
    same = create_model("resnet18", 1000, pretrained=True, download=False)
    assert torch.equal(same.fc.weight, ref["fc.weight"])
    # One input channel: the RGB filters are summed.
    gray = create_model("resnet18", 7, in_chans=1, pretrained=True, download=False)
    assert torch.allclose(gray.conv1.weight, ref["conv1.weight"].sum(1, keepdim=True))
    assert gray(torch.randn(2, 1, 32, 32)).shape == (2, 7)
    # Two channels: tiled and rescaled by 3 / 2.
    two = create_model("resnet18", 7, in_chans=2, pretrained=True, download=False)
    assert torch.allclose(two.conv1.weight, ref["conv1.weight"][:, :2] * 1.5)


def test_missing_weights_without_download_names_the_file(tmp_path):
    with pytest.raises(ModelError) as e:
        create_model("resnet18", 7, pretrained=True, download=False)
    msg = str(e.value)
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert str(expected) in msg and "TORCH_HOME" in msg
    assert "https://download.pytorch.org/models/resnet18-f37072fd.pth" in msg


def test_failed_download_is_a_model_error(tmp_path):
    with pytest.raises(ModelError) as e:
        create_model("resnet18", 7, pretrained=True)  # download allowed, but offline
    assert "could not be loaded" in str(e.value) and "resnet18-f37072fd.pth" in str(e.value)


def test_corrupt_cached_file_is_a_model_error():
    weights = torchvision.models.get_model_weights("resnet18").DEFAULT
    path = weights_path(weights)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match="could not be loaded"):
        create_model("resnet18", 7, pretrained=True, download=False)


def test_small_input_stem_keeps_the_resolution_of_small_images():
    """torchvision's resnet18 with ``small_input``: 3x3 stride-1 stem, no max-pool, any channels."""
    import torch
    from torch import nn

    from purenoise.errors import ModelError
    from purenoise.models import create_model

    m = create_model("resnet18", 10, in_chans=1, small_input=True)
    assert m.conv1.kernel_size == (3, 3) and m.conv1.stride == (1, 1) and m.conv1.in_channels == 1
    assert isinstance(m.maxpool, nn.Identity)
    feats = {}
    m.layer1.register_forward_hook(lambda mod, i, o: feats.update(layer1=o.shape))
    assert m(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert feats["layer1"][-2:] == (28, 28)  # ImageNet's stem would leave 7x7
    plain = create_model("resnet18", 10)
    assert plain.conv1.kernel_size == (7, 7)
    with pytest.raises(ModelError, match="small_input"):
        create_model("mobilenet_v3_small", 10, small_input=True)
