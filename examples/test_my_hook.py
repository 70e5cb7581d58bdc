"""Property-testing your own hooks with fengine.testing (run with `pytest examples/test_my_hook.py`).

Two hooks a user might write — the seed's class-style ``CustomValidationHook`` and a small
functional hook that stops training when the loss stops being finite or spikes — checked three
ways: the default contract (``check_hook``), a property over whole generated runs
(``@given(events(...))``), and an invariant over time (``HookMachine``).
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import torch
from hypothesis import given, settings
from hypothesis.stateful import run_state_machine_as_test

from fengine.core import Event, EventInfo, FnHook, RunState, plain
from fengine.core import effects as fx
from fengine.hooks import Hook
from fengine.testing import EventStep, HookMachine, RunScript, Simulation, check_hook, events


class CustomValidationHook(Hook):
    """The seed's example: validate every ``val_interval`` epochs and log high accuracy."""

    def __init__(self, val_interval: int = 1) -> None:
        self.val_interval = val_interval

    def after_train_epoch(self, runner: Any) -> None:
        if (runner.epoch + 1) % self.val_interval == 0:
            runner.val()


@plain.register("examples.SpikeState")  # the stable name checkpoints store it under
@attrs.frozen
class SpikeState:
    """Running mean of the loss and how many iterations it has seen."""

    mean: float = 0.0
    seen: int = 0


def spike_guard(factor: float = 10.0, warmup: int = 3) -> FnHook[SpikeState]:
    """Stop training when the loss is not finite, or exceeds ``factor`` times its running mean."""

    def after_iter(run: RunState, own: SpikeState, info: EventInfo) -> tuple[RunState, SpikeState]:
        loss = float(info.outputs["loss"])
        if not math.isfinite(loss) or (own.seen >= warmup and loss > factor * max(own.mean, 1e-12)):
            return run.emit(fx.StopTraining(f"loss {loss} at iteration {run.iter}")), own
        seen = own.seen + 1
        return run, SpikeState(mean=own.mean + (loss - own.mean) / seen, seen=seen)

    return FnHook(name="SpikeGuard", priority="LOW", init=SpikeState(), on={Event.AFTER_TRAIN_ITER: after_iter})


def test_custom_validation_hook_keeps_the_contract() -> None:
    check_hook(CustomValidationHook(val_interval=2))


def test_spike_guard_keeps_the_contract() -> None:
    check_hook(spike_guard())


@given(events(by_epoch=True, max_epochs=4))
@settings(max_examples=30)
def test_validation_is_requested_every_interval(script: RunScript) -> None:
    sim = Simulation(CustomValidationHook(val_interval=2), script.initial_state()).play(script)
    assert sim.val_requests == script.max_epochs // 2


@given(events())
@settings(max_examples=30)
def test_spike_guard_never_stops_on_finite_losses_without_spike_checks(script: RunScript) -> None:
    # The drawn losses are finite; with spike checks postponed past the run, nothing stops it.
    sim = Simulation(spike_guard(warmup=10**9), script.initial_state()).play(script)
    assert not sim.stopped
    state = sim.run_state.hook_states["SpikeGuard"]
    assert state.seen == script.max_iters


class SpikeGuardStopsOnNaN(HookMachine):
    """Once a NaN loss is seen the guard has asked to stop; before that it never has."""

    def make_hook(self) -> FnHook[SpikeState]:
        return spike_guard()

    def check(self, sim: Simulation) -> None:
        stops = [e for e in sim.effects if isinstance(e, fx.StopTraining)]
        assert len(stops) <= 1
        assert sim.stopped == bool(stops)


def test_spike_guard_over_time() -> None:
    run_state_machine_as_test(SpikeGuardStopsOnNaN, settings=settings(max_examples=10, stateful_step_count=15))


def test_spike_guard_stops_on_nan() -> None:
    sim = Simulation(spike_guard(), RunState(max_epochs=1, max_iters=2))
    nan = {"loss": torch.tensor(float("nan"))}
    sim.step(EventStep(Event.AFTER_TRAIN_ITER, epoch=0, iter=0, info=EventInfo(batch_idx=0, outputs=nan)))
    assert sim.stopped
