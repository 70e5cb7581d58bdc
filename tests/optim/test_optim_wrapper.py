"""OptimWrapper: accumulation (spec §5, A23), clipping, lr/momentum, state dicts, parity with torch.optim."""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from fengine.logging import MessageHub
from fengine.optim import SGD, Adam, AdamW, OptimWrapper, OptimWrapperError


class Scalar(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(()))


def test_a23_accumulation_with_count_status_steps_at_3_6_9_10() -> None:
    model = Scalar()
    wrapper = OptimWrapper(SGD(model.parameters(), lr=1), accumulative_counts=3)
    wrapper.initialize_count_status(model, 0, 10)
    ws, factors = [], []
    for _ in range(10):
        factors.append(float(wrapper.scale_loss(torch.tensor(3.0))))
        wrapper.update_params(model.w * 1.0)
        ws.append(model.w.item())
    assert factors == [1.0] * 9 + [3.0]  # 3/3 nine times, then 3/1 for the remainder group
    assert ws == [0, 0, -1, -1, -1, -2, -2, -2, -3, -4]
    assert wrapper.inner_count == 10


def test_a23_accumulation_without_count_status_divides_by_3_always() -> None:
    model = Scalar()
    wrapper = OptimWrapper(SGD(model.parameters(), lr=1), accumulative_counts=3)
    ws, updates, syncs = [], [], []
    for _ in range(10):
        syncs.append(wrapper.should_sync())
        assert float(wrapper.scale_loss(torch.tensor(3.0))) == 1.0
        wrapper.update_params(model.w * 1.0)
        updates.append(wrapper.should_update())
        ws.append(model.w.item())
    assert ws == [0, 0, -1, -1, -1, -2, -2, -2, -3, -3]
    assert updates == syncs == [k % 3 == 0 for k in range(1, 11)]
    assert model.w.grad is not None  # the 10th backward waits for a group that never completes


def test_scale_loss_past_the_last_group_is_an_error() -> None:
    model = Scalar()
    wrapper = OptimWrapper(SGD(model.parameters(), lr=1), accumulative_counts=3)
    wrapper.initialize_count_status(model, 3, 3)
    with pytest.raises(AssertionError, match=r"loss factor 0 <= 0 at inner_count=3 with max_counts=3"):
        wrapper.scale_loss(torch.tensor(1.0))


def test_count_status_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    monkeypatch.setattr("fengine.optim.optimizer.optimizer_wrapper.warn", seen.append)
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    OptimWrapper(SGD(model.parameters(), lr=1), accumulative_counts=2).initialize_count_status(model, 3, 10)
    assert len(seen) == 2 and "not divisible" in seen[0] and "BatchNorm" in seen[1]
    seen.clear()
    OptimWrapper(SGD(model.parameters(), lr=1)).initialize_count_status(model, 3, 10)
    assert seen == []


class NoSyncModel(Scalar):
    def __init__(self) -> None:
        super().__init__()
        self.entered = 0

    @contextlib.contextmanager
    def no_sync(self) -> Iterator[None]:
        self.entered += 1
        yield


def test_optim_context_skips_the_all_reduce_until_the_step() -> None:
    model = NoSyncModel()
    wrapper = OptimWrapper(SGD(model.parameters(), lr=1), accumulative_counts=2)
    entered = []
    for _ in range(4):
        with wrapper.optim_context(model):
            loss = model.w * 1.0
        entered.append(model.entered)
        wrapper.update_params(loss)
    assert entered == [1, 1, 2, 2]


def test_clip_norm_logs_the_total_norm_and_matches_torch() -> None:
    hub = MessageHub.get_instance("optim-wrapper-clip")
    torch.manual_seed(0)
    model, ref = nn.Linear(4, 3), nn.Linear(4, 3)
    ref.load_state_dict(model.state_dict())
    clip = {"type": "norm", "max_norm": 0.1, "norm_type": 2}
    wrapper = OptimWrapper(SGD(model.parameters(), lr=0.5), clip_grad=clip)
    assert clip == {"type": "norm", "max_norm": 0.1, "norm_type": 2}  # the caller's dict is kept
    opt = torch.optim.SGD(ref.parameters(), lr=0.5)
    x = torch.randn(5, 4)
    wrapper.update_params(model(x).square().sum())
    ref(x).square().sum().backward()
    total = torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.1)
    opt.step()
    assert hub.get_scalar("train/grad_norm").current() == float(total)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), ref.parameters()))
    before = len(hub.get_scalar("train/grad_norm").data[0])
    OptimWrapper(SGD(model.parameters(), lr=0.5), clip_grad={"type": "value", "clip_value": 1}).update_params(
        model(x).sum()
    )
    assert len(hub.get_scalar("train/grad_norm").data[0]) == before


@pytest.mark.parametrize(
    ("clip_grad", "error", "message"),
    [
        ({}, AssertionError, r"clip_grad must be None or a non-empty dict"),
        ({"type": "norm"}, AssertionError, r"has only a type; 'norm' clipping needs \['max_norm'\]"),
        ({"type": "foo", "max_norm": 1}, ValueError, r"clip_grad type must be 'norm' or 'value', got type='foo'"),
        ({"max_norm": 1, "max_nrom": 2}, ValueError, r"unknown \['max_nrom'\]"),
        ({"type": "value"}, OptimWrapperError, r"'value' clipping needs \['clip_value'\]"),
        ([1.0], OptimWrapperError, r"got \[1.0\]"),
    ],
)
def test_bad_clip_grad(clip_grad: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        OptimWrapper(SGD(Scalar().parameters(), lr=1), clip_grad=clip_grad)


def test_bad_arguments() -> None:
    params = list(Scalar().parameters())
    with pytest.raises(AssertionError, match=r"accumulative_counts must be an int >= 1, got accumulative_counts=0"):
        OptimWrapper(SGD(params, lr=1), accumulative_counts=0)
    with pytest.raises(TypeError, match=r"has no 'params'.*build_optim_wrapper"):
        OptimWrapper({"type": "SGD", "lr": 0.1})
    with pytest.raises(TypeError, match=r"must be a torch.optim.Optimizer or a config dict, got list"):
        OptimWrapper(params)
    built = OptimWrapper({"type": "SGD", "lr": 0.1, "params": params})
    assert isinstance(built.optimizer, SGD) and built.optimizer.defaults["lr"] == 0.1


def two_group_wrapper() -> tuple[nn.Module, OptimWrapper]:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    optimizer = SGD([{"params": model[0].parameters(), "lr": 0.01}, {"params": model[1].parameters()}],
                    lr=0.1, momentum=0.9)
    return model, OptimWrapper(optimizer, accumulative_counts=2)


def test_get_lr_momentum_param_groups_and_base_settings() -> None:
    _, wrapper = two_group_wrapper()
    assert wrapper.get_lr() == {"base_lr": [0.1], "lr": [0.01, 0.1]}
    assert wrapper.get_momentum() == {"momentum": [0.9, 0.9]}
    assert len(wrapper.param_groups) == 3 and wrapper.param_groups[2]["lr"] == 0.1
    wrapper.param_groups[0]["lr"] = 0.5  # a scheduler writes the real group
    assert wrapper.optimizer.param_groups[0]["lr"] == 0.5 and wrapper.defaults["momentum"] == 0.9
    assert "base_param_settings" in wrapper.state_dict()
    adam = OptimWrapper(Adam(Scalar().parameters(), betas=(0.8, 0.9)))
    assert adam.get_lr() == {"lr": [0.001]} and adam.get_momentum() == {"momentum": [0.8]}
    assert OptimWrapper(torch.optim.Adagrad(Scalar().parameters())).get_momentum() == {"momentum": [0]}


def test_state_dict_round_trip_through_weights_only_load_resumes_bit_exactly() -> None:
    model, wrapper = two_group_wrapper()
    resumed_model, resumed = two_group_wrapper()
    gen = torch.Generator().manual_seed(2)
    batches = [torch.randn(5, 3, generator=gen) for _ in range(8)]
    for k, x in enumerate(batches):
        wrapper.update_params(model(x).square().mean())
        if k == 3:
            buffer = io.BytesIO()
            torch.save({"optimizer": wrapper.state_dict(), "model": model.state_dict()}, buffer)
            buffer.seek(0)
            ckpt = torch.load(buffer, weights_only=True)
            resumed_model.load_state_dict(ckpt["model"])
            resumed.load_state_dict(ckpt["optimizer"])
            assert resumed.base_param_settings is not None and resumed.get_lr() == wrapper.get_lr()
        elif k > 3:
            resumed.update_params(resumed_model(x).square().mean())
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), resumed_model.parameters()))


@st.composite
def wrapper_setups(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["SGD", "Adam", "AdamW"]))
    if kind == "SGD":
        momentum = draw(st.sampled_from([0.0, 0.9]))
        hp = dict(lr=draw(st.sampled_from([0.1, 0.03])), momentum=momentum, weight_decay=draw(st.sampled_from([0.0, 1e-2])),
                  nesterov=momentum > 0 and draw(st.booleans()), dampening=0.0 if momentum == 0 else draw(st.sampled_from([0.0, 0.1])))
        hp["nesterov"] = hp["nesterov"] and hp["dampening"] == 0
    else:
        hp = dict(lr=draw(st.sampled_from([1e-2, 3e-3])), betas=(draw(st.sampled_from([0.9, 0.5])), 0.99),
                  weight_decay=draw(st.sampled_from([0.0, 1e-2])), amsgrad=draw(st.booleans()))
    clip = draw(st.sampled_from([None, {"max_norm": 0.5}, {"type": "norm", "max_norm": 2.0, "norm_type": 1.0},
                                 {"type": "value", "clip_value": 0.05}]))
    return dict(kind=kind, hp=hp, clip=clip, counts=draw(st.integers(1, 3)), maximize=draw(st.booleans()),
                second_lr=draw(st.sampled_from([None, 0.5])), seed=draw(st.integers(0, 1000)), iters=draw(st.integers(3, 9)))


@settings(max_examples=30, deadline=None)
@given(wrapper_setups())
def test_wrapper_matches_a_hand_written_torch_loop(setup: dict[str, Any]) -> None:
    torch.manual_seed(setup["seed"])
    model = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 2))
    ref = copy.deepcopy(model)
    ours_cls = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}[setup["kind"]]
    torch_cls = getattr(torch.optim, setup["kind"])

    def groups(m: nn.Module) -> list[dict[str, Any]]:
        second = {} if setup["second_lr"] is None else {"lr": setup["hp"]["lr"] * setup["second_lr"], "weight_decay": 0.0}
        return [{"params": m[0].parameters()}, {"params": m[2].parameters(), **second}]

    hp = {**setup["hp"], "maximize": setup["maximize"]}
    wrapper = OptimWrapper(ours_cls(groups(model), **hp), accumulative_counts=setup["counts"],
                           clip_grad=None if setup["clip"] is None else dict(setup["clip"]))
    opt = torch_cls(groups(ref), **hp, foreach=True)
    k = setup["counts"]
    wrapper.initialize_count_status(model, 0, setup["iters"])
    remainder = setup["iters"] % k
    for it in range(1, setup["iters"] + 1):
        x = torch.randn(3, 4)
        wrapper.update_params(model(x).square().mean())
        factor = k if it <= setup["iters"] - remainder else remainder
        (ref(x).square().mean() / factor).backward()
        if it % k == 0 or it == setup["iters"]:
            clip = dict(setup["clip"] or {})
            kind = clip.pop("type", "norm")
            if clip:
                (torch.nn.utils.clip_grad_norm_ if kind == "norm" else torch.nn.utils.clip_grad_value_)(ref.parameters(), **clip)
            opt.step()
            opt.zero_grad()
    for a, b in zip(model.parameters(), ref.parameters()):
        assert torch.equal(a, b)


@settings(max_examples=30, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True, width=32) | st.just(-0.0))
def test_scale_loss_without_accumulation_is_division_by_one_bit_for_bit(value: float) -> None:
    wrapper = OptimWrapper(SGD(Scalar().parameters(), lr=1))
    w, w_ref = (torch.tensor(value, requires_grad=True) for _ in range(2))
    scaled, reference = wrapper.scale_loss(w * 2), (w_ref * 2) / 1
    got, want = scaled.detach(), reference.detach()
    assert (got.isnan() and want.isnan()) or (got == want and got.signbit() == want.signbit())
    scaled.backward()
    reference.backward()
    assert w.grad is not None and w_ref.grad is not None
    assert torch.equal(w.grad, w_ref.grad) or bool(w.grad.isnan() and w_ref.grad.isnan())
    assert wrapper.scale_loss(0) == 0.0 and type(wrapper.scale_loss(0)) is float  # type: ignore[arg-type]
