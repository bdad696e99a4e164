"""Synchronized DAR-BN over two gloo processes equals DAR-BN on the whole batch in one process."""
from __future__ import annotations

import socket

import pytest
import torch
import torch.multiprocessing as mp

from purenoise import DARBatchNorm2d, noise_routing

from . import _sync_bn_worker as worker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("noise_grad", ["classifier", "features"])
def test_sync_darbn_equals_single_process_on_the_global_batch(noise_grad, tmp_path):
    mp.spawn(worker.run, args=(_free_port(), noise_grad, str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]

    # The reference: one process, natural rows of both ranks first, then both ranks' noise rows.
    nat, noise, grad = worker.data()
    n0, n1 = worker.NATURAL
    k0, k1 = worker.NOISE
    x = torch.cat([nat[0], nat[1], noise[0], noise[1]]).requires_grad_()
    g = torch.cat([grad[0][:n0], grad[1][:n1], grad[0][n0:], grad[1][n1:]])
    ref = DARBatchNorm2d(3, noise_grad=noise_grad)
    with torch.no_grad():
        ref.weight.copy_(torch.tensor([0.5, 1.0, 1.5]))
        ref.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    with noise_routing(ref, k0 + k1):
        y = ref(x)
    y.backward(g)

    rows = {0: (slice(0, n0), slice(n0 + n1, n0 + n1 + k0)), 1: (slice(n0, n0 + n1), slice(n0 + n1 + k0, None))}
    for r, out in enumerate(ranks):
        assert out["warnings"] == []  # e.g. torch's deprecation of torch.distributed.nn
        nat_rows, noise_rows = rows[r]
        n = worker.NATURAL[r]
        torch.testing.assert_close(out["y"][:n], y[nat_rows].detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out["y"][n:], y[noise_rows].detach(), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out["x_grad"][:n], x.grad[nat_rows], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(out["x_grad"][n:], x.grad[noise_rows], atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(out["w_grad"], ref.weight.grad, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(out["b_grad"], ref.bias.grad, atol=1e-5, rtol=1e-4)
        torch.testing.assert_close(out["running_mean"], ref.running_mean, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(out["running_var"], ref.running_var, atol=1e-6, rtol=1e-5)
    if noise_grad == "classifier":
        assert torch.all(ranks[0]["x_grad"][n0:] == 0)
