"""Workers of test_sync_bn: one rank of a two-process gloo group (module-level for spawn)."""
from __future__ import annotations

import os
import warnings

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from purenoise import convert_darbn, noise_routing
from purenoise.darbn import convert_sync_darbn

NATURAL, NOISE = (5, 4), (2, 3)  # rows of each rank
CASES = [("darbn", "classifier", 1.0), ("darbn", "features", 1.0), ("aux", "classifier", 1.0),
         ("aux", "features", 1.0), ("standard", "classifier", 1.0),
         # mean/std 300: a variance taken as E[x^2] - mean^2 in float32 is off by about 1e-1 here
         ("darbn", "features", 300.0), ("aux", "features", 300.0), ("standard", "classifier", 300.0)]


def data(gen_seed: int = 0, offset: float = 1.0):
    g = torch.Generator().manual_seed(gen_seed)
    nat = [torch.randn(n, 3, 4, 4, generator=g) * 2 + offset for n in NATURAL]
    noise = [torch.rand(k, 3, 4, 4, generator=g) * 6 - 3 + offset for k in NOISE]
    grad = [torch.randn(n + k, 3, 4, 4, generator=g) for n, k in zip(NATURAL, NOISE)]
    return nat, noise, grad


def make_layer(bn_mode: str, noise_grad: str, dtype: torch.dtype = torch.float32) -> nn.BatchNorm2d:
    """One BatchNorm2d converted to ``bn_mode``, with distinct gamma and beta for each branch."""
    layer = nn.BatchNorm2d(3, dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([0.5, 1.0, 1.5]))
        layer.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    if bn_mode != "standard":
        convert_darbn(layer, noise_grad=noise_grad, bn_mode=bn_mode)
    if bn_mode == "aux":
        with torch.no_grad():
            layer.aux_bn.weight.copy_(torch.tensor([2.0, 0.7, 1.2]))
            layer.aux_bn.bias.copy_(torch.tensor([-0.5, 0.4, 0.0]))
    return layer


def _init(rank: int, port: int) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)


def run(rank: int, port: int, out_dir: str) -> None:
    """Every case of CASES on this rank's rows; outputs, gradients and buffers to rank{r}.pt."""
    _init(rank, port)
    results = []
    for bn_mode, noise_grad, offset in CASES:
        layer = convert_sync_darbn(make_layer(bn_mode, noise_grad))
        nat, noise, grad = data(offset=offset)
        x = torch.cat([nat[rank], noise[rank]]).requires_grad_()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with noise_routing(layer, NOISE[rank]):
                y = layer(x)
            y.backward(grad[rank])
        grads = {}
        for name, p in layer.named_parameters():
            g = torch.zeros_like(p) if p.grad is None else p.grad
            dist.all_reduce(g)
            grads[name] = g
        results.append({"type": type(layer).__name__, "y": y.detach(), "x_grad": x.grad, "grads": grads,
                        "buffers": dict(layer.named_buffers()),
                        "warnings": [f"{w.category.__name__}: {w.message}" for w in caught]})
    torch.save(results, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def checks(rank: int, port: int, out_dir: str) -> None:
    """What the synchronized layers refuse, or handle, as DARBatchNorm2d does."""
    _init(rank, port)
    errors = {}
    layer = convert_sync_darbn(make_layer("darbn", "classifier"))
    # One natural value per channel in the global batch: rank 0 has one natural row at 1x1,
    # which comes out as beta and leaves the running statistics as they are.
    x = torch.randn(2, 3, 1, 1, generator=torch.Generator().manual_seed(rank))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with noise_routing(layer, 1 if rank == 0 else 2):
            errors["single_y"] = layer(x).detach()
    errors["single_x"] = x
    errors["running_var"] = layer.running_var.clone()
    errors["tracked"] = int(layer.num_batches_tracked)
    try:
        with noise_routing(layer, 5):
            layer(torch.randn(4, 3, 2, 2))
    except ValueError as e:
        errors["too_many"] = str(e)
    torch.save(errors, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                  nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.body(x))


DDP_NOISE = (2, 3)  # noise rows of each rank


def ddp_data(natural: tuple[int, int]):
    """Each rank's rows (natural first, then DDP_NOISE[rank] noise rows) and labels."""
    g = torch.Generator().manual_seed(3)
    xs = [torch.cat([torch.randn(n, 3, 6, 6, generator=g), torch.rand(k, 3, 6, 6, generator=g)])
          for n, k in zip(natural, DDP_NOISE)]
    ys = [torch.randint(0, 3, (n + k,), generator=g) for n, k in zip(natural, DDP_NOISE)]
    return xs, ys


def make_net() -> Net:
    torch.manual_seed(0)
    return convert_darbn(Net())


def all_noise_ddp(rank: int, port: int, sync_bn: bool, natural: tuple[int, int], out_dir: str) -> None:
    """Two DDP steps (find_unused_parameters off) with ``natural[r]`` natural rows on rank r."""
    _init(rank, port)
    model = make_net()
    if sync_bn:
        convert_sync_darbn(model)
    ddp = nn.parallel.DistributedDataParallel(model)
    xs, ys = ddp_data(natural)
    grads = None
    for _ in range(2):  # an unfinished reduction shows in the second step's forward
        model.zero_grad(set_to_none=True)
        with noise_routing(ddp, DDP_NOISE[rank]):
            logits = ddp(xs[rank])
        F.cross_entropy(logits, ys[rank]).backward()
        if grads is None:
            grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    torch.save(grads, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()
