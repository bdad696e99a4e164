"""Synchronized BatchNorm layers over two gloo processes equal their single-process layer on the global batch."""
from __future__ import annotations

import socket

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from purenoise import convert_darbn, noise_routing
from purenoise.darbn import convert_sync_darbn
from purenoise.errors import ConfigError

from tests.helpers import sync_bn_worker as worker


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(fn, tmp_path, *args):
    mp.spawn(fn, args=(_free_port(), *args, str(tmp_path)), nprocs=2, join=True)
    return [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]


@pytest.fixture(scope="module")
def synced(tmp_path_factory):
    return _spawn(worker.run, tmp_path_factory.mktemp("sync_bn"))


def _reference(bn_mode, noise_grad, offset):
    """One process, float64, natural rows of both ranks first, then both ranks' noise rows."""
    nat, noise, grad = worker.data(offset=offset)
    n0, n1 = worker.NATURAL
    k0, k1 = worker.NOISE
    x = torch.cat([nat[0], nat[1], noise[0], noise[1]]).double().requires_grad_()
    g = torch.cat([grad[0][:n0], grad[1][:n1], grad[0][n0:], grad[1][n1:]]).double()
    ref = worker.make_layer(bn_mode, noise_grad, dtype=torch.float64)
    with noise_routing(ref, k0 + k1):  # a plain BatchNorm2d (standard) ignores the routing
        y = ref(x)
    y.backward(g)
    rows = {0: (slice(0, n0), slice(n0 + n1, n0 + n1 + k0)), 1: (slice(n0, n0 + n1), slice(n0 + n1 + k0, None))}
    return ref, x, y.detach(), rows


@pytest.mark.parametrize("case", range(len(worker.CASES)),
                         ids=[f"{m}-{g}-offset{o:g}" for m, g, o in worker.CASES])
def test_each_bn_mode_equals_its_single_process_layer_on_the_global_batch(synced, case):
    bn_mode, noise_grad, offset = worker.CASES[case]
    expected_type = {"darbn": "SyncDARBatchNorm2d", "aux": "SyncAuxBatchNorm2d", "standard": "SyncBatchNorm2d"}
    ref, x, y, rows = _reference(bn_mode, noise_grad, offset)
    tol = dict(atol=1e-4, rtol=1e-4) if offset > 1 else dict(atol=1e-5, rtol=1e-4)
    close = lambda a, b: torch.testing.assert_close(a.double(), b, **tol)  # noqa: E731
    for r, out in enumerate(results[case] for results in synced):
        assert out["type"] == expected_type[bn_mode]
        assert out["warnings"] == []  # e.g. torch's deprecation of torch.distributed.nn
        nat_rows, noise_rows = rows[r]
        n = worker.NATURAL[r]
        close(out["y"][:n], y[nat_rows])
        close(out["y"][n:], y[noise_rows])
        close(out["x_grad"][:n], x.grad[nat_rows])
        close(out["x_grad"][n:], x.grad[noise_rows])
        for name, p in ref.named_parameters():
            close(out["grads"][name], torch.zeros_like(p) if p.grad is None else p.grad)
        for name, b in ref.named_buffers():
            close(out["buffers"][name], b.double())
        if noise_grad == "classifier" and bn_mode != "standard":
            assert torch.all(out["x_grad"][n:] == 0)


def test_sync_layers_refuse_what_darbn_refuses(tmp_path):
    ranks = _spawn(worker.checks, tmp_path)
    single = worker.make_layer("darbn", "classifier")
    with pytest.raises(ValueError) as too_many, noise_routing(single, 5):
        single(torch.randn(4, 3, 2, 2))
    x0 = ranks[0]["single_x"]  # the global batch's one natural row, normalized as DAR-BN does it
    with pytest.warns(UserWarning, match="one value per channel"), noise_routing(single, 1):
        expected = single(x0)[:1].detach()
    # beta, to the rounding of the mean that 1/sqrt(eps) magnifies
    torch.testing.assert_close(ranks[0]["single_y"][:1], expected, atol=1e-4, rtol=0)
    for out in ranks:  # both processes stop, with DAR-BN's messages
        assert out["too_many"] == str(too_many.value)
        assert torch.equal(out["running_var"], torch.ones(3)) and out["tracked"] == 0


def _single_process_grads(sync_bn: bool, natural: tuple[int, int]) -> dict[str, torch.Tensor]:
    """What DDP's averaged gradients should be: synchronized statistics or per-rank ones."""
    xs, ys = worker.ddp_data(natural)
    model = worker.make_net()
    if sync_bn:  # one batch: natural rows, then both ranks' noise rows; the loss of each rank's rows
        assert natural[1] == 0  # rank 1's rows are all noise: rank 0's rows, then rank 1's, is that order
        x = torch.cat([xs[0], xs[1]])
        with noise_routing(model, sum(worker.DDP_NOISE)):
            logits = model(x)
        loss = F.cross_entropy(logits[:len(xs[0])], ys[0]) + F.cross_entropy(logits[len(xs[0]):], ys[1])
        (loss / 2).backward()
    else:
        for x, y, k in zip(xs, ys, worker.DDP_NOISE):
            with noise_routing(model, k):
                (F.cross_entropy(model(x), y) / 2).backward()
    return {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("sync_bn, natural", [(False, (4, 0)), (True, (4, 0)), (True, (0, 0))],
                         ids=["local_bn", "sync_bn", "sync_bn_all_noise"])
def test_ddp_rank_with_only_noise_rows(sync_bn, natural, tmp_path):
    # In "classifier" mode such a rank's rows reach no parameter before the classifier; it still
    # takes part in backward with exact zero gradients, so DDP needs no find_unused_parameters.
    ranks = _spawn(worker.all_noise_ddp, tmp_path, sync_bn, natural)
    expected = _single_process_grads(sync_bn, natural)
    for name, g in expected.items():
        for out in ranks:
            torch.testing.assert_close(out[name], g, atol=1e-5, rtol=1e-4, msg=name)
    if natural == (0, 0):  # all noise everywhere: only the classifier learns anything
        assert all(torch.all(ranks[0][n] == 0) for n in expected if not n.startswith("fc."))


def test_convert_sync_keeps_each_bn_mode():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.BatchNorm2d(4))
    convert_sync_darbn(model)
    assert [type(m).__name__ for m in model[1:]] == ["SyncBatchNorm2d"] * 2
    aux = convert_sync_darbn(convert_darbn(nn.Sequential(nn.BatchNorm2d(4)), bn_mode="aux"))
    assert type(aux[0]).__name__ == "SyncAuxBatchNorm2d" and type(aux[0].aux_bn) is nn.BatchNorm2d
    params = {id(p) for p in model.parameters()}
    assert {id(p) for p in convert_sync_darbn(model).parameters()} == params


def test_convert_sync_names_layers_it_cannot_synchronize():
    class ScaledBN(nn.BatchNorm2d):
        def forward(self, x):
            return 2 * super().forward(x)

    with pytest.raises(ConfigError, match=r"'sync_bn'.*1 \(ScaledBN\)"):
        convert_sync_darbn(nn.Sequential(nn.Conv2d(3, 4, 3), ScaledBN(4)))
