"""EmptyCacheHook: EmptyCache effects at the chosen points of train, val and test."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.core.effects import EmptyCache
from fengine.core.events import Event
from fengine.core.pipeline import Pipeline, dispatch
from fengine.core.run import EventInfo, RunState
from fengine.hooks import Hook
from fengine.hooks.empty_cache_hook import EmptyCacheHook, empty_cache_fn_hook
from fengine.registry import HOOKS
from fengine.testing import check_hook


def count(pipeline: Pipeline, events: list[Event]) -> int:
    run = RunState()
    for event in events:
        run = dispatch(pipeline, event, run, EventInfo(batch_idx=0))
    assert all(isinstance(e, EmptyCache) for e in run.effects)
    return len(run.effects)


def train_epoch(iters: int) -> list[Event]:
    its = [Event.BEFORE_TRAIN_ITER, Event.AFTER_TRAIN_ITER] * iters
    return [Event.BEFORE_TRAIN_EPOCH, *its, Event.AFTER_TRAIN_EPOCH]


def loop(mode: str, iters: int) -> list[Event]:
    its = [Event(f"before_{mode}_iter"), Event(f"after_{mode}_iter")] * iters
    return [
        Event(f"before_{mode}"),
        Event(f"before_{mode}_epoch"),
        *its,
        Event(f"after_{mode}_epoch"),
        Event(f"after_{mode}"),
    ]


def test_spec_scenario_counts_five() -> None:
    # Two epochs, validation after the last, then runner.test() and runner.val().
    events = [
        Event.BEFORE_RUN,
        Event.BEFORE_TRAIN,
        *train_epoch(4),
        *train_epoch(4),
        *loop("val", 4),
        Event.AFTER_TRAIN,
        Event.AFTER_RUN,
        *loop("test", 4),
        *loop("val", 4),
    ]
    assert count(Pipeline.of([EmptyCacheHook().to_fn_hook("E")]), events) == 5
    every = EmptyCacheHook(before_epoch=True, after_epoch=True, after_iter=True)
    assert count(Pipeline.of([every.to_fn_hook("E")]), events) == 10 + 20


@settings(max_examples=50)
@given(
    events=st.lists(st.sampled_from(list(Event)), max_size=40),
    before_epoch=st.booleans(),
    after_epoch=st.booleans(),
    after_iter=st.booleans(),
)
def test_one_effect_per_enabled_point(
    events: list[Event], before_epoch: bool, after_epoch: bool, after_iter: bool
) -> None:
    fn = empty_cache_fn_hook(
        "E", before_epoch=before_epoch, after_epoch=after_epoch, after_iter=after_iter
    )
    enabled = {
        ("before", "epoch"): before_epoch,
        ("after", "epoch"): after_epoch,
        ("after", "iter"): after_iter,
    }
    expected = sum(
        1
        for e in events
        if e.mode is not None
        and enabled.get((e.value.split("_")[0], e.value.split("_")[-1]), False)
    )
    assert count(Pipeline.of([fn]), events) == expected


class Host:
    def __init__(self) -> None:
        self.run_state = RunState()
        self.events: list[Event] = []

    def run_hook(self, hook: Hook, event: Event, info: EventInfo) -> None:
        self.events.append(event)
        single = Pipeline.of([hook.to_fn_hook("E")])
        self.run_state = dispatch(single, event, self.run_state, info)


def test_facade() -> None:
    hook = EmptyCacheHook(before_epoch=True, after_iter=True)
    assert HOOKS.get("EmptyCacheHook") is EmptyCacheHook and hook.priority == "NORMAL"
    assert set(hook.get_triggered_stages()) == {
        f"{when}_{mode}_{what}"
        for mode in ("train", "val", "test")
        for when, what in (("before", "epoch"), ("after", "epoch"), ("after", "iter"))
    }
    host = Host()
    hook.before_test_epoch(host)
    hook.after_val_iter(host, batch_idx=0)
    hook.after_train_epoch(host)
    assert host.events == [Event.BEFORE_TEST_EPOCH, Event.AFTER_VAL_ITER, Event.AFTER_TRAIN_EPOCH]
    assert host.run_state.effects == (EmptyCache(), EmptyCache(), EmptyCache())
    with pytest.raises(TypeError, match="EmptyCacheHook after_iter must be a bool, got 1"):
        EmptyCacheHook(after_iter=1)  # type: ignore[arg-type]


def test_default_hook_contract() -> None:
    check_hook(EmptyCacheHook(before_epoch=True, after_iter=True), max_examples=10)


# -- end to end with the Runner ----------------------------------------------------------------

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runner"))
from runner_toys import ToyMetric, loader, toy_kwargs  # noqa: E402

from fengine.runner import interpreter  # noqa: E402
from fengine.runner.runner import Runner  # noqa: E402


def test_runner_empties_the_cache_five_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # On CPU emptying the cache does nothing; count the effects the runner carries out instead.
    calls: list[int] = []
    monkeypatch.setitem(interpreter._HANDLERS, EmptyCache, lambda runner, effect: calls.append(1))
    runner = Runner(
        **toy_kwargs(
            tmp_path,
            train_cfg={"by_epoch": True, "max_epochs": 2, "val_interval": 2},
            test_dataloader=loader(),
            test_cfg={},
            test_evaluator=ToyMetric(),
            custom_hooks=[EmptyCacheHook()],
        )
    )
    runner.train()
    assert len(calls) == 3  # two train epochs and the validation after the last
    runner.test()
    runner.val()
    assert len(calls) == 5
