"""The built-in hooks' MMEngine methods: generated from their events, equal to their pure handlers."""

from __future__ import annotations

import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.core.effects import SetSamplerEpoch
from fengine.core.events import Event
from fengine.core.run import EventInfo, RunState
from fengine.hooks import (
    CheckpointHook,
    DistSamplerSeedHook,
    EarlyStoppingHook,
    EMAHook,
    EmptyCacheHook,
    Hook,
    IterTimerHook,
    LoggerHook,
    ParamSchedulerHook,
    ProfilerHook,
    RuntimeInfoHook,
    SyncBuffersHook,
    triggered_events,
)
from fengine.hooks.builtin import BuiltinHook
from fengine.hooks.hook import event_arg_names
from fengine.runner.runner import Runner
from fengine.testing import EventStep, Simulation
from fengine.testing.contracts import canonical

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runner"))
from runner_toys import toy_kwargs

#: One way to build each built-in hook, with every event of its class handled.
FACTORIES: dict[str, Callable[[], BuiltinHook]] = {
    "CheckpointHook": lambda: CheckpointHook(interval=2, save_best="acc", max_keep_ckpts=1),
    "DistSamplerSeedHook": DistSamplerSeedHook,
    "EMAHook": EMAHook,
    "EarlyStoppingHook": lambda: EarlyStoppingHook("acc", patience=1, restore_best_weights=True),
    "EmptyCacheHook": lambda: EmptyCacheHook(before_epoch=True, after_epoch=True, after_iter=True),
    "IterTimerHook": IterTimerHook,
    "LoggerHook": lambda: LoggerHook(interval=1),
    "ParamSchedulerHook": ParamSchedulerHook,
    "ProfilerHook": ProfilerHook,
    "RuntimeInfoHook": RuntimeInfoHook,
    "SyncBuffersHook": SyncBuffersHook,
}

CASES = [(name, event) for name, make in FACTORIES.items() for event in type(make()).handles]


def _run(epoch: int, iteration: int, world_size: int) -> RunState:
    weight = torch.arange(4.0).reshape(2, 2)
    return RunState(
        epoch=epoch,
        iter=iteration,
        max_epochs=3,
        max_iters=12,
        dataloader_len={"train": 4, "val": 2, "test": 2},
        work_dir="work_dir",
        log_dir="work_dir/log",
        world_size=world_size,
        meta={"experiment_name": "generated", "seed": 0},
        params={"linear.weight": weight},
    )


def _outcome(sim: Simulation, act: Callable[[], None]) -> Any:
    try:
        act()
    except Exception as error:  # both ways must fail alike
        return ("raised", type(error).__name__, str(error))
    return (
        canonical(dict(sim.run_state.hook_states)),
        canonical(sim.effects),
        sim.logs,
        sorted(sim.files),
        sim.stopped,
        canonical(sim.message_hub.history),
        canonical(sim.message_hub.info),
    )


@pytest.mark.parametrize("case", CASES, ids=[f"{name}.{event.value}" for name, event in CASES])
@settings(max_examples=4, deadline=None)
@given(
    epoch=st.integers(0, 2),
    iteration=st.integers(0, 11),
    batch_idx=st.integers(0, 3),
    loss=st.floats(-10, 10),
    acc=st.floats(0, 1),
    world_size=st.sampled_from([1, 2]),
    keyword=st.booleans(),
)
def test_a_generated_method_equals_the_pure_handler(
    case: tuple[str, Event],
    epoch: int,
    iteration: int,
    batch_idx: int,
    loss: float,
    acc: float,
    world_size: int,
    keyword: bool,
) -> None:
    name, event = case
    values = {
        "batch_idx": batch_idx,
        "data_batch": {"inputs": [batch_idx]},
        "outputs": {"loss": loss},
        "metrics": {"acc": acc},
        "checkpoint": {"meta": {"epoch": epoch, "iter": iteration}, "state_dict": {}},
    }
    arguments = {key: values[key] for key in event_arg_names(event)}
    now = 1000.0 + iteration

    hook = FACTORIES[name]()
    by_method = Simulation(hook, _run(epoch, iteration, world_size))
    method = getattr(hook, event.value)

    def call_method() -> None:
        if keyword:
            method(by_method, **arguments)
        else:
            method(by_method, *arguments.values())

    by_handler = Simulation(FACTORIES[name](), _run(epoch, iteration, world_size))
    step = EventStep(event, epoch, iteration, EventInfo(**arguments, time=now))  # type: ignore[arg-type]
    with mock.patch("time.time", return_value=now):
        assert _outcome(by_method, call_method) == _outcome(by_handler, lambda: by_handler.step(step))


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_a_method_exists_exactly_for_the_events_the_fn_hook_handles(name: str) -> None:
    hook = FACTORIES[name]()
    cls = type(hook)
    handled = set(hook.to_fn_hook(name).on)
    assert set(cls.handles) == set(cls.generated) == handled == set(triggered_events(cls))
    for event in Event:
        own = getattr(cls, event.value)
        assert (own is not getattr(Hook, event.value)) == (event in handled), event
    assert hook.get_triggered_stages() == [stage for stage in Hook.stages if Event(stage) in handled]


def test_settings_choose_among_the_declared_events() -> None:
    declared = set(EmptyCacheHook.handles)
    for flags in [(False, False, False), (True, False, False), (False, False, True), (False, True, False)]:
        on = set(EmptyCacheHook(*flags).to_fn_hook("e").on)
        assert on <= declared and len(on) == 3 * sum(flags)
    assert EmptyCacheHook(after_epoch=False).get_triggered_stages() == EmptyCacheHook().get_triggered_stages()


@pytest.mark.parametrize("case", CASES, ids=[f"{name}.{event.value}" for name, event in CASES])
def test_signatures_and_docstrings_are_mmengines(case: tuple[str, Event]) -> None:
    name, event = case
    cls = type(FACTORIES[name]())
    method = getattr(cls, event.value)
    mine, base = inspect.signature(method), inspect.signature(getattr(Hook, event.value))
    assert [(p.name, p.kind, p.default) for p in mine.parameters.values()] == [
        (p.name, p.kind, p.default) for p in base.parameters.values()
    ]
    assert list(mine.parameters)[:2] == ["self", "runner"]
    assert list(mine.parameters)[2:] == list(event_arg_names(event))
    assert method.__doc__ == cls.handles[event] and method.__doc__.endswith(".")
    assert method.__name__ == event.value and method.__qualname__ == f"{name}.{event.value}"
    assert method.__module__ == cls.__module__


def test_a_class_cannot_both_declare_and_define_an_event() -> None:
    with pytest.raises(TypeError, match="defines after_train_epoch by hand and lists it in handles"):

        class Twice(BuiltinHook):
            handles = {Event.AFTER_TRAIN_EPOCH: "Twice."}  # noqa: RUF012

            def after_train_epoch(self, runner: Any) -> None:
                pass

    with pytest.raises(TypeError, match="must map Event to a description"):

        class Unnamed(BuiltinHook):
            handles = {"after_train_epoch": "A string is not an Event."}  # noqa: RUF012


class CountingSeed(DistSamplerSeedHook):
    """MMEngine style: override a built-in's method, do something, then call ``super()``."""

    def __init__(self, call_super: bool = True) -> None:
        self.call_super = call_super
        self.seen: list[int] = []

    def before_train_epoch(self, runner: Any) -> None:
        self.seen.append(runner.epoch)
        if self.call_super:
            super().before_train_epoch(runner)


def _epochs(sim: Simulation, epochs: range) -> Simulation:
    for epoch in epochs:
        sim.step(EventStep(Event.BEFORE_TRAIN_EPOCH, epoch, 4 * epoch))
    return sim


@pytest.mark.parametrize("call_super", [True, False])
def test_the_pipeline_calls_a_subclass_override_once(call_super: bool) -> None:
    hook = CountingSeed(call_super)
    sim = _epochs(Simulation(hook, RunState(max_epochs=3)), range(3))
    assert hook.seen == [0, 1, 2]
    expected = [SetSamplerEpoch(e) for e in range(3)] if call_super else []
    assert sim.effects == expected
    assert hook.get_triggered_stages() == ["before_train_epoch"]


def test_a_direct_call_of_an_override_runs_it_once_and_the_handler_once() -> None:
    hook = CountingSeed()
    sim = Simulation(hook, RunState(epoch=5))
    hook.before_train_epoch(sim)
    assert hook.seen == [5] and sim.effects == [SetSamplerEpoch(5)]
    # A plain built-in called by hand runs its handler once too.
    plain = DistSamplerSeedHook()
    other = Simulation(plain, RunState(epoch=2))
    plain.before_train_epoch(other)
    assert other.effects == [SetSamplerEpoch(2)]


class PeekingCheckpoint(CheckpointHook):
    """Overrides ``after_train_epoch``: records the files before and after ``super()`` saved."""

    def __init__(self) -> None:
        super().__init__(interval=1)
        self.seen: list[tuple[int, bool, bool]] = []

    def after_train_epoch(self, runner: Any) -> None:
        path = os.path.join(runner.work_dir, f"epoch_{runner.epoch + 1}.pth")
        before = os.path.exists(path)
        super().after_train_epoch(runner)
        self.seen.append((runner.epoch, before, os.path.exists(path)))


def test_a_runner_calls_an_override_of_a_builtin_hook(tmp_path: Path) -> None:
    hook = PeekingCheckpoint()
    runner = Runner(**toy_kwargs(tmp_path, default_hooks={"checkpoint": hook, "logger": None}))
    runner.train()
    # MMEngine's order: the override runs, and ``super()`` saves before it returns.
    assert hook.seen == [(0, False, True), (1, False, True)]
    assert sorted(p.name for p in tmp_path.glob("epoch_*.pth")) == ["epoch_1.pth", "epoch_2.pth"]
