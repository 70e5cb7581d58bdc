"""AmpOptimWrapper on CPU: bfloat16 autocast unscaled, float16 with a CPU GradScaler, state dicts, errors."""

from __future__ import annotations

import copy
import io
from typing import Any

import pytest
import torch
from torch import nn

from fengine.optim import SGD, AmpOptimWrapper, OptimWrapperError


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 2))


def batches(n: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.randn(4, 6, generator=gen) for _ in range(n)]


def test_bf16_on_cpu_autocasts_without_a_scaler_and_matches_torch() -> None:
    model, ref = net(), net()
    wrapper = AmpOptimWrapper(optimizer=SGD(model.parameters(), lr=0.1, momentum=0.9), dtype="bfloat16",
                              accumulative_counts=2, clip_grad={"max_norm": 0.5})
    assert wrapper.loss_scaler is None and wrapper.cast_dtype is torch.bfloat16
    opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    for k, x in enumerate(batches(6), start=1):
        with wrapper.optim_context(model):
            out = model(x)
        assert out.dtype is torch.bfloat16
        wrapper.update_params(out.float().square().mean())
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ref_out = ref(x)
        (ref_out.float().square().mean() / 2).backward()
        if k % 2 == 0:
            torch.nn.utils.clip_grad_norm_(ref.parameters(), 0.5)
            opt.step()
            opt.zero_grad()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), ref.parameters()))
    assert "loss_scaler" not in wrapper.state_dict()
    assert model(batches(1)[0]).dtype is torch.float32  # autocast ends with the context


def test_fp16_uses_a_cpu_grad_scaler_like_torch_amp() -> None:
    model, ref = net(), net()
    wrapper = AmpOptimWrapper(optimizer=SGD(model.parameters(), lr=0.1), dtype=torch.float16, loss_scale=512.0,
                              clip_grad={"max_norm": 1.0})
    assert isinstance(wrapper.loss_scaler, torch.amp.GradScaler)
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=512.0)
    for x in batches(5):
        with wrapper.optim_context(model):
            loss = model(x).float().square().mean()
        wrapper.update_params(loss)
        with torch.autocast("cpu", dtype=torch.float16):
            ref_loss = ref(x).float().square().mean()
        scaler.scale(ref_loss).backward()
        scaler.unscale_(opt)
        torch.nn.utils.clip_grad_norm_(ref.parameters(), 1.0)
        scaler.step(opt)
        scaler.update(512.0)
        opt.zero_grad()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), ref.parameters()))
    assert wrapper.loss_scaler.get_scale() == 512.0  # a static scale stays put


def test_state_dict_round_trip_with_the_scaler() -> None:
    model = net()
    wrapper = AmpOptimWrapper(optimizer=SGD(model.parameters(), lr=0.1), dtype="float16",
                              loss_scale={"init_scale": 128.0, "growth_interval": 1})
    for x in batches(3):
        with wrapper.optim_context(model):
            loss = model(x).float().mean()
        wrapper.update_params(loss)
    state = wrapper.state_dict()
    buffer = io.BytesIO()
    torch.save(copy.deepcopy(state), buffer)
    buffer.seek(0)
    other = AmpOptimWrapper(optimizer=SGD(net().parameters(), lr=0.1), dtype="float16")
    other.load_state_dict(torch.load(buffer, weights_only=True))
    assert other.loss_scaler is not None and wrapper.loss_scaler is not None
    assert other.loss_scaler.state_dict() == wrapper.loss_scaler.state_dict() == state["loss_scaler"]
    assert other.loss_scaler.get_scale() != 128.0  # it grew, and the growth was restored


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"dtype": "float8"}, AssertionError, r"dtype must be one of \['float16', 'bfloat16', 'float32', 'float64'\]"),
        ({"dtype": 16}, OptimWrapperError, r"dtype must be None, a dtype name or a torch.dtype, got dtype=16"),
        ({"loss_scale": "static"}, TypeError, r"loss_scale must be 'dynamic', a number or a dict, got loss_scale='static'"),
    ],
)
def test_bad_arguments(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        AmpOptimWrapper(optimizer=SGD(net().parameters(), lr=0.1), **kwargs)


def test_default_dtype_on_cpu_is_bf16_and_needs_no_scaler() -> None:
    model = net()
    wrapper = AmpOptimWrapper(optimizer=SGD(model.parameters(), lr=0.1))
    assert wrapper.loss_scaler is None and wrapper.cast_dtype is None
    with wrapper.optim_context(model):
        assert model(batches(1)[0]).dtype is torch.bfloat16
