"""fengine.optim.optimizer.pure_step: SGD/Adam/AdamW stepping their record, against torch.optim.

The groups are views of the record, and a change of a group's parameter list is found at the next
step. Whatever happens between steps (schedulers, edits of the groups or of their parameter lists,
state edits, hooks, in-place zeroing), every step must equal torch's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import example, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

from fengine.optim import SGD, Adam, AdamW

PAIRS: dict[str, tuple[type[torch.optim.Optimizer], type[torch.optim.Optimizer], dict[str, Any]]] = {
    "SGD": (SGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
    "Adam": (Adam, torch.optim.Adam, {"lr": 0.01}),
    "AdamW": (AdamW, torch.optim.AdamW, {"lr": 0.01, "amsgrad": True}),
}


class Side:
    """One optimizer with its model, extra parameters and the hook calls it saw."""

    def __init__(self, cls: type[torch.optim.Optimizer], options: dict[str, Any], seed: int) -> None:
        torch.manual_seed(seed)
        self.model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
        self.extras: list[nn.Parameter] = []
        # The groups differ, so a parameter stepped with the wrong group's values shows.
        self.opt = cls([{"params": self.model[0].parameters()},
                        {"params": self.model[2].parameters(), "lr": options["lr"] * 0.3, "weight_decay": 0.02}],
                       **options)
        self.calls: list[tuple[str, int, tuple[str, ...]]] = []
        self.gen = torch.Generator().manual_seed(seed)
        self.keep_grads = False

    def hook(self, name: str) -> Callable[..., None]:
        def record(opt: torch.optim.Optimizer, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if opt is self.opt:
                self.calls.append((name, len(args), tuple(kwargs)))
        return record

    def train_step(self) -> None:
        self.opt.zero_grad(set_to_none=not self.keep_grads)
        loss = self.model(torch.randn(4, 5, generator=self.gen)).square().mean()
        loss = loss + sum((e.square().sum() for e in self.extras), torch.zeros(()))
        loss.backward()
        self.opt.step()

    def params(self) -> list[torch.Tensor]:
        return [p for g in self.opt.param_groups for p in g["params"]]


def _betas_in_place(side: Side) -> None:
    for g in side.opt.param_groups:
        if isinstance(g.get("betas"), list):
            g["betas"][0] *= 0.9  # the same list object, another value
        elif "betas" in g:
            g["betas"] = list(g["betas"])
        else:
            g["momentum"] *= 0.5
            g["dampening"] += 0.1


def _move_param(side: Side) -> None:
    first, second = side.opt.param_groups[0]["params"], side.opt.param_groups[1]["params"]
    if len(second) > 1:
        first.append(second.pop())


def _swap_params(side: Side) -> None:
    first, second = side.opt.param_groups[0]["params"], side.opt.param_groups[1]["params"]
    first[0], second[0] = second[0], first[0]  # the same list objects and lengths


def _edit_state(side: Side) -> None:
    p = side.params()[0]
    for key, value in side.opt.state[p].items():
        if key != "step":
            side.opt.state[p][key] = torch.zeros_like(value)


def _add_group(side: Side) -> None:
    extra = nn.Parameter(torch.linspace(-1.0, 1.0, 3 + len(side.extras)))
    side.extras.append(extra)
    side.opt.add_param_group({"params": [extra], "lr": 0.05})


def _drop_grad(side: Side) -> None:
    side.params()[-1].requires_grad_(False)


def _torch_implementation(side: Side) -> None:
    side.opt.param_groups[0]["foreach"] = not side.opt.param_groups[0]["foreach"]


def _hooks(side: Side) -> None:
    side.opt.register_step_pre_hook(side.hook("pre"))
    side.opt.register_step_post_hook(side.hook("post"))


def _set(key: str, value: Callable[[Any], Any]) -> Callable[[Side], None]:
    def change(side: Side) -> None:
        for g in side.opt.param_groups:
            g[key] = value(g[key])
    return change


EVENTS: dict[str, Callable[[Side], None]] = {
    "nothing": lambda side: None,
    "scheduled lr": _set("lr", lambda lr: lr * 0.5),
    "same lr, new object": _set("lr", lambda lr: float(repr(lr))),
    "weight decay": _set("weight_decay", lambda wd: wd + 0.01),
    "maximize": _set("maximize", lambda m: not m),
    "betas as a list, then edited in place / momentum": _betas_in_place,
    "param moved between groups": _move_param,
    "params swapped in place": _swap_params,
    "state edited": _edit_state,
    "state_dict read": lambda side: side.opt.state_dict(),
    "group added": _add_group,
    "a parameter without gradient": _drop_grad,
    "torch's implementation toggled": _torch_implementation,
    "step hooks": _hooks,
    "zero in place": lambda side: setattr(side, "keep_grads", not side.keep_grads),
}


@settings(max_examples=50, deadline=None)
@example("Adam", ["betas as a list, then edited in place / momentum"] * 2, 0)
@example("SGD", ["param moved between groups", "params swapped in place"], 0)
@given(st.sampled_from(sorted(PAIRS)), st.lists(st.sampled_from(sorted(EVENTS)), min_size=1, max_size=10),
       st.integers(0, 99))
def test_every_step_equals_torch_whatever_changes_between_steps(kind: str, events: list[str], seed: int) -> None:
    ours_cls, torch_cls, options = PAIRS[kind]
    ours, ref = Side(ours_cls, options, seed), Side(torch_cls, options, seed)
    handles = [register_optimizer_step_pre_hook(side.hook("global pre")) for side in (ours, ref)]
    handles += [register_optimizer_step_post_hook(side.hook("global post")) for side in (ours, ref)]
    try:
        for event in ["nothing", *events, "nothing"]:
            for side in (ours, ref):
                EVENTS[event](side)
                side.train_step()
            for a, b in zip(ours.params(), ref.params(), strict=True):
                assert torch.equal(a, b), event
                assert (a.grad is None) == (b.grad is None), event
    finally:
        for handle in handles:
            handle.remove()
    assert ours.calls == ref.calls
    ours_state, ref_state = ours.opt.state_dict(), ref.opt.state_dict()
    assert ours_state["state"].keys() == ref_state["state"].keys()
    for k, entry in ref_state["state"].items():
        assert all(torch.equal(ours_state["state"][k][f], v) for f, v in entry.items())


@pytest.mark.parametrize("set_to_none", [True, False])
def test_zero_grad_matches_torch(set_to_none: bool) -> None:
    for kind, (ours_cls, torch_cls, options) in PAIRS.items():
        ours, ref = Side(ours_cls, options, 1), Side(torch_cls, options, 1)
        for side in (ours, ref):
            side.train_step()
            side.params()[0].grad = None
        before = [p.grad for p in ours.params()]
        ours.opt.zero_grad(set_to_none=set_to_none)
        ref.opt.zero_grad(set_to_none=set_to_none)
        for a, b, old in zip(ours.params(), ref.params(), before, strict=True):
            if b.grad is None:
                assert a.grad is None, kind
            else:
                assert a.grad is old and torch.equal(a.grad, b.grad) and not a.grad.requires_grad, kind


def test_profiler_sees_the_same_ranges_as_for_torch() -> None:
    names: dict[str, set[str]] = {}
    for label, cls in (("ours", SGD), ("torch", torch.optim.SGD)):
        side = Side(cls, {"lr": 0.1}, 2)
        with torch.autograd.profiler.profile() as prof:
            side.train_step()
            side.opt.zero_grad()
        names[label] = {e.name for e in prof.function_events if e.name.startswith("Optimizer.")}
    assert names["ours"] == names["torch"] == {"Optimizer.step#SGD.step", "Optimizer.zero_grad#SGD.zero_grad"}


def test_a_subclass_step_runs_the_hooks_once() -> None:
    class Logged(SGD):
        def step(self, closure: Any = None) -> Any:  # type: ignore[override]
            self.seen = getattr(self, "seen", 0) + 1
            return super().step(closure)

    torch.manual_seed(3)
    model, ref_model = nn.Linear(3, 2), nn.Linear(3, 2)
    ref_model.load_state_dict(model.state_dict())
    opt, ref = Logged(model.parameters(), lr=0.1, momentum=0.9), torch.optim.SGD(ref_model.parameters(), lr=0.1, momentum=0.9)
    calls: list[str] = []
    opt.register_step_pre_hook(lambda *a: calls.append("pre"))
    opt.register_step_post_hook(lambda *a: calls.append("post"))
    for _ in range(3):
        for m, o in ((model, opt), (ref_model, ref)):
            o.zero_grad()
            m(torch.ones(4, 3)).sum().backward()
            o.step()
    assert calls == ["pre", "post"] * 3 and opt.seen == 3
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), ref_model.parameters()))


@pytest.mark.parametrize("kind", ["Adam", "AdamW"])
def test_a_parameter_turned_complex_in_place_is_stepped_by_torch(kind: str) -> None:
    ours_cls, torch_cls, options = PAIRS[kind]
    gen = torch.Generator().manual_seed(4)
    start = [torch.randn(4, generator=gen), torch.randn(3, generator=gen)]
    grads = [torch.randn(4, generator=gen) for _ in range(3)]
    extra = torch.randn(3, dtype=torch.complex64, generator=gen)
    results = []
    for cls in (ours_cls, torch_cls):
        a, b = (nn.Parameter(t.clone()) for t in start)
        opt = cls([a, b], **options)
        for g in grads[:2]:  # ``b`` has no gradient, so no state, yet
            a.grad = g.clone()
            opt.step()
        b.data = b.data.to(torch.complex64)  # the same tensor object, now complex
        a.grad, b.grad = grads[2].clone(), extra.clone()
        opt.step()
        results.append((a.detach().clone(), b.detach().clone()))
    for ours, ref in zip(*results, strict=True):
        assert torch.equal(ours, ref)
