"""fengine.testing: the strategies produce legal runs and check_hook catches each broken contract."""

from __future__ import annotations

import importlib
import io
import random
import sys
from collections.abc import Sequence
from typing import Any

import attrs
import pytest
import torch
from hypothesis import Phase, given, settings
from hypothesis.stateful import run_state_machine_as_test

from fengine.core import effects as fx
from fengine.core.events import Event
from fengine.core.pipeline import FnHook
from fengine.core.run import EventInfo, RunState
from fengine.core.state import TrainState
from fengine.hooks import Hook
from fengine.testing import (
    ContractError,
    HookMachine,
    RunScript,
    Simulation,
    check_hook,
    events,
    run_states,
    train_states,
)


def counting_hook(**handlers: Any) -> FnHook[int]:
    """Counts train iterations; extra handlers replace or add events."""

    def count(run: RunState, own: int, info: EventInfo) -> tuple[RunState, int]:
        return run, own + 1

    on = {Event.AFTER_TRAIN_ITER: count}
    on.update({Event(k): v for k, v in handlers.items()})
    return FnHook(name="Counter", priority="NORMAL", init=0, on=on)


@given(events())
@settings(max_examples=60)
def test_events_are_legal_runs(script: RunScript) -> None:
    names = [s.event for s in script.steps]
    assert names[0] is Event.BEFORE_RUN and names[1] is Event.BEFORE_TRAIN and names[-1] is Event.AFTER_RUN
    train_iters = [s for s in script.steps if s.event is Event.AFTER_TRAIN_ITER]
    assert len(train_iters) == script.max_iters
    assert [s.iter for s in train_iters] == list(range(script.max_iters))  # iter counts completed iterations
    assert all(b.iter >= a.iter and b.epoch >= a.epoch for a, b in zip(script.steps, script.steps[1:], strict=False))
    assert [s.info.time for s in script.steps] == sorted(s.info.time for s in script.steps)
    # every `before_*` is closed by its `after_*` in LIFO order
    stack: list[str] = []
    for event in names:
        kind = event.value.split("_", 1)[1]
        if event.value.startswith("before"):
            stack.append(kind)
        else:
            assert stack.pop() == kind
    assert not stack
    # validation follows the last training iteration
    last_train = max(i for i, e in enumerate(names) if e is Event.AFTER_TRAIN_ITER)
    assert Event.AFTER_VAL_EPOCH in names[last_train:]
    per_epoch = script.dataloader_len["train"]
    if script.train_by_epoch:
        assert [s.info.batch_idx for s in train_iters] == [i % per_epoch for i in range(script.max_iters)]
    else:
        assert [s.info.batch_idx for s in train_iters] == list(range(script.max_iters))


@given(events())
@settings(max_examples=20)
def test_a_script_is_a_sequence_of_its_steps(script: RunScript) -> None:
    assert isinstance(script, Sequence)
    assert list(script) == list(script.steps) and len(script) == len(script.steps)
    assert script[0] is script.steps[0] and script[-1].event is Event.AFTER_RUN
    assert script[1:3] == script.steps[1:3] and script.steps[2] in script
    assert list(reversed(script)) == list(reversed(script.steps))
    assert script.index(script.steps[-1]) == len(script) - 1
    with pytest.raises(IndexError):
        script[len(script)]


@given(run_states())
@settings(max_examples=40)
def test_run_states_have_consistent_counters(run: RunState) -> None:
    assert 0 <= run.iter <= run.max_iters and 0 <= run.epoch <= run.max_epochs
    if run.train_by_epoch:
        assert run.max_iters == run.max_epochs * run.dataloader_len["train"]
    assert all(isinstance(t, torch.Tensor) and t.numel() > 0 for t in run.params.values())


def test_a_well_behaved_hook_passes() -> None:
    check_hook(counting_hook())


def test_the_seeds_custom_validation_hook_passes() -> None:
    class CustomValidationHook(Hook):
        def __init__(self, val_interval: int = 1) -> None:
            self.val_interval = val_interval

        def after_train_epoch(self, runner: Any) -> None:
            if (runner.epoch + 1) % self.val_interval == 0:
                runner.val()

    check_hook(CustomValidationHook(val_interval=2))


def _contract_of(hook: FnHook[Any] | Hook) -> str:
    # Detection is what these tests are about; shrinking to a minimal run is hypothesis's job.
    quick = settings(max_examples=15, deadline=None, database=None, phases=[Phase.generate])
    with pytest.raises(ContractError) as info:
        check_hook(hook, hypothesis_settings=quick)
    return info.value.contract


def test_mutating_the_run_state_is_caught() -> None:
    def scribble(run: RunState, own: int, info: EventInfo) -> tuple[RunState, int]:
        info.outputs["loss"].add_(1.0)
        return run, own

    assert _contract_of(counting_hook(after_train_iter=scribble)) == "no-mutation"


def test_mutating_own_state_in_place_is_caught() -> None:
    def append(run: RunState, own: list[int], info: EventInfo) -> tuple[RunState, list[int]]:
        own.append(1)
        return run, own

    hook = FnHook(name="Appender", priority=50, init=[], on={Event.AFTER_TRAIN_ITER: append})
    assert _contract_of(hook) == "no-mutation"


def test_unknown_effects_are_caught() -> None:
    @attrs.frozen
    class Launch:
        target: str

    def launch(run: RunState, own: int, info: EventInfo) -> tuple[RunState, int]:
        return run.emit(Launch("moon")), own  # type: ignore[arg-type]

    assert _contract_of(counting_hook(after_train_epoch=launch)) == "known-effects"


def test_nondeterminism_is_caught() -> None:
    def roll(run: RunState, own: int, info: EventInfo) -> tuple[RunState, int]:
        return run.emit(fx.LogText(str(random.random()))), own

    assert _contract_of(counting_hook(before_train=roll)) == "deterministic"


def test_crashing_on_a_legal_run_is_caught() -> None:
    def fragile(run: RunState, own: int, info: EventInfo) -> tuple[RunState, int]:
        assert info.metrics is not None
        return run, int(1 / (info.metrics["accuracy"] > -1 and own - own))

    assert _contract_of(counting_hook(after_val_epoch=fragile)) == "survives"


def test_state_that_cannot_be_checkpointed_is_caught() -> None:
    def remember(run: RunState, own: Any, info: EventInfo) -> tuple[RunState, Any]:
        return run, (lambda: 1)

    hook = FnHook(name="Closure", priority=50, init=None, on={Event.BEFORE_TRAIN: remember})
    assert _contract_of(hook) == "checkpoint-round-trip"


def test_invalid_priority_is_caught() -> None:
    class Bad(Hook):
        priority = "SOMETIMES"

    assert _contract_of(Bad()) == "priority"


@given(events(by_epoch=True, max_epochs=4, val_interval=1))
@settings(max_examples=20)
def test_simulation_stops_epoch_runs_at_the_next_epoch(script: RunScript) -> None:
    def stop(run: RunState, own: int, info: EventInfo) -> tuple[RunState, int]:
        return run.emit(fx.StopTraining("enough")), own

    sim = Simulation(counting_hook(after_val_epoch=stop), script.initial_state()).play(script)
    assert sim.stopped
    assert sim.run_state.hook_states["Counter"] == script.dataloader_len["train"]  # one epoch only


def _keeper(k: int, buggy: bool) -> FnHook[tuple[str, ...]]:
    """Saves a checkpoint every epoch and deletes the oldest beyond k (or forgets to)."""

    def save(run: RunState, kept: tuple[str, ...], info: EventInfo) -> tuple[RunState, tuple[str, ...]]:
        path = f"epoch_{run.epoch + 1}.pth"
        kept = (*kept, path)
        run = run.emit(fx.SaveCheckpoint(path))
        if len(kept) > k and not buggy:
            run = run.emit(fx.RemoveFile(kept[0]))
            kept = kept[1:]
        return run, kept

    return FnHook(name="Keeper", priority=90, init=(), on={Event.AFTER_TRAIN_EPOCH: save})


def test_hook_machine_checks_an_invariant_over_time() -> None:
    class KeepsTwo(HookMachine):
        def make_hook(self) -> FnHook[Any]:
            return _keeper(2, buggy=False)

        def check(self, sim: Simulation) -> None:
            assert len(sim.files) <= 2

    run_state_machine_as_test(KeepsTwo, settings=settings(max_examples=15, stateful_step_count=20))


def test_hook_machine_finds_a_broken_invariant() -> None:
    class Leaky(HookMachine):
        iters_per_epoch = 1

        def make_hook(self) -> FnHook[Any]:
            return _keeper(2, buggy=True)

        def check(self, sim: Simulation) -> None:
            assert len(sim.files) <= 2, f"{len(sim.files)} checkpoints kept"

    with pytest.raises(AssertionError, match="checkpoints kept"):
        quick = settings(max_examples=30, stateful_step_count=30, database=None, phases=[Phase.generate])
        run_state_machine_as_test(Leaky, settings=quick)


@given(train_states())
@settings(max_examples=25)
def test_train_states_are_consistent_and_checkpointable(state: TrainState[Any]) -> None:
    assert state.iter == state.step and 0 <= state.inner_iter <= state.step
    assert state.ema is not None and set(state.ema.params) == set(state.params)
    restored = TrainState.from_dict(_round_trip(state.to_dict()))
    assert all(torch.equal(restored.params[n], p) for n, p in state.params.items())


def _round_trip(value: Any) -> Any:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_the_kit_without_hypothesis_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "fengine.testing" or m.startswith("fengine.testing.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "hypothesis", None)  # makes `import hypothesis` fail
    kit = importlib.import_module("fengine.testing")  # RunnerTestCase and the comparisons need none
    assert kit.RunnerTestCase.__name__ == "RunnerTestCase"
    with pytest.raises(ImportError, match=r"fengine.testing.check_hook needs hypothesis.*pip install 'fengine\[testing\]'"):
        kit.check_hook  # noqa: B018
