"""DistSamplerSeedHook: the train sampler's epoch before each train epoch (spec §6.3)."""

from __future__ import annotations

from hypothesis import given, settings

from fengine.core import effects as fx
from fengine.core.events import Event
from fengine.core.run import RunState
from fengine.hooks import DistSamplerSeedHook
from fengine.registry import HOOKS
from fengine.testing import RunScript, Simulation, check_hook, events


@settings(max_examples=30, deadline=None)
@given(script=events())
def test_one_set_epoch_per_train_epoch_with_the_0_based_epoch(script: RunScript) -> None:
    sim = Simulation(DistSamplerSeedHook(), script.initial_state()).play(script)
    expected = [s.epoch for s in script.steps if s.event is Event.BEFORE_TRAIN_EPOCH]
    assert sim.effects == [fx.SetSamplerEpoch(e) for e in expected]
    assert expected == (list(range(script.max_epochs)) if script.train_by_epoch else [0])


def test_facade() -> None:
    hook = HOOKS.build({"type": "DistSamplerSeedHook"})
    sim = Simulation(hook, RunState(epoch=3))
    hook.before_train_epoch(sim)
    assert sim.effects == [fx.SetSamplerEpoch(3)]
    assert hook.priority == "NORMAL" and hook.get_triggered_stages() == ["before_train_epoch"]
    check_hook(hook, max_examples=5)
