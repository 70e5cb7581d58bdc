"""fc.optim gradient stages: clipping vs torch.nn.utils, chain, accumulate, grad_norm, errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.core import optim as fo
from fengine.core.plain import from_plain, to_plain
from fengine.core.tree import versions


@st.composite
def grad_sets(draw: st.DrawFn) -> dict[str, torch.Tensor | None]:
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    scale = draw(st.sampled_from([1e-3, 1.0, 50.0]))
    out: dict[str, torch.Tensor | None] = {}
    for i in range(draw(st.integers(1, 5))):
        shape = draw(st.lists(st.integers(1, 9), max_size=3))
        dtype = draw(st.sampled_from([torch.float32, torch.float64]))
        out[f"g{i}"] = None if draw(st.booleans()) and i else (torch.randn(shape, generator=gen) * scale).to(dtype)
    return out


def torch_clipped(grads: dict[str, torch.Tensor | None], clip: str, **kw: float) -> tuple[list[torch.Tensor | None], object]:
    params = [torch.zeros(1) if g is None else torch.zeros_like(g) for g in grads.values()]
    for p in params:
        p.requires_grad_()
    for p, g in zip(params, grads.values()):
        p.grad = None if g is None else g.clone()
    fn = torch.nn.utils.clip_grad_norm_ if clip == "norm" else torch.nn.utils.clip_grad_value_
    result = fn(params, **kw)  # type: ignore[operator]
    return [p.grad for p in params], result


@settings(max_examples=40, deadline=None)
@given(grad_sets(), st.sampled_from([0.1, 1.0, 1e3]), st.sampled_from([2.0, 1.0, math.inf, 3.0]), st.booleans())
def test_clip_grad_norm_matches_torch(grads: dict[str, torch.Tensor | None], max_norm: float, p: float, donate: bool) -> None:
    expected, total = torch_clipped(grads, "norm", max_norm=max_norm, norm_type=p)
    tx = fo.clip_grad_norm(max_norm, p)
    before = versions(grads)
    out, state = tx.update(grads, tx.init({}), {}, donate=donate)
    if not donate:
        assert versions(grads) == before
    assert torch.equal(state.total_norm, total)  # type: ignore[arg-type]
    assert fo.grad_norm(state) is state.total_norm
    assert list(out) == [n for n, g in grads.items() if g is not None]  # no gradient, no entry
    for got, want in zip(map(out.get, grads), expected):
        assert (got is None and want is None) or torch.equal(got, want)  # type: ignore[arg-type]


@settings(max_examples=30, deadline=None)
@given(grad_sets(), st.sampled_from([1e-3, 0.5, 2.0]), st.booleans())
def test_clip_grad_value_matches_torch(grads: dict[str, torch.Tensor | None], value: float, donate: bool) -> None:
    expected, _ = torch_clipped(grads, "value", clip_value=value)
    before = versions(grads)
    out, _ = fo.clip_grad_value(value).update(grads, None, {}, donate=donate)
    if not donate:
        assert versions(grads) == before
    assert list(out) == [n for n, g in grads.items() if g is not None]  # no gradient, no entry
    for got, want in zip(map(out.get, grads), expected):
        assert (got is None and want is None) or torch.equal(got, want)  # type: ignore[arg-type]


def test_chain_clip_then_sgd_matches_torch_and_records_the_norm() -> None:
    gen = torch.Generator().manual_seed(0)
    init = {"w": torch.randn(4, 3, generator=gen), "b": torch.randn(3, generator=gen)}
    tx = fo.chain(fo.clip_grad_value(2.0), fo.clip_grad_norm(1.0), fo.sgd(0.1, momentum=0.9))
    params, state = dict(init), tx.init(init)
    tparams = [v.clone().requires_grad_() for v in init.values()]
    opt = torch.optim.SGD(tparams, lr=0.1, momentum=0.9, foreach=True)
    for _ in range(5):
        grads = {k: 3 * torch.randn(v.shape, generator=gen) for k, v in init.items()}
        for p, g in zip(tparams, grads.values()):
            p.grad = g.clone()
        torch.nn.utils.clip_grad_value_(tparams, 2.0)
        norm = torch.nn.utils.clip_grad_norm_(tparams, 1.0)
        opt.step()
        params, state = tx.update(grads, state, params)
        assert torch.equal(fo.grad_norm(state), norm)  # type: ignore[arg-type]
    assert all(torch.equal(params[k], p.detach()) for k, p in zip(init, tparams))
    assert fo.set_hyperparams(state, lr=0.5).states[-1].groups[0].hyper.lr == 0.5


@pytest.mark.parametrize("average", [True, False])
@pytest.mark.parametrize("donate", [False, True])
def test_accumulate_sums_every_n_then_steps(average: bool, donate: bool) -> None:
    gen = torch.Generator().manual_seed(1)
    init = {"w": torch.randn(6, generator=gen), "v": torch.randn(2, 2, generator=gen)}
    tx = fo.accumulate(fo.adam(0.1), every=3, average=average)
    params, state = {k: v.clone() for k, v in init.items()}, tx.init(init)
    tparams = [v.clone().requires_grad_() for v in init.values()]
    opt = torch.optim.Adam(tparams, lr=0.1, foreach=True)
    for call in range(1, 8):
        grads: dict[str, torch.Tensor | None] = {k: torch.randn(v.shape, generator=gen) for k, v in init.items()}
        if call == 2:
            grads["v"] = None
        for p, g in zip(tparams, grads.values()):
            if g is not None:
                p.grad = g.clone() if p.grad is None else p.grad + g
        before = versions(grads)
        new_params, state = tx.update(grads, state, params, donate=donate)
        if not donate:
            assert versions(grads) == before
        if call % 3:
            assert all(new_params[k] is params[k] for k in params) and state.count == call % 3
        else:
            if average:
                for p in tparams:
                    p.grad = torch.div(p.grad, 3.0)  # type: ignore[call-overload]
            opt.step()
            opt.zero_grad()
        params = new_params
    assert all(torch.equal(params[k], p.detach()) for k, p in zip(init, tparams))
    assert fo.hyperparams(state)[0]["lr"] == 0.1
    assert fo.hyperparams(fo.set_hyperparams(state, betas=(0.5, 0.9)))[0]["betas"] == (0.5, 0.9)


def test_transform_errors_are_clear() -> None:
    with pytest.raises(TypeError, match=r"must end with an optimizer such as sgd\(\.\.\.\), got nothing"):
        fo.chain()
    with pytest.raises(TypeError, match=r"last argument of chain\(\.\.\.\) must be an optimizer.*"
                       r"got a gradient stage \(returns='grads'\)"):
        fo.chain(fo.clip_grad_norm(1.0))
    with pytest.raises(TypeError, match=r"argument 0 is an optimizer; only the last"):
        fo.chain(fo.sgd(0.1), fo.sgd(0.1))
    with pytest.raises(TypeError, match=r"accumulate\(tx\) must be an optimizer.*returns='grads'"):
        fo.accumulate(fo.clip_grad_value(1.0), every=2)
    with pytest.raises(ValueError, match=r"every must be an int >= 1, got every=0"):
        fo.accumulate(fo.sgd(0.1), every=0)
    with pytest.raises(ValueError, match=r"max_norm must be >= 0"):
        fo.clip_grad_norm(-1.0)
    with pytest.raises(ValueError, match=r"no optimizer param groups in a ClipNormState"):
        fo.set_hyperparams(fo.ClipNormState(), lr=0.1)
    state = fo.sgd(0.1).init({"a": torch.zeros(1)})
    with pytest.raises(KeyError, match=r"unknown hyper-parameter\(s\) \['betas'\].*accepted"):
        fo.set_hyperparams(state, betas=(0.9, 0.9))
    with pytest.raises(IndexError, match=r"group=1 is out of range: the state has 1 param groups"):
        fo.set_hyperparams(state, group=1, lr=0.1)
    nan = {"a": torch.tensor([math.nan])}
    with pytest.raises(RuntimeError, match=r"total norm of order 2.0 of the gradients is nan"):
        fo.clip_grad_norm(1.0, error_if_nonfinite=True).update(nan, fo.ClipNormState(), {})
    assert fo.grad_norm(state) is None


def test_states_round_trip_through_a_weights_only_checkpoint(tmp_path: Path) -> None:
    gen = torch.Generator().manual_seed(4)
    params = {"a": torch.randn(3, generator=gen), "b": torch.randn(2, 2, generator=gen)}
    inner = fo.adamw(0.1, amsgrad=True, param_groups=[{"params": ["a"]}, {"params": ["b"], "lr": 0.2}])
    tx = fo.accumulate(fo.chain(fo.clip_grad_norm(1.0), inner), every=2)
    state = tx.init(params)
    for _ in range(3):
        params, state = tx.update({k: torch.randn(v.shape, generator=gen) for k, v in params.items()}, state, params)
    torch.save(to_plain(state), tmp_path / "opt.pth")
    loaded = from_plain(torch.load(tmp_path / "opt.pth", weights_only=True))
    assert fo.hyperparams(loaded) == fo.hyperparams(state) and loaded.count == state.count == 1
    grads = {k: torch.randn(v.shape, generator=gen) for k, v in params.items()}
    expected, _ = tx.update(grads, state, params)
    got, _ = tx.update(grads, loaded, params)
    assert all(torch.equal(expected[k], got[k]) for k in params)


def test_a_train_step_refuses_a_gradient_stage_as_its_optimizer() -> None:
    from fengine.core.step import make_train_step

    with pytest.raises(TypeError, match=r"make_train_step's tx must be an optimizer.*returns='grads'"):
        make_train_step(torch.nn.Linear(2, 1), lambda view, batch: view(batch).sum(), fo.clip_grad_norm(1.0))
