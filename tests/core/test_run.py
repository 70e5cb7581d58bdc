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
