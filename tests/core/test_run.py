"""RunState: ``replace`` and ``emit`` copy the record exactly as ``attrs.evolve`` does."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.core.effects import LogText, StopTraining
from fengine.core.run import RunState

FIELDS = [field.name for field in attrs.fields(RunState)]

#: A distinct new value for any field (the record holds no validators, so any object will do).
values = st.dictionaries(st.sampled_from(FIELDS), st.integers() | st.text(max_size=3), max_size=6)


def snapshot(run: RunState) -> list[Any]:
    return [getattr(run, name) for name in FIELDS]


@settings(max_examples=50, deadline=None)
@given(changes=values)
def test_replace_is_evolve(changes: dict[str, Any]) -> None:
    run = RunState(epoch=2, iter=7, hook_states={"a": 1}, effects=(StopTraining("x"),))
    before = snapshot(run)
    new = run.replace(**changes)
    expected = attrs.evolve(run, **changes)
    assert type(new) is RunState and new is not run
    for name in FIELDS:
        assert getattr(new, name) is getattr(expected, name)  # shared, not copied
    assert snapshot(run) == before  # the original is untouched
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        new.iter = 1  # the copy is as frozen as the original


def test_emit_appends_in_order_and_keeps_the_original() -> None:
    run = RunState(iter=3)
    first = run.emit(LogText("a"))
    second = first.emit(LogText("b"), StopTraining("c"))
    assert run.effects == ()
    assert first.effects == (LogText("a"),)
    assert second.effects == (LogText("a"), LogText("b"), StopTraining("c"))
    assert second.iter == 3 and second.hook_states is run.hook_states
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        second.effects = ()


def test_replace_names_an_unknown_field() -> None:
    with pytest.raises(TypeError, match=r"unknown field 'iters'; fields: epoch, iter, "):
        RunState().replace(iters=1)


#: Changes that mix the record's own fields with fields of its TrainState (``epoch``, ``iter``, ...).
mixed = st.dictionaries(
    st.sampled_from(["epoch", "iter", "hook_states", "max_iters", "meta", "stop_training"]),
    st.integers(0, 9) | st.dictionaries(st.sampled_from("ab"), st.integers(0, 3), max_size=2),
    max_size=4,
)


@settings(max_examples=50, deadline=None)
@given(changes=mixed, name=st.sampled_from("abc"), value=st.integers())
def test_state_fields_go_into_a_new_state_and_with_hook_state_is_replace(
    changes: dict[str, Any], name: str, value: int
) -> None:
    run = RunState(epoch=2, iter=7, hook_states={"a": 1}, max_iters=40)
    before, state_before = snapshot(run), run.state
    new = run.replace(**changes)
    for key in ["epoch", "iter", "hook_states", "max_iters", "meta", "stop_training"]:
        assert getattr(new, key) == changes.get(key, getattr(run, key))
    moved = changes.keys() & {"epoch", "iter", "hook_states"}
    assert (new.state is run.state) == (not moved)  # a new state exactly when one of its fields changed
    one = run.with_hook_state(name, value)
    assert one.hook_states == {**run.hook_states, name: value}
    assert [getattr(one, f) for f in FIELDS if f != "state"] == [getattr(run, f) for f in FIELDS if f != "state"]
    assert attrs.evolve(one.state, hook_states=run.hook_states).__dict__ == run.state.__dict__
    assert snapshot(run) == before and run.state is state_before and run.hook_states == {"a": 1}
