"""OptimWrapperDict: per-name lr/momentum/state dicts, zero_grad, and the ambiguous methods refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fengine.optim import SGD, Adam, OptimWrapper, OptimWrapperDict


def make() -> tuple[nn.Module, nn.Module, OptimWrapperDict]:
    torch.manual_seed(0)
    gen, disc = nn.Linear(2, 2), nn.Linear(2, 1)
    two_groups = SGD([{"params": [gen.weight], "lr": 0.01}, {"params": [gen.bias]}], lr=0.1, momentum=0.8)
    wrappers = OptimWrapperDict(generator=OptimWrapper(two_groups),
                                discriminator=OptimWrapper(Adam(disc.parameters(), lr=0.02, betas=(0.5, 0.9))))
    return gen, disc, wrappers


def test_lr_momentum_and_param_groups_are_keyed_by_name() -> None:
    _, _, wrappers = make()
    assert wrappers.get_lr() == {"generator.base_lr": [0.1], "generator.lr": [0.01, 0.1], "discriminator.lr": [0.02]}
    assert wrappers.get_momentum() == {"generator.momentum": [0.8, 0.8], "discriminator.momentum": [0.5]}
    assert len(wrappers.param_groups["generator"]) == 3 and len(wrappers.param_groups["discriminator"]) == 1
    assert list(wrappers.keys()) == ["generator", "discriminator"] and len(wrappers) == 2
    assert "generator" in wrappers and dict(wrappers.items())["discriminator"] is wrappers["discriminator"]
    assert list(wrappers.values()) == [wrappers["generator"], wrappers["discriminator"]]


def test_state_dict_round_trip_and_zero_grad() -> None:
    gen, disc, wrappers = make()
    for _ in range(2):
        wrappers["generator"].update_params(gen(torch.ones(1, 2)).sum())
        wrappers["discriminator"].update_params(disc(torch.ones(1, 2)).sum())
    state = wrappers.state_dict()
    assert set(state) == {"generator", "discriminator"} and "base_param_settings" in state["generator"]
    _, _, fresh = make()
    fresh.load_state_dict(state)
    assert fresh.get_lr() == wrappers.get_lr()
    assert fresh["discriminator"].optimizer.state_dict()["state"][0]["step"] == 2
    gen(torch.ones(1, 2)).sum().backward()
    wrappers.zero_grad()
    assert gen.weight.grad is None
    with pytest.raises(KeyError, match=r"wrappers \['critic'\] that OptimWrapperDict lacks"):
        fresh.load_state_dict({"critic": {}})


def test_ambiguous_methods_and_bad_inputs() -> None:
    gen, _, wrappers = make()
    loss = gen(torch.ones(1, 2)).sum()
    for call in (lambda: wrappers.update_params(loss), lambda: wrappers.backward(loss), wrappers.step,
                 lambda: wrappers.optim_context(gen)):
        with pytest.raises(NotImplementedError, match="separately"):
            call()
    wrappers.initialize_count_status(gen, 0, 10)  # a no-op, as in MMEngine
    assert wrappers["generator"].inner_count == 0
    with pytest.raises(KeyError, match=r"no optimizer wrapper named 'critic'; names: \['generator', 'discriminator'\]"):
        wrappers["critic"]
    for kind in (TypeError, AssertionError):  # MMEngine asserts
        with pytest.raises(kind, match=r"^`OptimWrapperDict` only accepts OptimWrapper instances, got bad=SGD"):
            OptimWrapperDict(bad=SGD(gen.parameters(), lr=0.1))  # type: ignore[arg-type]
