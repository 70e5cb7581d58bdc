"""The hook pipeline: stable priority order, purity of dispatch, error reporting."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.core import effects as fx
from fengine.core.events import Event
from fengine.core.pipeline import FnHook, HookError, Pipeline, dispatch
from fengine.core.priority import Priority
from fengine.core.run import EventInfo, RunState

priorities = st.one_of(
    st.integers(0, 100),
    st.sampled_from(list(Priority)),
    st.sampled_from([p.name.lower() for p in Priority]),
)


def _recorder(name: str, priority: Any, events: tuple[Event, ...] = (Event.AFTER_TRAIN_ITER,)) -> FnHook[tuple[str, ...]]:
    """A hook whose state logs the events it saw and that emits a LogText naming itself."""

    def handler(run: RunState, own: tuple[str, ...], info: EventInfo) -> tuple[RunState, tuple[str, ...]]:
        return run.emit(fx.LogText(name)), (*own, name)

    return FnHook(name=name, priority=priority, init=(), on=dict.fromkeys(events, handler))


@given(st.lists(priorities, min_size=0, max_size=12))
@settings(max_examples=60)
def test_call_order_is_the_stable_sort_by_priority(prios: list[Any]) -> None:
    hooks = [_recorder(f"h{i}", p) for i, p in enumerate(prios)]
    pipeline = Pipeline.of(hooks)
    run = dispatch(pipeline, Event.AFTER_TRAIN_ITER, RunState(), EventInfo())
    expected = [h.name for h in sorted(hooks, key=lambda h: h.priority_value)]
    assert [e.message for e in run.effects] == expected  # type: ignore[union-attr]
    assert [h.name for h in pipeline.hooks] == expected


@given(st.lists(priorities, min_size=1, max_size=8), priorities)
@settings(max_examples=40)
def test_add_equals_building_with_the_hook_last(prios: list[Any], extra: Any) -> None:
    hooks = [_recorder(f"h{i}", p) for i, p in enumerate(prios)]
    late = _recorder("late", extra)
    assert [h.name for h in Pipeline.of(hooks).add(late).hooks] == [
        h.name for h in Pipeline.of([*hooks, late]).hooks
    ]


@given(st.lists(priorities, min_size=0, max_size=8), priorities, st.sampled_from(list(Event)))
@settings(max_examples=60)
def test_a_hook_without_a_handler_leaves_the_event_unchanged(
    prios: list[Any], extra: Any, event: Event
) -> None:
    hooks = [_recorder(f"h{i}", p, events=(event,)) for i, p in enumerate(prios)]
    other = next(e for e in Event if e is not event)
    silent = _recorder("silent", extra, events=(other,))
    without = dispatch(Pipeline.of(hooks), event, RunState(), EventInfo())
    with_silent = dispatch(Pipeline.of([*hooks, silent]), event, RunState(), EventInfo())
    assert with_silent.effects == without.effects
    assert {k: v for k, v in with_silent.hook_states.items()} == dict(without.hook_states)


@given(st.lists(priorities, min_size=1, max_size=8))
@settings(max_examples=40)
def test_dispatch_never_mutates_its_inputs(prios: list[Any]) -> None:
    pipeline = Pipeline.of(_recorder(f"h{i}", p) for i, p in enumerate(prios))
    states = {"h0": ("before",)}
    run = RunState(iter=3, hook_states=states)
    info = EventInfo(batch_idx=1)
    snapshot = (attrs.asdict(run, recurse=False), dict(states), attrs.asdict(info, recurse=False))
    new = dispatch(pipeline, Event.AFTER_TRAIN_ITER, run, info)
    assert (attrs.asdict(run, recurse=False), dict(states), attrs.asdict(info, recurse=False)) == snapshot
    assert new is not run
    assert new.hook_states["h0"] == ("before", "h0")


def test_an_event_nobody_handles_returns_the_same_record() -> None:
    pipeline = Pipeline.of([_recorder("a", 50)])
    run = RunState()
    assert dispatch(pipeline, Event.BEFORE_RUN, run, EventInfo()) is run
    assert not pipeline.handles(Event.BEFORE_RUN)
    assert pipeline.handles(Event.AFTER_TRAIN_ITER)


def test_handler_returning_same_state_does_not_copy_hook_states() -> None:
    def idle(run: RunState, own: int, info: EventInfo) -> tuple[RunState, int]:
        return run, own

    pipeline = Pipeline.of([FnHook(name="idle", priority=50, init=0, on={Event.AFTER_TRAIN_ITER: idle})])
    run = RunState()
    assert dispatch(pipeline, Event.AFTER_TRAIN_ITER, run, EventInfo()) is run


def test_a_raising_handler_names_hook_and_event_and_chains() -> None:
    def boom(run: RunState, own: None, info: EventInfo) -> tuple[RunState, None]:
        raise ZeroDivisionError("no")

    pipeline = Pipeline.of([FnHook(name="Boom", priority=50, init=None, on={Event.BEFORE_TRAIN: boom})])
    with pytest.raises(HookError, match="'Boom' failed in before_train: ZeroDivisionError: no") as info:
        dispatch(pipeline, Event.BEFORE_TRAIN, RunState(), EventInfo())
    assert isinstance(info.value.__cause__, ZeroDivisionError)
    assert info.value.hook == "Boom" and info.value.event is Event.BEFORE_TRAIN


def test_duplicate_names_are_rejected() -> None:
    with pytest.raises(ValueError, match="duplicate hook name 'x'"):
        Pipeline.of([_recorder("x", 1), _recorder("x", 2)])


def test_two_hooks_owning_the_same_state_are_rejected_naming_both() -> None:
    first = attrs.evolve(_recorder("Ema", 1), owns={"the EMA weights"})
    second = attrs.evolve(_recorder("Ema#2", 2), owns=frozenset({"the EMA weights", "other"}))
    with pytest.raises(ValueError, match="hooks 'Ema' and 'Ema#2' would both own the EMA weights; a run can have only one"):
        Pipeline.of([first, second])
    # owning different things, or nothing, is fine
    third = attrs.evolve(_recorder("Other", 3), owns={"other"})
    assert [h.name for h in Pipeline.of([first, third, _recorder("Plain", 0)]).hooks] == ["Plain", "Ema", "Other"]
    assert isinstance(third.owns, frozenset)


def test_bad_hook_fields_are_rejected_at_construction() -> None:
    with pytest.raises(ValueError, match="between 0 and 100"):
        FnHook(name="a", priority=200, init=None)
    with pytest.raises(ValueError, match="name"):
        FnHook(name="", priority=1, init=None)
    with pytest.raises(TypeError, match="Event members"):
        FnHook(name="a", priority=1, init=None, on={"before_run": lambda r, s, i: (r, s)})  # type: ignore[dict-item]


def test_event_modes() -> None:
    assert Event.AFTER_VAL_ITER.mode == "val"
    assert Event.BEFORE_TRAIN_EPOCH.mode == "train"
    assert Event.AFTER_TEST.mode == "test"
    assert Event.BEFORE_RUN.mode is None
    assert Event.BEFORE_SAVE_CHECKPOINT.mode is None


def test_known_effects_cover_the_union() -> None:
    assert set(fx.KNOWN_EFFECTS) == set(fx.Effect.__args__)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("kind", "caught_as"),
    [(TypeError, TypeError), (ValueError, ValueError), (KeyError, KeyError), (AssertionError, AssertionError),
     (RuntimeError, RuntimeError), (ZeroDivisionError, ArithmeticError), (OSError, HookError)],
)
def test_hook_errors_keep_the_original_kind(kind: type[Exception], caught_as: type[Exception]) -> None:
    def boom(run: RunState, own: None, info: EventInfo) -> tuple[RunState, None]:
        raise kind("bad")

    pipeline = Pipeline.of([FnHook(name="Boom", priority=50, init=None, on={Event.AFTER_RUN: boom})])
    with pytest.raises(HookError) as info:
        dispatch(pipeline, Event.AFTER_RUN, RunState(), EventInfo())
    assert isinstance(info.value, caught_as)
    assert "hook 'Boom' failed in after_run" in str(info.value)
    assert info.value.__cause__ is info.value.error
