"""ParamSchedulerHook: which schedulers step when (spec §6.5)."""

from __future__ import annotations

from hypothesis import given, settings

from fengine.core import effects as fx
from fengine.core.events import Event
from fengine.core.run import RunState
from fengine.hooks import ParamSchedulerHook
from fengine.registry import HOOKS
from fengine.testing import RunScript, Simulation, check_hook, events


@settings(max_examples=30, deadline=None)
@given(script=events(metric_names=("loss",)))
def test_steps_follow_the_events(script: RunScript) -> None:
    sim = Simulation(ParamSchedulerHook(), script.initial_state()).play(script)
    expected: list[fx.StepSchedulers] = []
    for step in script.steps:
        if step.event is Event.AFTER_TRAIN_ITER:
            expected.append(fx.StepSchedulers(by_epoch=False))
        elif step.event is Event.AFTER_TRAIN_EPOCH:
            expected.append(fx.StepSchedulers(by_epoch=True))
        elif step.event is Event.AFTER_VAL_EPOCH:
            expected.append(fx.StepSchedulers(by_epoch=True, metrics=step.info.metrics))
    assert sim.effects == expected
    # An iteration-based loop steps epoch-based schedulers once, at the very end (as MMEngine).
    epoch_steps = sum(e == fx.StepSchedulers(by_epoch=True) for e in sim.effects)
    assert epoch_steps == (script.max_epochs if script.train_by_epoch else 1)


def test_validation_without_metrics_steps_nothing() -> None:
    hook = HOOKS.build({"type": "ParamSchedulerHook"})
    sim = Simulation(hook, RunState())
    hook.after_val_epoch(sim, metrics=None)
    hook.after_val_epoch(sim, metrics={"loss": 0.5})
    hook.after_train_iter(sim, batch_idx=0)
    hook.after_train_epoch(sim)
    assert sim.effects == [
        fx.StepSchedulers(by_epoch=True, metrics={"loss": 0.5}),
        fx.StepSchedulers(by_epoch=False),
        fx.StepSchedulers(by_epoch=True),
    ]
    assert hook.priority == "LOW" and hook.to_fn_hook("p").priority_value == 70


def test_contract() -> None:
    check_hook(ParamSchedulerHook(), max_examples=10)
