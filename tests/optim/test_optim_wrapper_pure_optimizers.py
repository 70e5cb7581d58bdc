"""fengine's SGD/Adam/AdamW (torch.optim subclasses on the pure transforms) against torch.optim itself."""

from __future__ import annotations

import copy
import io
import pickle
from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from fengine.optim import SGD, Adam, AdamW

PAIRS: dict[str, tuple[type[torch.optim.Optimizer], type[torch.optim.Optimizer]]] = {
    "SGD": (SGD, torch.optim.SGD), "Adam": (Adam, torch.optim.Adam), "AdamW": (AdamW, torch.optim.AdamW),
}
OPTIONS: dict[str, list[dict[str, Any]]] = {
    "SGD": [dict(lr=0.1), dict(lr=0.1, momentum=0.9), dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
            dict(lr=0.1, momentum=0.5, dampening=0.3, maximize=True), dict(lr=0.1, momentum=0.9, foreach=False),
            dict(lr=0.1, momentum=0.9, fused=True), dict(lr=torch.tensor(0.1), momentum=0.9)],
    "Adam": [dict(), dict(lr=1e-2, amsgrad=True, weight_decay=1e-2), dict(lr=1e-2, betas=(0.5, 0.9), maximize=True, eps=1e-6),
             dict(lr=1e-2, foreach=False), dict(lr=1e-2, fused=True), dict(lr=torch.tensor(1e-2), foreach=False),
             dict(lr=1e-2, decoupled_weight_decay=True, weight_decay=0.1)],
    "AdamW": [dict(), dict(lr=1e-2, amsgrad=True, weight_decay=0.5), dict(lr=1e-2, maximize=True), dict(lr=1e-2, fused=True)],
}
CASES = [(kind, i) for kind, options in OPTIONS.items() for i in range(len(options))]


def net(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))


def groups(model: nn.Module) -> list[dict[str, Any]]:
    return [{"params": model[0].parameters()}, {"params": model[2].parameters(), "weight_decay": 0.0}]


def train(model: nn.Module, opt: torch.optim.Optimizer, steps: int, gen: torch.Generator,
          between: Callable[[int], None] = lambda k: None) -> None:
    for k in range(steps):
        opt.zero_grad()
        model(torch.randn(4, 5, generator=gen)).square().mean().backward()
        opt.step()
        for g in opt.param_groups:
            g["lr"] *= 0.9  # what a scheduler does between steps
        between(k)


def same_state(a: dict[str, Any], b: dict[str, Any]) -> None:
    def plain(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v.item() if isinstance(v, torch.Tensor) else v for k, v in g.items()} for g in groups]

    assert plain(a["param_groups"]) == plain(b["param_groups"])
    assert a["state"].keys() == b["state"].keys()
    for k in b["state"]:
        assert a["state"][k].keys() == b["state"][k].keys()
        for f, v in b["state"][k].items():
            assert torch.equal(a["state"][k][f], v) and a["state"][k][f].dtype == v.dtype, (k, f)


@pytest.mark.parametrize(("kind", "index"), CASES)
def test_every_option_matches_torch_and_its_state_dict(kind: str, index: int) -> None:
    ours_cls, torch_cls = PAIRS[kind]
    options = OPTIONS[kind][index]  # deep-copied below: a tensor lr must not be shared
    ours_model, torch_model = net(0), net(0)
    ours = ours_cls(groups(ours_model), **copy.deepcopy(options))
    ref = torch_cls(groups(torch_model), **copy.deepcopy(options))
    assert isinstance(ours, torch_cls)
    train(ours_model, ours, 12, torch.Generator().manual_seed(1))
    train(torch_model, ref, 12, torch.Generator().manual_seed(1))
    for a, b in zip(ours_model.parameters(), torch_model.parameters()):
        assert torch.equal(a, b)
    torch_only = options.get("foreach") is False or options.get("fused") or isinstance(options.get("lr"), torch.Tensor)
    assert (ours.opt_state is None) == bool(torch_only)  # which implementation stepped
    same_state(ours.state_dict(), ref.state_dict())
    assert (ours.opt_state is None) == bool(torch_only)  # reading the state keeps the record the truth


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(["SGD", "Adam", "AdamW"]), st.integers(1, 10), st.integers(0, 99))
def test_checkpoints_cross_load_between_fengine_and_torch(kind: str, cut: int, seed: int) -> None:
    ours_cls, torch_cls = PAIRS[kind]
    options = {"lr": 0.05, "momentum": 0.9} if kind == "SGD" else {"lr": 0.01, "amsgrad": True}
    straight_model, resumed_model = net(seed), net(seed)
    straight = torch_cls(groups(straight_model), **options)
    first = torch_cls(groups(resumed_model), **options)
    train(straight_model, straight, 12, torch.Generator().manual_seed(seed))
    gen = torch.Generator().manual_seed(seed)
    train(resumed_model, first, cut, gen)
    buffer = io.BytesIO()
    torch.save(first.state_dict(), buffer)  # a checkpoint written by torch (as MMEngine does)
    buffer.seek(0)
    ours = ours_cls(groups(resumed_model), **options)
    ours.load_state_dict(torch.load(buffer, weights_only=True))
    train(resumed_model, ours, 12 - cut, gen)
    for a, b in zip(straight_model.parameters(), resumed_model.parameters()):
        assert torch.equal(a, b)
    back = torch_cls(groups(net(seed)), **options)
    back.load_state_dict(ours.state_dict())
    same_state(back.state_dict(), straight.state_dict())


def test_state_view_is_torch_format_and_edits_reach_the_next_step() -> None:
    model, ref_model = net(3), net(3)
    ours, ref = SGD(model.parameters(), lr=0.1, momentum=0.9), torch.optim.SGD(ref_model.parameters(), lr=0.1, momentum=0.9)
    gen_a, gen_b = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    train(model, ours, 2, gen_a)
    train(ref_model, ref, 2, gen_b)
    for opt in (ours, ref):
        first = next(iter(opt.param_groups[0]["params"]))
        opt.state[first]["momentum_buffer"] = torch.zeros_like(first)  # a user edit, torch style
    train(model, ours, 3, gen_a)
    train(ref_model, ref, 3, gen_b)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), ref_model.parameters()))
    assert len(ours.state) == len(ref.state) == 4


def test_hooks_schedulers_and_add_param_group_behave_like_torch() -> None:
    model, ref_model = net(5), net(5)
    ours, ref = Adam(model[0].parameters(), lr=0.01), torch.optim.Adam(ref_model[0].parameters(), lr=0.01)
    calls: list[str] = []
    ours.register_step_pre_hook(lambda *a: calls.append("pre"))
    ours.register_step_post_hook(lambda *a: calls.append("post"))
    sched = [torch.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.5) for o in (ours, ref)]
    gen_a, gen_b = torch.Generator().manual_seed(6), torch.Generator().manual_seed(6)
    for k in range(6):
        if k == 3:
            ours.add_param_group({"params": model[2].parameters(), "lr": 0.02})
            ref.add_param_group({"params": ref_model[2].parameters(), "lr": 0.02})
        train(model, ours, 1, gen_a)
        train(ref_model, ref, 1, gen_b)
        for s in sched:
            s.step()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), ref_model.parameters()))
    assert calls == ["pre", "post"] * 6


@pytest.mark.parametrize("kind", ["SGD", "Adam"])
def test_pickle_and_deepcopy_keep_the_state(kind: str) -> None:
    model = net(8)
    opt = PAIRS[kind][0](model.parameters(), lr=0.01, **({"momentum": 0.9} if kind == "SGD" else {}))
    train(model, opt, 3, torch.Generator().manual_seed(8))
    for clone in (pickle.loads(pickle.dumps(opt)), copy.deepcopy(opt)):
        assert isinstance(clone, PAIRS[kind][0])
        same_state(clone.state_dict(), opt.state_dict())


def test_sparse_gradients_fall_back_to_torch() -> None:
    torch.manual_seed(7)
    emb = nn.Embedding(10, 3, sparse=True)
    ref = copy.deepcopy(emb)
    ours, torch_opt = SGD(emb.parameters(), lr=0.1), torch.optim.SGD(ref.parameters(), lr=0.1)
    for module, opt in ((emb, ours), (ref, torch_opt)):
        for _ in range(3):
            opt.zero_grad()
            module(torch.tensor([1, 4, 4])).sum().backward()
            opt.step()
    assert torch.equal(emb.weight, ref.weight)


def test_sgd_needs_lr() -> None:
    with pytest.raises(TypeError, match="lr"):
        SGD(net(0).parameters())  # type: ignore[call-arg]
