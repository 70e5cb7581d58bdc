"""Cadences: compiled dispatch calls exactly the handlers the naive fold over every hook would."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.core import effects as fx
from fengine.core.cadence import AnyOf, Ask, Cadence, Every, Last
from fengine.core.events import Event
from fengine.core.pipeline import FnHook, Pipeline, dispatch
from fengine.core.run import EventInfo, RunState
from fengine.hooks import (
    CheckpointHook,
    EmptyCacheHook,
    IterTimerHook,
    LoggerHook,
    ParamSchedulerHook,
    RuntimeInfoHook,
)
from fengine.hooks.param_scheduler_hook import ITERATION_SCHEDULERS
from fengine.testing.simulation import RunScript
from fengine.testing.strategies import events


def _reference(spec: tuple[Any, ...], run: RunState, own: int, batch_idx: int | None) -> bool:
    """The cadences' meaning written out by hand (MMEngine's every_n_* and is_last_* helpers)."""
    kind = spec[0]
    done = {"iter": run.iter + 1, "epoch": run.epoch + 1, "batch": (batch_idx or 0) + 1}
    if kind == "every":
        _, n, counter, start = spec
        return done[counter] - start >= 0 and (done[counter] - start) % n == 0
    if kind == "last":
        _, counter = spec
        total = {"iter": run.max_iters, "epoch": run.max_epochs, "batch": run.dataloader_len.get("train", -1)}
        return done[counter] == total[counter]
    if kind == "ask":  # every other call the hook acted on
        return own % 2 == 0
    return any(_reference(part, run, own, batch_idx) for part in spec[1])


def _cadence(spec: tuple[Any, ...]) -> Cadence:
    kind = spec[0]
    if kind == "every":
        return Every(spec[1], spec[2], spec[3])
    if kind == "last":
        return Last(spec[1])
    if kind == "ask":
        return Ask(lambda run, own, batch_idx: own % 2 == 0)
    return AnyOf(_cadence(part) for part in spec[1])


counters = st.sampled_from(["iter", "epoch", "batch"])
leaf = st.one_of(
    st.tuples(st.just("every"), st.integers(1, 4), counters, st.integers(0, 3)),
    st.tuples(st.just("last"), counters),
    st.just(("ask",)),
)
specs = st.one_of(leaf, st.tuples(st.just("any"), st.lists(leaf, max_size=3)))
EVENTS = (Event.BEFORE_TRAIN_ITER, Event.AFTER_TRAIN_ITER, Event.AFTER_TRAIN_EPOCH, Event.AFTER_VAL_ITER)


def _hook(name: str, priority: int, gated: dict[Event, tuple[Any, ...]], calls: list[str]) -> FnHook[int]:
    """A hook that acts (an effect naming it and the counters; its count + 1) where its specs say."""

    def handler_for(event: Event) -> Any:
        spec = gated.get(event)

        def handler(run: RunState, own: int, info: EventInfo) -> tuple[RunState, int]:
            calls.append(name)
            if spec is not None and not _reference(spec, run, own, info.batch_idx):
                return run, own
            return run.emit(fx.LogText(f"{name} {event.value} {run.epoch} {run.iter} {info.batch_idx}")), own + 1

        return handler

    on = {event: handler_for(event) for event in EVENTS}
    return FnHook(name=name, priority=priority, init=0, on=on, when={e: _cadence(s) for e, s in gated.items()})


def _play(pipeline: Pipeline, script: RunScript, **changes: Any) -> tuple[list[str], dict[str, Any]]:
    run, seen = script.initial_state(**changes), []
    for step in script.steps:
        run = run.replace(epoch=step.epoch, iter=step.iter)
        run = dispatch(pipeline, step.event, run, step.info)
        seen += [repr(e) for e in run.effects]
        run = run.replace(effects=())
    return seen, dict(run.hook_states)


@given(
    st.lists(
        st.tuples(st.integers(0, 100), st.dictionaries(st.sampled_from(EVENTS), specs, max_size=3)),
        min_size=1,
        max_size=5,
    ),
    events(max_epochs=3, max_iters=8),
)
@settings(max_examples=30, deadline=None)
def test_compiled_dispatch_equals_the_naive_fold(hooks: list[Any], script: RunScript) -> None:
    compiled_calls: list[str] = []
    naive_calls: list[str] = []
    compiled = Pipeline.of(_hook(f"h{i}", p, g, compiled_calls) for i, (p, g) in enumerate(hooks))
    naive = attrs.evolve(
        Pipeline.of(_hook(f"h{i}", p, g, naive_calls) for i, (p, g) in enumerate(hooks)), gates={}
    )
    effects, states = _play(compiled, script)
    assert (effects, states) == _play(naive, script)
    # The naive fold calls every handler at every firing; the compiled one only where it acts.
    assert len(naive_calls) == sum(len(naive.by_event[s.event]) for s in script.steps)
    assert len(compiled_calls) == len(effects)


@given(
    st.integers(1, 4),
    st.booleans(),
    st.booleans(),
    st.integers(1, 5),
    st.sampled_from([-1, 1, 2, 3]),
    st.sampled_from([True, False, None]),
    st.booleans(),
    st.integers(0, 3),
    st.booleans(),
    events(max_epochs=3, max_iters=10),
)
@settings(max_examples=30, deadline=None)
def test_builtin_cadences_change_no_result(
    interval: int,
    by_epoch: bool,
    ignore_last: bool,
    exp_interval: int,
    ckpt_interval: int,
    ckpt_by_epoch: bool | None,
    save_last: bool,
    save_begin: int,
    iteration_schedulers: bool,
    script: RunScript,
) -> None:
    hooks = [
        RuntimeInfoHook(enable_tensorboard=False),
        IterTimerHook(),
        LoggerHook(interval, ignore_last=ignore_last, by_epoch=by_epoch, interval_exp_name=exp_interval),
        ParamSchedulerHook(),
        CheckpointHook(interval=ckpt_interval, by_epoch=ckpt_by_epoch, save_last=save_last, save_begin=save_begin),
        EmptyCacheHook(after_iter=True),
    ]
    compiled = Pipeline.of(h.to_fn_hook(type(h).__name__) for h in hooks)
    assert compiled.gates  # the logger, checkpoint and scheduler hooks declare theirs
    naive = attrs.evolve(compiled, gates={})
    meta = {**script.initial_state().meta, ITERATION_SCHEDULERS: iteration_schedulers}
    assert _play(compiled, script, meta=meta) == _play(naive, script, meta=meta)


def test_cadence_checks_its_arguments() -> None:
    with pytest.raises(ValueError, match=r"Every\.n must be a positive int, got 0"):
        Every(0)
    with pytest.raises(ValueError, match=r"Every\.start must be an int >= 0, got -1"):
        Every(2, start=-1)
    with pytest.raises(ValueError, match="counter must be one of iter, epoch, batch, got 'step'"):
        Last("step")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="AnyOf parts must be cadences"):
        AnyOf([3])  # type: ignore[list-item]


def test_when_names_only_handled_events_and_takes_cadences() -> None:
    handler = lambda run, own, info: (run, own)  # noqa: E731
    with pytest.raises(ValueError, match=r"'h': when.*AFTER_TRAIN_EPOCH.*it handles: AFTER_TRAIN_ITER"):
        FnHook("h", 50, None, on={Event.AFTER_TRAIN_ITER: handler}, when={Event.AFTER_TRAIN_EPOCH: Every(2)})
    with pytest.raises(TypeError, match=r"when\[AFTER_TRAIN_ITER\] must be a cadence"):
        FnHook("h", 50, None, on={Event.AFTER_TRAIN_ITER: handler}, when={Event.AFTER_TRAIN_ITER: 2})  # type: ignore[dict-item]


def test_an_event_with_no_handler_due_is_not_due() -> None:
    handler = lambda run, own, info: (run.emit(fx.LogText("x")), own)  # noqa: E731
    hook = FnHook("h", 50, None, on={Event.AFTER_TRAIN_ITER: handler}, when={Event.AFTER_TRAIN_ITER: Every(3)})
    pipeline = Pipeline.of([hook])
    due = [pipeline.due(Event.AFTER_TRAIN_ITER, RunState(iter=i)) for i in range(6)]
    assert due == [False, False, True, False, False, True]
    assert not pipeline.due(Event.BEFORE_TRAIN_ITER, RunState())
    assert Pipeline.of([attrs.evolve(hook, when={})]).due(Event.AFTER_TRAIN_ITER, RunState())


def test_a_cadence_of_its_own_kind_is_asked() -> None:
    class OddIterations:
        def due(self, run: RunState, own: Any, batch_idx: int | None) -> bool:
            return run.iter % 2 == 1

    handler = lambda run, own, info: (run.emit(fx.LogText(str(run.iter))), own)  # noqa: E731
    hook = FnHook("h", 50, None, on={Event.AFTER_TRAIN_ITER: handler}, when={Event.AFTER_TRAIN_ITER: OddIterations()})
    pipeline = Pipeline.of([hook])
    seen = [e.message for i in range(6) for e in dispatch(pipeline, Event.AFTER_TRAIN_ITER, RunState(iter=i), EventInfo()).effects]  # type: ignore[union-attr]
    assert seen == ["1", "3", "5"]
