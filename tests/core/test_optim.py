"""fc.optim SGD/Adam/AdamW: bit parity with torch.optim, purity, donation, param groups."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fengine.core as fc
from fengine.core import optim as fo
from fengine.core.optim.base import gather, scatter, with_grads
from fengine.core.tree import versions

Problem = dict[str, Any]
unit = st.floats(0.0, 1.0, allow_subnormal=False)


@st.composite
def problems(draw: st.DrawFn) -> Problem:
    """Random tensors (several shapes and dtypes), a split into 1-2 groups, and a gradient stream."""
    n = draw(st.integers(1, 4))
    shapes = [tuple(draw(st.lists(st.integers(1, 9), max_size=3))) for _ in range(n)]
    dtypes = [draw(st.sampled_from([torch.float32, torch.float32, torch.float64])) for _ in range(n)]
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    none_rate = draw(st.sampled_from([0.0, 0.0, 0.25]))
    steps = draw(st.integers(5, 30))
    init = {f"p{i}": torch.randn(s, generator=gen).to(d) for i, (s, d) in enumerate(zip(shapes, dtypes))}
    stream = []
    for _ in range(steps):
        grads: dict[str, torch.Tensor | None] = {}
        for name, p in init.items():
            skip = torch.rand((), generator=gen).item() < none_rate
            grads[name] = None if skip else torch.randn(p.shape, generator=gen).to(p.dtype)
        stream.append(grads)
    return {"init": init, "stream": stream, "split": draw(st.integers(1, n))}


@st.composite
def sgd_hparams(draw: st.DrawFn) -> dict[str, Any]:
    momentum = draw(st.sampled_from([0.0, 0.9]) | unit.map(lambda x: x * 0.99))
    dampening = draw(st.sampled_from([0.0, 0.0, 0.5]) | unit)
    nesterov = momentum > 0 and dampening == 0 and draw(st.booleans())
    return dict(lr=draw(unit.map(lambda x: 1e-3 + x)), momentum=momentum, dampening=dampening,
                weight_decay=draw(st.sampled_from([0.0, 1e-4]) | unit.map(lambda x: x * 0.1)),
                nesterov=nesterov, maximize=draw(st.booleans()))


@st.composite
def adam_hparams(draw: st.DrawFn) -> dict[str, Any]:
    return dict(lr=draw(unit.map(lambda x: 1e-4 + 0.1 * x)),
                betas=(draw(unit.map(lambda x: 0.99 * x)), draw(unit.map(lambda x: 0.5 + 0.4999 * x))),
                eps=draw(st.sampled_from([1e-8, 1e-3]) | unit.map(lambda x: 1e-10 + 1e-4 * x)),
                weight_decay=draw(st.sampled_from([0.0, 1e-2]) | unit.map(lambda x: 0.1 * x)),
                amsgrad=draw(st.booleans()), maximize=draw(st.booleans()))


KINDS: dict[str, tuple[type[torch.optim.Optimizer], Callable[..., fc.GradientTransform[Any]], Any]] = {
    "sgd": (torch.optim.SGD, fo.sgd, sgd_hparams()),
    "adam": (torch.optim.Adam, fo.adam, adam_hparams()),
    "adamw": (torch.optim.AdamW, fo.adamw, adam_hparams()),
}
STATE_KEYS = {"momentum_buffer": "momentum_buffer", "exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq",
              "max_exp_avg_sq": "max_exp_avg_sq"}


def run_torch(kind: str, prob: Problem, hps: list[dict[str, Any]], foreach: bool) -> tuple[list[torch.Tensor], torch.optim.Optimizer]:
    cls = KINDS[kind][0]
    params = [p.clone().requires_grad_() for p in prob["init"].values()]
    cut = prob["split"]
    groups = [{"params": params[:cut], **hps[0]}] + ([{"params": params[cut:], **hps[1]}] if params[cut:] else [])
    opt = cls(groups, foreach=foreach)
    for grads in prob["stream"]:
        for p, g in zip(params, grads.values()):
            p.grad = None if g is None else g.clone()
        opt.step()
    return params, opt


def core_tx(kind: str, prob: Problem, hps: list[dict[str, Any]]) -> fc.GradientTransform[Any]:
    names = list(prob["init"])
    cut = prob["split"]
    specs = [{"params": names[:cut], **hps[0]}] + ([{"params": names[cut:], **hps[1]}] if names[cut:] else [])
    return KINDS[kind][1](**hps[0], param_groups=specs)


def state_tensors(state: Any) -> dict[str, torch.Tensor | None]:
    out: dict[str, torch.Tensor | None] = {}
    for field in STATE_KEYS:
        for name, t in zip(state.names, getattr(state, field, ())):
            out[f"{field}/{name}"] = t
    return out


def run_core(tx: fc.GradientTransform[Any], prob: Problem, donate: bool) -> tuple[dict[str, torch.Tensor], Any]:
    params = {k: v.clone() for k, v in prob["init"].items()}
    state = tx.init(params)
    for grads in prob["stream"]:
        grads = {k: None if g is None else g.clone() for k, g in grads.items()}
        before = (versions(params), versions(grads), versions(state_tensors(state)))
        new_params, new_state = tx.update(grads, state, params, donate=donate)
        if not donate:
            assert before == (versions(params), versions(grads), versions(state_tensors(state)))
        else:
            assert all(new_params[k] is params[k] for k in params)
        params, state = new_params, new_state
    return params, state


def assert_same_as_torch(kind: str, prob: Problem, hps: list[dict[str, Any]]) -> None:
    tx = core_tx(kind, prob, hps)
    pure_params, pure_state = run_core(tx, prob, donate=False)
    donated_params, donated_state = run_core(tx, prob, donate=True)
    for foreach in (True, False):
        torch_params, opt = run_torch(kind, prob, hps, foreach)
        for i, (name, p) in enumerate(pure_params.items()):
            assert torch.equal(p, torch_params[i].detach()), (name, foreach)
            torch_state = opt.state[torch_params[i]]
            for field in STATE_KEYS:
                ours = dict(zip(pure_state.names, getattr(pure_state, field, ())))
                if field in torch_state:
                    assert torch.equal(ours[name], torch_state[field]), (field, name, foreach)
                else:
                    assert ours.get(name) is None, (field, name)
            if "step" in torch_state:
                assert pure_state.count[i] == int(torch_state["step"])
    for name in pure_params:
        assert torch.equal(pure_params[name], donated_params[name])
    for key, t in state_tensors(pure_state).items():
        other = state_tensors(donated_state)[key]
        assert (t is None and other is None) or torch.equal(t, other), key  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
@settings(max_examples=50, deadline=None)
@given(data=st.data())
def test_bit_identical_to_torch_pure_and_donated(kind: str, data: st.DataObject) -> None:
    prob = data.draw(problems())
    hps = [data.draw(KINDS[kind][2]), data.draw(KINDS[kind][2])]
    assert_same_as_torch(kind, prob, hps)


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
def test_large_tensors_fused_multiply_add_paths(kind: str) -> None:
    # Vectorised kernels kick in on long rows: parity must survive them too.
    gen = torch.Generator().manual_seed(0)
    init = {"w": torch.randn(257, 129, generator=gen), "b": torch.randn(1031, generator=gen)}
    stream = [{k: torch.randn(v.shape, generator=gen) for k, v in init.items()} for _ in range(12)]
    prob = {"init": init, "stream": stream, "split": 1}
    base = {"sgd": dict(lr=0.1, momentum=0.9, weight_decay=1e-4, nesterov=True),
            "adam": dict(lr=1e-2, weight_decay=1e-3, amsgrad=True),
            "adamw": dict(lr=3e-3, betas=(0.8, 0.99))}[kind]
    assert_same_as_torch(kind, prob, [base, {**base, "lr": base["lr"] * 0.5}])


def test_hyperparams_in_state_move_like_torch_param_groups() -> None:
    gen = torch.Generator().manual_seed(3)
    init = {"a": torch.randn(5, generator=gen), "b": torch.randn(3, 2, generator=gen)}
    tx = fo.sgd(0.1, momentum=0.9, param_groups=[{"params": ["a"]}, {"params": ["b"], "lr": 0.05}])
    params, state = dict(init), tx.init(init)
    tparams = [v.clone().requires_grad_() for v in init.values()]
    opt = torch.optim.SGD([{"params": [tparams[0]]}, {"params": [tparams[1]], "lr": 0.05}], lr=0.1, momentum=0.9)
    assert fo.hyperparams(state)[1]["lr"] == 0.05
    for step in range(6):
        lr = 0.1 * 0.5**step
        state = fo.set_hyperparams(state, lr=lr)
        state = fo.set_hyperparams(state, group=-1, momentum=0.5)
        for g in opt.param_groups:
            g["lr"] = lr
        opt.param_groups[1]["momentum"] = 0.5
        grads = {k: torch.randn(v.shape, generator=gen) for k, v in init.items()}
        for p, g in zip(tparams, grads.values()):
            p.grad = g.clone()
        opt.step()
        params, state = tx.update(grads, state, params)
    assert all(torch.equal(params[k], p.detach()) for k, p in zip(init, tparams))
    assert [h["lr"] for h in fo.hyperparams(state)] == [0.1 * 0.5**5] * 2
    assert [h["momentum"] for h in fo.hyperparams(state)] == [0.9, 0.5]


def test_frozen_or_unused_parameters_are_not_touched() -> None:
    params = {"w": torch.ones(3), "frozen": torch.ones(2)}
    for tx in (fo.sgd(0.1, momentum=0.9, weight_decay=0.1), fo.adamw(0.1)):
        new, state = tx.update({"w": torch.ones(3)}, tx.init(params), params)
        assert new["frozen"] is params["frozen"] and not torch.equal(new["w"], params["w"])
        assert dict(zip(state.names, getattr(state, "count", (1, 0))))["frozen"] == 0


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: fo.sgd(-0.1), r"lr must be >= 0, got lr=-0.1"),
        (lambda: fo.sgd(0.1, momentum=-1), r"momentum must be >= 0"),
        (lambda: fo.sgd(0.1, nesterov=True), r"nesterov=True requires momentum > 0"),
        (lambda: fo.adam(betas=(1.0, 0.9)), r"betas\[0\] must be in \[0, 1\)"),
        (lambda: fo.adamw(eps=-1.0), r"eps must be >= 0"),
    ],
)
def test_invalid_hyperparameters_name_the_field(make: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_bad_param_groups_are_clear_errors() -> None:
    params = {"a": torch.zeros(1), "b": torch.zeros(1)}
    with pytest.raises(KeyError, match=r"names 'c', which is not a parameter"):
        fo.sgd(0.1, param_groups=[{"params": ["a", "c"]}]).init(params)
    with pytest.raises(ValueError, match=r"'a' is in param_groups\[0\] and param_groups\[1\]"):
        fo.sgd(0.1, param_groups=[{"params": ["a", "b"]}, {"params": ["a"]}]).init(params)
    with pytest.raises(ValueError, match=r"\['b'\] are in no param group"):
        fo.sgd(0.1, param_groups=[{"params": ["a"]}]).init(params)
    with pytest.raises(KeyError, match=r"unknown hyper-parameter\(s\) \['betas'\] for SGDHyper"):
        fo.sgd(0.1, param_groups=[{"params": ["a", "b"], "betas": (0.9, 0.9)}]).init(params)
    with pytest.raises(ValueError, match=r"lr must be >= 0"):
        fo.sgd(0.1, param_groups=[{"params": ["a", "b"], "lr": -1}]).init(params)
    with pytest.raises(TypeError, match=r"param_groups\[0\] must be a mapping with a 'params' list"):
        fo.sgd(0.1, param_groups=[{"params": "a"}]).init(params)


@pytest.mark.parametrize("kind", ["sgd", "adam", "adamw"])
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_groups_listing_parameters_in_any_order_match_torch(kind: str, data: st.DataObject) -> None:
    # One group holding every parameter in another order is stepped as one whole-list call.
    prob = data.draw(problems())
    names = list(prob["init"])
    order = data.draw(st.permutations(range(len(names))))
    cut = data.draw(st.integers(1, len(names)))
    hps = [data.draw(KINDS[kind][2]), data.draw(KINDS[kind][2])]
    parts = [list(order[:cut]), list(order[cut:])]
    specs = [{"params": [names[i] for i in part], **hp} for part, hp in zip(parts, hps) if part]
    tx = KINDS[kind][1](**hps[0], param_groups=specs)
    ours = {donate: run_core(tx, prob, donate=donate)[0] for donate in (False, True)}
    params = [p.clone().requires_grad_() for p in prob["init"].values()]
    opt = KINDS[kind][0]([{"params": [params[i] for i in part], **hp} for part, hp in zip(parts, hps) if part],
                         foreach=True)
    for grads in prob["stream"]:
        for p, g in zip(params, grads.values()):
            p.grad = None if g is None else g.clone()
        opt.step()
    for name, p in zip(names, params):
        assert torch.equal(ours[False][name], p.detach()) and torch.equal(ours[True][name], p.detach()), name


def test_a_donated_sgd_step_keeps_the_record_once_every_buffer_exists() -> None:
    params = {"w": torch.ones(3), "b": torch.zeros(2)}
    grads = {"w": torch.full((3,), 0.5), "b": torch.ones(2)}
    tx = fo.sgd(0.1, momentum=0.9)
    _, first = tx.update(grads, tx.init(params), params, donate=True)
    buffers = first.momentum_buffer
    _, second = tx.update(grads, first, params, donate=True)
    assert second is first and all(a is b for a, b in zip(second.momentum_buffer, buffers))
    _, partial = tx.update({"w": grads["w"], "b": None}, second, params, donate=True)
    assert partial is first  # a missing gradient leaves its buffer alone
    _, pure = tx.update(grads, first, params)
    assert pure is not first and all(a is not b for a, b in zip(pure.momentum_buffer, buffers))


@settings(max_examples=50, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=8), st.data())
def test_with_grads_gather_scatter_pick_the_present_positions(present: list[bool], data: st.DataObject) -> None:
    n = len(present)
    grads = [torch.tensor(float(i)) if ok else None for i, ok in enumerate(present)]
    bucket = tuple(data.draw(st.permutations(range(n))))[: data.draw(st.integers(1, n))]
    idx = with_grads(bucket, grads)
    assert sorted(idx) == sorted(i for i in bucket if present[i])
    if len(bucket) < n or not all(present):
        assert list(idx) == [i for i in bucket if present[i]]  # the group's own order
    values = list(range(100, 100 + n))
    assert list(gather(values, idx)) == [values[i] for i in idx]
    target = list(values)
    scatter(target, idx, [-v for v in gather(values, idx)])
    assert target == [-v if i in idx else v for i, v in enumerate(values)]
