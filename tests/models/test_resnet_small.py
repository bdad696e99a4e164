"""The small ResNet for Fashion-MNIST-sized images."""
import torch
import torch.nn.functional as F

from purenoise.models import SmallResNet, count_batchnorm, create_model


def test_shapes_and_size():
    m = create_model("resnet_small", 10, in_chans=1)
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert sum(p.numel() for p in m.parameters()) < 100_000
    assert count_batchnorm(m) == 9
    m3 = create_model("resnet_small", 4, in_chans=3)
    assert m3(torch.randn(2, 3, 32, 32)).shape == (2, 4)


def test_options():
    m = SmallResNet(10, 1, widths=(8, 16), stem_stride=1)
    assert m.num_features == 16 and count_batchnorm(m) == 6
    assert m(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_learns_a_small_problem():
    """Class = which quadrant is bright: the network fits it within a few dozen steps."""
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    labels = torch.randint(0, 4, (128,), generator=g)
    x = torch.rand(128, 1, 28, 28, generator=g) * 0.3
    for i, y in enumerate(labels.tolist()):
        r, c = divmod(y, 2)
        x[i, 0, r * 14:(r + 1) * 14, c * 14:(c + 1) * 14] += 0.7
    m = create_model("resnet_small", 4, in_chans=1)
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9)
    for _ in range(30):
        opt.zero_grad()
        F.cross_entropy(m(x), labels).backward()
        opt.step()
    m.eval()
    with torch.no_grad():
        acc = (m(x).argmax(1) == labels).float().mean().item()
    assert acc > 0.95
