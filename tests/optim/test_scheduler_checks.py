"""Scheduler argument errors, the optimizer-order warnings and MMEngine's attribute names."""

from __future__ import annotations

import warnings

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.core import schedule as fs
from fengine.optim import CosineAnnealingLR, ExponentialLR, ReduceOnPlateauLR, StepLR, StepMomentum
from fengine.optim.scheduler import _ParamScheduler


def _sgd() -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.ones(2))], lr=0.1, momentum=0.9)


@pytest.mark.parametrize(
    ("build", "match"),
    [
        (lambda o: StepLR(o, step_size=3, begin=10, end=5), "end should be larger than begin"),
        (lambda o: StepLR.build_iter_from_epoch(o, step_size=2, epoch_length=-1), "epoch_length"),
        (lambda o: ReduceOnPlateauLR(o, by_epoch=False), "by_epoch"),
        (lambda o: ReduceOnPlateauLR(o, last_step=-2), "last_step"),
    ],
)
def test_argument_errors_are_value_and_assertion_errors(build, match):  # type: ignore[no-untyped-def]
    with pytest.raises(fs.ScheduleError, match=match) as info:
        build(_sgd())
    assert isinstance(info.value, ValueError) and isinstance(info.value, AssertionError)


def test_bad_optimizer_and_missing_initial_value_are_named():
    with pytest.raises(TypeError, match=r"should be an Optimizer.*got str"):
        StepLR("optimizer", step_size=1)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="param 'initial_lr' is not specified in param_groups"):
        StepLR(_sgd(), step_size=3, last_step=10)
    with pytest.raises(NotImplementedError, match="no schedule"):
        _ParamScheduler(_sgd(), param_name="lr")


def _order_warnings(run) -> list[str]:  # type: ignore[no-untyped-def]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run()
    return [str(w.message) for w in caught if "how-to-adjust-learning-rate" in str(w.message)]


def test_scheduler_stepped_before_its_optimizer_warns_once():
    optimizer = _sgd()
    scheduler = StepLR(optimizer, step_size=3)
    found = _order_warnings(scheduler.step)
    assert len(found) == 1 and "before `optimizer.step()`" in found[0]
    assert _order_warnings(scheduler.step) == []  # only the first step checks


def test_optimizer_step_then_scheduler_step_is_silent_and_counted():
    optimizer = _sgd()
    scheduler = ExponentialLR(optimizer, gamma=0.9)
    optimizer.step()
    optimizer.step()
    assert optimizer._global_step == 1  # type: ignore[attr-defined]
    assert _order_warnings(scheduler.step) == []
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 * 0.9)
    # a second scheduler on the same optimizer keeps the one counter
    ExponentialLR(optimizer, gamma=0.5)
    assert getattr(optimizer.step, "_with_counter", False)


def test_overridden_optimizer_step_warns():
    optimizer = _sgd()
    scheduler = ExponentialLR(optimizer, gamma=0.9)
    optimizer.step = lambda: None  # type: ignore[assignment,method-assign]
    found = _order_warnings(scheduler.step)
    assert len(found) == 1 and "overridden" in found[0]


@settings(max_examples=25, deadline=None)
@given(begin=st.integers(0, 50), length=st.integers(1, 100), t_max=st.none() | st.integers(1, 30))
def test_cosine_t_max_defaults_to_the_window(begin: int, length: int, t_max: int | None) -> None:
    scheduler = CosineAnnealingLR(_sgd(), T_max=t_max, begin=begin, end=begin + length)
    assert scheduler.T_max == (t_max if t_max is not None else length)


def test_momentum_scheduler_steps_and_names_the_requirement():
    optimizer = _sgd()
    scheduler = StepMomentum(optimizer, step_size=1, gamma=0.5)
    optimizer.step()
    scheduler.step()
    assert optimizer.param_groups[0]["momentum"] == pytest.approx(0.45)
    no_momentum = torch.optim.ASGD([torch.nn.Parameter(torch.ones(1))])
    with pytest.raises(ValueError, match="optimizer must support momentum"):
        StepMomentum(no_momentum, step_size=1)
