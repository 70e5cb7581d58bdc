"""IterTimerHook: data_time, time and ETA from the event clock (spec §6.2, A24)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.core.events import Event
from fengine.core.run import EventInfo, RunState
from fengine.hooks import IterTimerHook
from fengine.hooks.iter_timer_hook import IterTimerState, iter_timer_fn_hook
from fengine.registry import HOOKS
from fengine.testing import EventStep, RunScript, Simulation, check_hook, events


def clocked_train(max_iters: int, times: list[tuple[float, float]], start: float = 0.0) -> RunScript:
    """One train epoch whose iteration ``k`` starts at ``times[k][0]`` and ends at ``times[k][1]``."""
    steps = [EventStep(Event.BEFORE_TRAIN_EPOCH, 0, 0, EventInfo(time=start))]
    for k, (begin, end) in enumerate(times):
        steps.append(EventStep(Event.BEFORE_TRAIN_ITER, 0, k, EventInfo(batch_idx=k, time=begin)))
        steps.append(EventStep(Event.AFTER_TRAIN_ITER, 0, k, EventInfo(batch_idx=k, time=end)))
    return RunScript(tuple(steps), 1, max_iters, False, {"train": max_iters, "val": 4})


def test_a24_one_second_per_clock_read() -> None:
    # MMEngine's clock advancing 1 s per read: epoch start 0, then data at 2k+1 and step end at 2k+2.
    script = clocked_train(100, [(2 * k + 1.0, 2 * k + 2.0) for k in range(10)])
    sim = Simulation(IterTimerHook(), script.initial_state()).play(script)
    assert sim.message_hub.history["train/time"] == [2.0] * 10
    assert sim.message_hub.history["train/data_time"] == [1.0] * 10
    assert sim.message_hub.info["eta"] == 180.0


def test_val_eta_and_reset_per_epoch() -> None:
    hook = iter_timer_fn_hook("timer")
    run = RunState(dataloader_len={"val": 4})
    sim = Simulation(hook, run)
    etas = []
    for epoch in range(2):
        t0 = 100.0 * epoch
        sim.step(EventStep(Event.BEFORE_VAL_EPOCH, 0, 0, EventInfo(time=t0)))
        for b in range(4):
            sim.step(EventStep(Event.BEFORE_VAL_ITER, 0, 0, EventInfo(batch_idx=b, time=t0 + 2 * b + 1)))
            sim.step(EventStep(Event.AFTER_VAL_ITER, 0, 0, EventInfo(batch_idx=b, time=t0 + 2 * b + 2)))
            etas.append(sim.message_hub.info["eta"])
        sim.step(EventStep(Event.AFTER_VAL_EPOCH, 0, 0, EventInfo(time=t0 + 9)))
        assert sim.run_state.hook_states["timer"].eval_time == 0.0
    assert etas == [6.0, 4.0, 2.0, 0.0] * 2
    assert sim.message_hub.history["val/time"] == [2.0] * 8


@settings(max_examples=40, deadline=None)
@given(
    durations=st.lists(
        st.tuples(st.floats(0, 5, allow_subnormal=False), st.floats(0, 5, allow_subnormal=False)),
        min_size=1,
        max_size=12,
    ),
    extra=st.integers(0, 20),
)
def test_eta_is_mean_time_times_iterations_left(durations: list[tuple[float, float]], extra: int) -> None:
    times, now = [], 0.0
    for load, step in durations:
        times.append((now + load, now + load + step))
        now += load + step
    max_iters = len(durations) + extra
    script = clocked_train(max_iters, times)
    sim = Simulation(IterTimerHook(), script.initial_state()).play(script)
    spent = [load + step for load, step in durations]
    assert sim.message_hub.history["train/time"] == pytest.approx(spent)
    assert sim.message_hub.history["train/data_time"] == pytest.approx([d[0] for d in durations])
    assert sim.message_hub.info["eta"] == pytest.approx(sum(spent) / len(spent) * extra)


def test_running_sums_survive_resume() -> None:
    # Resumed state (from a checkpoint) carries the train sums: the ETA still averages them.
    state = IterTimerState(tick=0.0, train_time=40.0, train_iters=10)
    run = RunState(iter=10, max_iters=20, hook_states={"IterTimerHook": state})
    sim = Simulation(IterTimerHook(), run)
    sim.step(EventStep(Event.BEFORE_TRAIN_EPOCH, 0, 10, EventInfo(time=1000.0)))
    sim.step(EventStep(Event.AFTER_TRAIN_ITER, 0, 10, EventInfo(batch_idx=10, time=1004.0)))
    assert sim.message_hub.info["eta"] == pytest.approx(4.0 * 9)


def test_facade_reads_the_clock_on_direct_calls(monkeypatch: Any) -> None:
    ticks = iter(range(100))
    monkeypatch.setattr("time.time", lambda: float(next(ticks)))
    hook = HOOKS.build({"type": "IterTimerHook"})
    sim = Simulation(hook, RunState(max_iters=100))
    hook.before_train_epoch(sim)
    for k in range(10):
        hook.before_train_iter(sim, batch_idx=k)
        sim.run_state = attrs.evolve(sim.run_state, iter=k)
        hook.after_train_iter(sim, batch_idx=k)
    assert sim.message_hub.info["eta"] == 180.0
    assert hook.priority == "NORMAL"
    assert set(hook.get_triggered_stages()) >= {"before_val_iter", "after_test_epoch"}


def test_contract() -> None:
    check_hook(IterTimerHook(), scripts=events(), max_examples=15)
