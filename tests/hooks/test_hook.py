"""The Hook façade: no-op defaults, MMEngine's helpers, and the adapter into the pipeline."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.core.events import STAGES, Event
from fengine.core.pipeline import FnHook, Pipeline, dispatch
from fengine.core.run import EventInfo, RunState
from fengine.hooks import Hook, adapt_class_hook, triggered_events


class FakeRunner:
    """The part of the shell that class hooks see: the current run state and counters."""

    def __init__(self) -> None:
        self.run_state = RunState()
        self.calls: list[tuple[str, dict[str, Any]]] = []

    @property
    def epoch(self) -> int:
        return self.run_state.epoch


def test_every_method_is_a_noop_by_default() -> None:
    hook, runner = Hook(), FakeRunner()
    for event in Event:
        info = EventInfo(batch_idx=0, checkpoint={})
        from fengine.hooks.hook import event_kwargs

        assert getattr(hook, event.value)(runner, **event_kwargs(event, info)) is None
    assert triggered_events(Hook) == frozenset()
    assert adapt_class_hook(hook, "Hook").on == {}


def test_stages_are_mmengines() -> None:
    assert Hook.stages[0] == "before_run" and Hook.stages[-1] == "after_run"
    assert Hook.stages.index("after_load_checkpoint") == 1
    assert set(Hook.stages) == {e.value for e in Event}
    assert len(STAGES) == len(Event)


def test_triggered_stages_cover_mode_generic_overrides() -> None:
    class Timer(Hook):
        def _before_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, mode: str = "train") -> None:
            pass

    class OnlyHelper(Hook):
        def is_last_train_epoch(self, runner: Any) -> bool:
            return True

    assert set(Timer().get_triggered_stages()) == {"before_train_iter", "before_val_iter", "before_test_iter"}
    assert OnlyHelper().get_triggered_stages() == []


def test_mode_generic_methods_receive_the_mode() -> None:
    seen: list[tuple[str, int | None]] = []

    class Generic(Hook):
        def _after_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None, mode: str = "train") -> None:
            seen.append((mode, batch_idx))

        def _after_epoch(self, runner: Any, mode: str = "train") -> None:
            seen.append((mode, None))

    pipeline = Pipeline.of([adapt_class_hook(Generic(), "Generic")])
    runner = FakeRunner()
    for event, idx in [(Event.AFTER_VAL_ITER, 2), (Event.AFTER_TEST_ITER, 0), (Event.AFTER_TRAIN_ITER, 5)]:
        dispatch(pipeline, event, runner.run_state, EventInfo(batch_idx=idx, runner=runner))
    dispatch(pipeline, Event.AFTER_VAL_EPOCH, runner.run_state, EventInfo(metrics={"a": 1}, runner=runner))
    assert seen == [("val", 2), ("test", 0), ("train", 5), ("val", None)]


def test_class_hooks_and_fn_hooks_share_one_priority_order() -> None:
    order: list[str] = []

    class High(Hook):
        priority = "HIGH"

        def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
            order.append("High")

    class Low(Hook):
        priority = "LOW"

        def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
            order.append("Low")

    def normal(run: RunState, own: None, info: EventInfo) -> tuple[RunState, None]:
        order.append("fn")
        return run, own

    fn = FnHook(name="fn", priority="NORMAL", init=None, on={Event.BEFORE_TRAIN_ITER: normal})
    pipeline = Pipeline.of([adapt_class_hook(Low(), "Low"), fn, adapt_class_hook(High(), "High")])
    runner = FakeRunner()
    dispatch(pipeline, Event.BEFORE_TRAIN_ITER, runner.run_state, EventInfo(batch_idx=0, runner=runner))
    assert order == ["High", "fn", "Low"]


def test_class_hook_sees_earlier_hooks_state_and_its_changes_flow_on() -> None:
    """A class hook that changes the runner (e.g. runs validation) is seen by the hooks after it."""

    def bump(run: RunState, own: None, info: EventInfo) -> tuple[RunState, None]:
        return run.emit(), own

    seen: list[int] = []

    class Mutating(Hook):
        def after_train_epoch(self, runner: Any) -> None:
            seen.append(runner.run_state.epoch)
            runner.run_state = RunState(epoch=runner.run_state.epoch + 10)

    def after(run: RunState, own: None, info: EventInfo) -> tuple[RunState, None]:
        seen.append(run.epoch)
        return run, own

    pipeline = Pipeline.of(
        [
            adapt_class_hook(Mutating(), "Mutating"),
            FnHook(name="after", priority="LOWEST", init=None, on={Event.AFTER_TRAIN_EPOCH: after}),
        ]
    )
    runner = FakeRunner()
    out = dispatch(pipeline, Event.AFTER_TRAIN_EPOCH, RunState(epoch=1), EventInfo(runner=runner))
    assert seen == [1, 11] and out.epoch == 11


def test_the_seeds_short_signatures_are_called_with_what_they_declare() -> None:
    """The seed documents `after_train_iter(self, runner)`; MMEngine passes more by keyword."""
    seen: list[Any] = []

    class Short(Hook):
        def after_train_iter(self, runner: Any) -> None:  # type: ignore[override]
            seen.append(runner)

    class Partial(Hook):
        def after_train_iter(self, runner: Any, batch_idx: int) -> None:  # type: ignore[override]
            seen.append(batch_idx)

    class Catchall(Hook):
        def after_train_iter(self, runner: Any, **kwargs: Any) -> None:  # type: ignore[override]
            seen.append(sorted(kwargs))

    pipeline = Pipeline.of(
        [adapt_class_hook(Short(), "Short"), adapt_class_hook(Partial(), "Partial"), adapt_class_hook(Catchall(), "Catchall")]
    )
    dispatch(pipeline, Event.AFTER_TRAIN_ITER, RunState(), EventInfo(batch_idx=3))
    assert seen == [None, 3, ["batch_idx", "data_batch", "outputs"]]


def test_type_errors_inside_a_hook_name_the_hook() -> None:
    class BadCall(Hook):
        def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
            len(batch_idx)  # type: ignore[arg-type]

    pipeline = Pipeline.of([adapt_class_hook(BadCall(), "BadCall")])
    with pytest.raises(TypeError, match=r"has no len\(\) in <") as info:
        dispatch(pipeline, Event.AFTER_TRAIN_ITER, RunState(), EventInfo(batch_idx=0))
    assert isinstance(info.value.__cause__, TypeError)


def test_checkpoint_dict_reaches_class_hooks_for_in_place_edits() -> None:
    class AddKey(Hook):
        def before_save_checkpoint(self, runner: Any, checkpoint: dict[str, Any]) -> None:
            checkpoint["extra"] = 1

    ckpt: dict[str, Any] = {}
    dispatch(Pipeline.of([adapt_class_hook(AddKey(), "AddKey")]), Event.BEFORE_SAVE_CHECKPOINT, RunState(), EventInfo(checkpoint=ckpt))
    assert ckpt == {"extra": 1}


def test_instance_priority_overrides_class_attribute() -> None:
    hook = Hook()
    hook.priority = 5
    assert adapt_class_hook(hook, "h").priority_value == 5


@given(st.integers(0, 50), st.integers(1, 7), st.integers(0, 10))
@settings(max_examples=60)
def test_every_n_helpers_match_mmengine(counter: int, n: int, start: int) -> None:
    hook = Hook()
    runner = SimpleNamespace(epoch=counter, iter=counter, max_epochs=counter + 1, max_iters=counter + 2)
    d = counter + 1 - start
    assert hook.every_n_epochs(runner, n, start) == (d >= 0 and d % n == 0)
    assert hook.every_n_train_iters(runner, n, start) == (d >= 0 and d % n == 0)
    assert hook.every_n_inner_iters(counter, n) == ((counter + 1) % n == 0)
    assert not hook.every_n_epochs(runner, 0)
    assert hook.is_last_train_epoch(runner)
    assert not hook.is_last_train_iter(runner)
    assert hook.end_of_epoch(range(counter + 1), counter)
