"""``param_groups`` of fengine's SGD/Adam/AdamW as views of the record, against torch.optim.

Whatever is written into the groups, assigned as ``opt_state`` or done by a scheduler, the record
and ``param_groups`` agree after every operation, and the weights equal torch.optim's (the same
class given the same writes) bit for bit.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import fengine.optim.scheduler as sch
from fengine.core import optim as fo
from fengine.optim import SGD, Adam, AdamW

PAIRS: dict[str, tuple[type[torch.optim.Optimizer], type[torch.optim.Optimizer], dict[str, Any]]] = {
    "SGD": (SGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9}),
    "Adam": (Adam, torch.optim.Adam, {"lr": 0.01}),
    "AdamW": (AdamW, torch.optim.AdamW, {"lr": 0.01, "weight_decay": 0.05}),
}
#: Per optimizer, the hyper-parameters written and the values they take.
FRACTION = st.sampled_from([0.0, 1e-3, 0.05, 0.3, 0.9])
VALUES: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "SGD": {"lr": FRACTION, "momentum": FRACTION, "dampening": FRACTION, "weight_decay": FRACTION,
            "maximize": st.booleans()},
    "Adam": {"lr": FRACTION, "betas": st.tuples(FRACTION, st.sampled_from([0.9, 0.99, 0.999])),
             "eps": st.sampled_from([1e-8, 1e-6, 0.1]), "weight_decay": FRACTION, "maximize": st.booleans()},
}
VALUES["AdamW"] = VALUES["Adam"]


class Side:
    """A two-group model, its optimizer and a gradient source."""

    def __init__(self, cls: type[torch.optim.Optimizer], options: dict[str, Any], seed: int) -> None:
        torch.manual_seed(seed)
        self.model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))
        self.opt = cls([{"params": self.model[0].parameters()},
                        {"params": self.model[2].parameters(), "lr": options["lr"] * 0.5}], **options)
        self.gen = torch.Generator().manual_seed(seed)

    def step(self) -> None:
        self.opt.zero_grad()
        self.model(torch.randn(3, 4, generator=self.gen)).square().mean().backward()
        self.opt.step()


def agree(opt: Any) -> None:
    """The record's hyper-parameters are the groups' values (the very objects)."""
    record = opt.opt_state
    assert record is not None and len(record.groups) == len(opt.param_groups)
    for group, held in zip(opt.param_groups, record.groups, strict=True):
        for key, value in attrs.asdict(held.hyper, recurse=False).items():
            assert group[key] is value, key


def same_weights(ours: Side, ref: Side) -> None:
    for a, b in zip(ours.model.parameters(), ref.model.parameters(), strict=True):
        assert torch.equal(a, b)


@st.composite
def operations(draw: st.DrawFn, kind: str) -> list[tuple[Any, ...]]:
    ops: list[tuple[Any, ...]] = []
    for _ in range(draw(st.integers(1, 12))):
        what = draw(st.sampled_from(["write", "assign", "step", "extra"]))
        group = draw(st.integers(0, 1))
        if what in ("write", "assign"):
            key = draw(st.sampled_from(sorted(VALUES[kind])))
            ops.append((what, group, key, draw(VALUES[kind][key])))
        else:
            ops.append((what, group))
    return ops


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(sorted(PAIRS)).flatmap(lambda kind: st.tuples(st.just(kind), operations(kind))),
       st.integers(0, 99))
def test_writes_assignments_and_steps_keep_record_and_groups_equal_and_match_torch(
    case: tuple[str, list[tuple[Any, ...]]], seed: int
) -> None:
    kind, ops = case
    ours_cls, torch_cls, options = PAIRS[kind]
    ours, ref = Side(ours_cls, options, seed), Side(torch_cls, options, seed)
    agree(ours.opt)
    for op in ops:
        what, group = op[0], op[1]
        if what == "write":
            ours.opt.param_groups[group][op[2]] = op[3]
        elif what == "assign":  # a new record, as a pure schedule would return it
            ours.opt.opt_state = fo.set_hyperparams(ours.opt.opt_state, group=group, **{op[2]: op[3]})
            assert ours.opt.param_groups[group][op[2]] is op[3]
        elif what == "extra":
            ours.opt.param_groups[group]["initial_lr"] = 0.5
            assert "initial_lr" not in attrs.asdict(ours.opt.opt_state.groups[group].hyper)
        if what in ("write", "assign", "extra"):
            ref.opt.param_groups[group][op[2] if what != "extra" else "initial_lr"] = op[3] if what != "extra" else 0.5
        else:
            ours.step()
            ref.step()
            same_weights(ours, ref)
        agree(ours.opt)
        for a, b in zip(ours.opt.param_groups, ref.opt.param_groups, strict=True):
            assert list(a) == list(b) and without_params(a) == without_params(b)
    ours.step()
    ref.step()
    same_weights(ours, ref)
    assert ours.opt.state_dict()["param_groups"] == ref.opt.state_dict()["param_groups"]


def _torch_schedulers(opt: torch.optim.Optimizer) -> list[Any]:
    lr = torch.optim.lr_scheduler
    return [lr.StepLR(opt, step_size=3, gamma=0.5), lr.CosineAnnealingLR(opt, T_max=7, eta_min=1e-4)]


TORCH_SCHEDULERS: dict[str, Callable[[torch.optim.Optimizer], list[Any]]] = {
    "StepLR+CosineAnnealingLR (chained)": _torch_schedulers,
    "OneCycleLR": lambda opt: [torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=[0.2, 0.1], total_steps=12)],
    "SWALR": lambda opt: [torch.optim.swa_utils.SWALR(opt, swa_lr=0.02, anneal_epochs=4)],
}


def without_params(group: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in group.items() if k != "params"}


def scheduled(kind: str, build: Callable[[Any], list[Any]], seed: int) -> tuple[Side, Side]:
    """Twelve steps of each side, its schedulers stepped after each, checked every step."""
    ours_cls, torch_cls, options = PAIRS[kind]
    ours, ref = Side(ours_cls, options, seed), Side(torch_cls, options, seed)
    ours_sched, ref_sched = build(ours.opt), build(ref.opt)
    for _ in range(12):
        ours.step()
        ref.step()
        for a, b in zip(ours_sched, ref_sched, strict=True):
            a.step()
            b.step()
            last = getattr(a, "get_last_lr", getattr(a, "get_last_value", None))
            assert last is not None and last() == getattr(b, last.__name__)()
        agree(ours.opt)
        assert list(map(without_params, ours.opt.param_groups)) == list(map(without_params, ref.opt.param_groups))
        assert [g.hyper.lr for g in ours.opt.opt_state.groups] == [g["lr"] for g in ref.opt.param_groups]
        same_weights(ours, ref)
    return ours, ref


@pytest.mark.parametrize("kind", sorted(PAIRS))
@pytest.mark.parametrize("schedulers", sorted(TORCH_SCHEDULERS))
def test_torch_lr_schedulers_give_torch_lrs_and_weights(kind: str, schedulers: str) -> None:
    ours, ref = scheduled(kind, TORCH_SCHEDULERS[schedulers], 1)
    assert ours.opt.param_groups[0]["initial_lr"] == ref.opt.param_groups[0]["initial_lr"]


FENGINE_SCHEDULERS: dict[str, Callable[[Any], list[Any]]] = {
    "LinearLR+CosineAnnealingLR": lambda opt: [
        sch.LinearLR(opt, start_factor=0.1, begin=0, end=4),
        sch.CosineAnnealingLR(opt, T_max=8, begin=4, end=12, eta_min=1e-4)],
    "OneCycleLR": lambda opt: [sch.OneCycleLR(opt, eta_max=0.2, total_steps=12)],
    "momentum (betas for Adam)": lambda opt: [sch.CosineAnnealingMomentum(opt, T_max=12, eta_min=0.5),
                                              sch.MultiStepLR(opt, milestones=[3, 8], gamma=0.3)],
}


@pytest.mark.parametrize("kind", sorted(PAIRS))
@pytest.mark.parametrize("schedulers", sorted(FENGINE_SCHEDULERS))
def test_fengine_param_schedulers_give_the_values_they_give_torch_optimizers(kind: str, schedulers: str) -> None:
    ours, _ = scheduled(kind, FENGINE_SCHEDULERS[schedulers], 2)
    assert "initial_lr" in ours.opt.param_groups[0]


@pytest.mark.parametrize("kind", sorted(PAIRS))
def test_state_dict_round_trip_keeps_record_groups_and_the_next_steps(kind: str) -> None:
    ours_cls, torch_cls, options = PAIRS[kind]
    ours, ref = Side(ours_cls, options, 3), Side(torch_cls, options, 3)
    for side in (ours, ref):
        side.step()
        side.opt.param_groups[1]["lr"] = 0.02
        side.opt.param_groups[0]["initial_lr"] = 0.3
        side.step()
    saved = ours.opt.state_dict()
    assert saved["param_groups"] == ref.opt.state_dict()["param_groups"]
    loaded = Side(ours_cls, options, 3)
    loaded.model.load_state_dict(ours.model.state_dict())
    loaded.gen.set_state(ours.gen.get_state())
    replaced = loaded.opt.param_groups[1]
    loaded.opt.load_state_dict(copy.deepcopy(saved))
    replaced["lr"] = 123.0  # torch, too, hands out new group dicts: the old one is the user's
    assert loaded.opt.param_groups[1] is not replaced
    agree(loaded.opt)
    assert loaded.opt.opt_state.groups[1].hyper.lr == 0.02
    assert loaded.opt.param_groups[0]["initial_lr"] == 0.3
    for _ in range(3):
        loaded.step()
        ref.step()
    same_weights(loaded, ref)


@pytest.mark.parametrize("kind", sorted(PAIRS))
@pytest.mark.parametrize("clone", [copy.deepcopy, lambda opt: pickle.loads(pickle.dumps(opt))], ids=["deepcopy", "pickle"])
def test_a_copy_has_its_own_record_and_views(kind: str, clone: Callable[[Any], Any]) -> None:
    ours_cls, _, options = PAIRS[kind]
    side = Side(ours_cls, options, 4)
    side.step()
    side.opt.param_groups[0]["lr"] = 0.07
    copied = clone(side.opt)
    agree(copied)
    assert copied.param_groups[0]["lr"] == 0.07 and type(copied.param_groups[0]).__name__ == "ParamGroupView"
    copied.param_groups[0]["lr"] = 0.01
    assert copied.opt_state.groups[0].hyper.lr == 0.01
    assert side.opt.param_groups[0]["lr"] == side.opt.opt_state.groups[0].hyper.lr == 0.07
    agree(side.opt)


def test_a_group_behaves_as_torchs_dict() -> None:
    ours, ref = Side(SGD, {"lr": 0.1}, 5).opt, Side(torch.optim.SGD, {"lr": 0.1}, 5).opt
    group, plain = ours.param_groups[0], ref.param_groups[0]
    assert isinstance(group, dict) and list(group) == list(plain) and "lr" in group
    assert repr(ours).split("\n", 1)[1] == repr(ref).split("\n", 1)[1]  # torch's listing of the groups
    assert dict(group).keys() == {**plain}.keys() and dict(group)["params"] is group["params"]
    assert {**group}["lr"] == plain["lr"] == 0.1
    assert group.setdefault("initial_lr", 0.5) == 0.5 and group.setdefault("lr", 9.0) == 0.1
    group.update(momentum=0.8, swa_lr=0.01)
    group |= {"weight_decay": 0.25}
    hyper = ours.opt_state.groups[0].hyper
    assert (hyper.momentum, hyper.weight_decay) == (0.8, 0.25) and group["swa_lr"] == 0.01
    assert group.pop("swa_lr") == 0.01 and "swa_lr" not in group
    for copied in (copy.copy(group), copy.deepcopy(group), pickle.loads(pickle.dumps(group))):
        assert type(copied) is dict and copied["momentum"] == 0.8
    with pytest.raises(KeyError, match=r"'lr' is a hyper-parameter of the optimizer's record and cannot be "
                                       r"removed from param_groups\[0\]"):
        del group["lr"]
    with pytest.raises(KeyError, match=r"'momentum' is a hyper-parameter"):
        group.pop("momentum")
    with pytest.raises(TypeError, match=r"param_groups\[0\] cannot be cleared"):
        group.clear()


def test_assigning_a_record_checks_its_layout() -> None:
    opt = Side(Adam, {"lr": 0.01}, 6).opt
    other = Adam([nn.Parameter(torch.zeros(2))], lr=0.01)
    with pytest.raises(ValueError, match=r"opt_state must be a AdamState laid out as this optimizer's \(4 parameters "
                                         r"in groups of \[2, 2\]\), got AdamState"):
        opt.opt_state = other.opt_state
    with pytest.raises(ValueError, match=r"got SGDState"):
        opt.opt_state = SGD([nn.Parameter(torch.zeros(2))], lr=0.1).opt_state


def test_state_writes_reach_the_record_and_unknown_keys_are_refused() -> None:
    side = Side(Adam, {"lr": 0.01}, 7)
    side.step()
    first = side.opt.param_groups[0]["params"][0]
    side.opt.state[first]["exp_avg"] = torch.ones_like(first)
    assert torch.equal(side.opt.opt_state.exp_avg[0], torch.ones_like(first))
    assert first in side.opt.state and len(side.opt.state) == 4
    with pytest.raises(KeyError, match=r"Adam's record holds \['exp_avg', 'exp_avg_sq', 'max_exp_avg_sq', 'step'\] "
                                       r"per parameter, got \['momentum_buffer'\]"):
        side.opt.state[first]["momentum_buffer"] = torch.zeros(1)
    with pytest.raises(KeyError, match="is not a parameter of this optimizer"):
        side.opt.state[torch.zeros(1)]


def test_a_step_through_torch_leaves_the_record_the_truth() -> None:
    ours, ref = Side(Adam, {"lr": 0.01, "amsgrad": True}, 8), Side(torch.optim.Adam, {"lr": 0.01, "amsgrad": True}, 8)
    calls: list[int] = []
    handle = ours.opt.register_step_post_hook(lambda *a: calls.append(len(a)))  # torch's own step runs
    for _ in range(3):
        ours.step()
        ref.step()
    handle.remove()
    record = ours.opt.opt_state
    assert calls == [3] * 3 and record.count == (3,) * 4
    for i, p in enumerate(ref.opt.param_groups[0]["params"] + ref.opt.param_groups[1]["params"]):
        assert torch.equal(record.exp_avg[i], ref.opt.state[p]["exp_avg"])
        assert torch.equal(record.max_exp_avg_sq[i], ref.opt.state[p]["max_exp_avg_sq"])
    ours.step()
    ref.step()
    same_weights(ours, ref)
