"""A worker of test_sync_bn: one rank of a two-process gloo group (module-level for spawn)."""
from __future__ import annotations

import os
import warnings

import torch
import torch.distributed as dist

from purenoise import DARBatchNorm2d, noise_routing
from purenoise.engine.distributed import convert_sync_darbn

NATURAL, NOISE = (5, 4), (2, 3)  # rows of each rank


def data(gen_seed: int = 0):
    g = torch.Generator().manual_seed(gen_seed)
    nat = [torch.randn(n, 3, 4, 4, generator=g) * 2 + 1 for n in NATURAL]
    noise = [torch.rand(k, 3, 4, 4, generator=g) * 6 - 3 for k in NOISE]
    grad = [torch.randn(n + k, 3, 4, 4, generator=g) for n, k in zip(NATURAL, NOISE)]
    return nat, noise, grad


def run(rank: int, port: int, noise_grad: str, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0)
    layer = convert_sync_darbn(DARBatchNorm2d(3, noise_grad=noise_grad))
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([0.5, 1.0, 1.5]))
        layer.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    nat, noise, grad = data()
    x = torch.cat([nat[rank], noise[rank]]).requires_grad_()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with noise_routing(layer, NOISE[rank]):
            y = layer(x)
        y.backward(grad[rank])
    dist.all_reduce(layer.weight.grad)
    dist.all_reduce(layer.bias.grad)
    torch.save({"y": y.detach(), "x_grad": x.grad, "w_grad": layer.weight.grad, "b_grad": layer.bias.grad,
                "running_mean": layer.running_mean, "running_var": layer.running_var,
                "warnings": [f"{w.category.__name__}: {w.message}" for w in caught]},
               os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()
