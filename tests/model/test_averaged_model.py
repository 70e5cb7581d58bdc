"""Averaged-model façades: MMEngine's numbers and layout, torch parity, custom avg_func, resume."""

from __future__ import annotations

import logging
import re
import unittest

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from fengine.core import ema
from fengine.logging import MMLogger
from fengine.model.averaged_model import (
    BaseAveragedModel,
    ExponentialMovingAverage,
    MomentumAnnealingEMA,
    StochasticWeightAverage,
)
from fengine.registry import MODELS


class Scalar(nn.Module):
    """One scalar parameter ``w``, a float buffer ``f = 10·w`` and an int buffer ``n = w``."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.0))
        self.register_buffer("f", torch.tensor(0.0))
        self.register_buffer("n", torch.tensor(0, dtype=torch.long))

    def set(self, value: float) -> Scalar:
        with torch.no_grad():
            self.w.fill_(value)
            self.f.fill_(10 * value)
            self.n.fill_(int(value))
        return self

    def forward(self, x: Tensor) -> Tensor:
        return x * self.w


def run(averaged: BaseAveragedModel, source: Scalar, values: list[float]) -> list[float]:
    out = []
    for v in values:
        averaged.update_parameters(source.set(v))
        out.append(averaged.module.w.item())
    return out


def test_a6_numbers() -> None:
    src = Scalar()
    assert run(ExponentialMovingAverage(src, momentum=0.5), src, [1, 3, 5]) == [1.0, 2.0, 3.5]
    assert run(ExponentialMovingAverage(src, 0.5, interval=2), src, [1, 3, 5, 7]) == [1, 1, 3, 3]
    annealed = run(MomentumAnnealingEMA(src, momentum=0.1, gamma=4), src, [1, 3, 5, 7])
    assert annealed == pytest.approx([1.0, 2.6, 4.2, 5.8], abs=1e-6)
    assert run(StochasticWeightAverage(src), src, [1, 3, 5, 7]) == [1, 2, 3, 4]
    assert run(StochasticWeightAverage(src, interval=2), src, [1, 3, 5, 7, 9]) == [1, 1, 3, 3, 5]


def test_buffers_with_and_without_update_buffers() -> None:
    src = Scalar()
    averaged = ExponentialMovingAverage(src, momentum=0.5, update_buffers=True)
    floats, ints = [], []
    for v in [1, 3, 5]:
        averaged.update_parameters(src.set(v))
        floats.append(averaged.module.f.item())
        ints.append(averaged.module.n.item())
    assert floats == [10, 20, 35]
    assert ints == [1, 3, 5]  # MMEngine keeps 1: integer buffers follow the source here
    copying = ExponentialMovingAverage(src, momentum=0.5, interval=2)
    seen = []
    for v in [1, 3, 5, 7]:
        copying.update_parameters(src.set(v))
        seen.append(copying.module.f.item())
    assert seen == [10, 30, 50, 70]
    assert int(copying.steps) == 4


def test_state_dict_layout_and_steps_dtype() -> None:
    src = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    averaged = ExponentialMovingAverage(src, momentum=0.5)
    keys = list(averaged.state_dict())
    assert keys == ["steps", *(f"module.{k}" for k in src.state_dict())]
    assert averaged.steps.dtype == torch.long
    assert not any(p.requires_grad for p in averaged.parameters())
    # Same layout as the pure core's MMEngine export.
    state = ema.ExponentialMovingAverage(0.5).init(
        dict(src.named_parameters()), dict(src.named_buffers())
    )
    assert list(ema.ema_state_dict(state, order=src.state_dict())) == keys


def test_load_state_dict_resumes_the_count() -> None:
    src = Scalar()
    first = ExponentialMovingAverage(src, momentum=0.5)
    run(first, src, [1, 3])
    second = ExponentialMovingAverage(Scalar(), momentum=0.5)
    second.load_state_dict(first.state_dict())
    # steps == 2 after loading, so the next update averages instead of copying.
    assert run(second, src, [5]) == [3.5]
    assert int(second.steps) == 3


@pytest.mark.parametrize("momentum", [0, 1, 1.5])
def test_momentum_validation(momentum: float) -> None:
    with pytest.raises(AssertionError, match="momentum must be in range"):
        ExponentialMovingAverage(Scalar(), momentum=momentum)


def test_large_momentum_warns_and_gamma_is_validated() -> None:
    with unittest.TestCase().assertLogs(MMLogger.get_current_instance(), logging.WARNING) as logs:
        ExponentialMovingAverage(Scalar(), momentum=0.9)
    assert re.search(r"usually small, got 0.9.*momentum=0.1", logs.output[0])
    with pytest.raises(ValueError, match=r"gamma must be greater than 0 \(a number\), got 0"):
        MomentumAnnealingEMA(Scalar(), gamma=0)
    with pytest.raises(ValueError, match="interval must be an int >= 1, got 0"):
        StochasticWeightAverage(Scalar(), interval=0)


def test_forward_and_registry() -> None:
    src = Scalar().set(2.0)
    averaged = MODELS.build(dict(type="MomentumAnnealingEMA", model=src, momentum=0.1, gamma=4))
    assert isinstance(averaged, MomentumAnnealingEMA)
    assert averaged(torch.tensor(3.0)).item() == 6.0
    for name in ("ExponentialMovingAverage", "MomentumAnnealingEMA", "StochasticWeightAverage"):
        assert name in MODELS


class HalfWay(BaseAveragedModel):
    """A user subclass that only defines MMEngine's extension point."""

    def avg_func(self, averaged_param: Tensor, source_param: Tensor, steps: int) -> None:
        averaged_param.add_(source_param).mul_(0.5)


def test_custom_avg_func_subclass() -> None:
    src = Scalar()
    averaged = HalfWay(src, interval=1)
    assert isinstance(averaged.averager(), ema.CustomAverage)
    assert run(averaged, src, [2, 4, 8]) == [2.0, 3.0, 5.5]
    with pytest.raises(NotImplementedError, match="BaseAveragedModel must implement avg_func"):
        run(BaseAveragedModel(src), src, [1, 2])


@settings(max_examples=20)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 6), k=st.integers(1, 8))
def test_equals_torch_averaged_model(seed: int, n: int, k: int) -> None:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2))
    momentum = k / 16  # 1 - (1 - m) == m exactly, so torch's lerp weight equals ours
    reference = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(1 - momentum))
    averaged = ExponentialMovingAverage(model, momentum=momentum)
    for _ in range(n):
        with torch.no_grad():
            for p in model.parameters():
                p.mul_(0.9).add_(torch.randn_like(p))
        model(torch.randn(6, 3))
        reference.update_parameters(model)
        averaged.update_parameters(model)
    for (name, a), b in zip(
        averaged.module.state_dict().items(), reference.module.state_dict().values()
    ):
        assert torch.equal(a, b), name


class PerTensorEMA(ExponentialMovingAverage):
    averager = BaseAveragedModel.averager  # MMEngine's per-tensor avg_func path


class PerTensorAnnealing(MomentumAnnealingEMA):
    averager = BaseAveragedModel.averager


class PerTensorSWA(StochasticWeightAverage):
    averager = BaseAveragedModel.averager


@settings(max_examples=25)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 8), interval=st.integers(1, 3))
def test_avg_func_and_foreach_core_agree_bitwise(seed: int, n: int, interval: int) -> None:
    # Built-in classes run the foreach core; their avg_func (the per-tensor extension point)
    # must give the same bits.
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    pairs = [
        (
            ExponentialMovingAverage(model, 0.3, interval=interval),
            PerTensorEMA(model, 0.3, interval=interval),
        ),
        (
            MomentumAnnealingEMA(model, 0.05, gamma=3, interval=interval),
            PerTensorAnnealing(model, 0.05, gamma=3, interval=interval),
        ),
        (StochasticWeightAverage(model, interval), PerTensorSWA(model, interval)),
    ]
    assert isinstance(pairs[0][1].averager(), ema.CustomAverage)
    for _ in range(n):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        for fast, slow in pairs:
            fast.update_parameters(model)
            slow.update_parameters(model)
    for fast, slow in pairs:
        for x, y in zip(fast.module.parameters(), slow.module.parameters()):
            assert torch.equal(x, y)
