"""Optimizer state from a checkpoint, by parameter name: how an aux-BN branch takes its parent's momentum."""
import torch

from purenoise.darbn import convert_darbn
from purenoise.engine.checkpoint import load_optimizer_state


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                               torch.nn.LazyLinear(2))


def _trained_state(model: torch.nn.Module) -> dict:
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 3, 6, 6)).sum().backward()
    opt.step()
    return {"optimizer": opt.state_dict(),
            "param_names": [n for n, p in model.named_parameters() if p.requires_grad]}


def test_same_parameters_load_as_they_are():
    parent = _net()
    state = _trained_state(parent)
    opt = torch.optim.SGD(parent.parameters(), lr=0.1, momentum=0.9)
    load_optimizer_state(opt, parent, state)
    assert opt.state_dict()["state"].keys() == state["optimizer"]["state"].keys()


def test_an_aux_bn_branch_keeps_the_parents_momentum_by_name():
    parent = _net()
    state = _trained_state(parent)
    momentum = {n: state["optimizer"]["state"][i]["momentum_buffer"] for i, n in enumerate(state["param_names"])}
    child = convert_darbn(parent, bn_mode="aux")  # adds the auxiliary BN's own gamma and beta
    names = [n for n, p in child.named_parameters() if p.requires_grad]
    assert len(names) > len(state["param_names"])
    opt = torch.optim.SGD([p for p in child.parameters() if p.requires_grad], lr=0.1, momentum=0.9)
    load_optimizer_state(opt, child, state)
    loaded = opt.state_dict()["state"]
    for i, n in enumerate(names):
        if n in momentum:
            assert torch.equal(loaded[i]["momentum_buffer"], momentum[n]), n
        else:
            assert i not in loaded, n  # a parameter the parent did not have starts without momentum
