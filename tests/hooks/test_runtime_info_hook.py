"""RuntimeInfoHook: message-hub keys and values over runs (spec §6.1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings

from fengine.core import effects as fx
from fengine.core.events import Event
from fengine.core.run import EventInfo, RunState
from fengine.hooks import RuntimeInfoHook
from fengine.hooks.runtime_info_hook import is_scalar
from fengine.registry import HOOKS
from fengine.testing import EventStep, RunScript, Simulation, check_hook, events


@settings(max_examples=30, deadline=None)
@given(script=events(metric_names=("acc",)))
def test_hub_after_any_run(script: RunScript) -> None:
    meta = {"experiment_name": "exp", "seed": 7, "cfg": "a = 1", "dataset_meta": {"classes": ("x",)}}
    sim = Simulation(RuntimeInfoHook(enable_tensorboard=False), script.initial_state(meta=meta))
    sim.play(script)
    info, scalars = sim.message_hub.info, sim.message_hub.history
    # The 0-based counters of the last iteration, as MMEngine leaves them.
    assert info["iter"] == script.max_iters - 1
    assert info["epoch"] == (script.max_epochs - 1 if script.train_by_epoch else 0)
    assert (info["max_epochs"], info["max_iters"]) == (script.max_epochs, script.max_iters)
    assert (info["seed"], info["experiment_name"], info["cfg"]) == (7, "exp", "a = 1")
    assert info["dataset_meta"] == {"classes": ("x",)} and "mmengine_version" in info
    assert "loop_stage" not in info  # popped after train and after test
    assert len(scalars["train/loss"]) == script.max_iters
    n_val = sum(s.event is Event.AFTER_VAL_EPOCH for s in script.steps)
    assert len(scalars["val/acc"]) == n_val
    records = [e for e in sim.effects if isinstance(e, fx.RecordOptimizerScalars)]
    assert len(records) == script.max_iters


def test_loop_stage_inside_and_outside_training() -> None:
    sim = Simulation(RuntimeInfoHook(), RunState())
    stages = []
    for event in (Event.BEFORE_TRAIN, Event.BEFORE_VAL, Event.AFTER_VAL, Event.AFTER_TRAIN, Event.BEFORE_VAL):
        sim.step(EventStep(event, 0, 0))
        stages.append(sim.message_hub.info.get("loop_stage"))
    sim.step(EventStep(Event.AFTER_VAL, 0, 0))
    stages.append(sim.message_hub.info.get("loop_stage"))
    sim.step(EventStep(Event.BEFORE_TEST, 0, 0))
    stages.append(sim.message_hub.info.get("loop_stage"))
    assert stages == ["train", "val", "train", None, "val", None, "test"]


def test_metrics_split_into_scalars_and_infos_with_tensorboard() -> None:
    sim = Simulation(RuntimeInfoHook(), RunState(epoch=3, iter=12))
    metrics = {"acc": torch.tensor([0.5]), "top": np.float32(0.25), "cm": [[1, 0], [0, 1]], "n": 3}
    sim.step(EventStep(Event.AFTER_VAL_EPOCH, 3, 12, EventInfo(metrics=metrics)))
    assert sim.message_hub.history["val/acc"] == [0.5] and sim.message_hub.history["val/n"] == [3.0]
    assert sim.message_hub.info["val/cm"] == [[1, 0], [0, 1]]
    (board,) = [e for e in sim.effects if isinstance(e, fx.WriteTensorboard)]
    assert board == fx.WriteTensorboard({"val/acc": 0.5, "val/top": 0.25, "val/n": 3.0}, 3)
    sim.step(EventStep(Event.AFTER_TRAIN_ITER, 3, 12, EventInfo(outputs={"loss": torch.tensor(1.5)})))
    assert sim.effects[-1] == fx.WriteTensorboard({"train/loss": 1.5}, 13)
    sim.step(EventStep(Event.AFTER_TEST_EPOCH, 3, 12, EventInfo(metrics={"acc": 1.0})))
    assert sim.message_hub.history["test/acc"] == [1.0]


def test_no_tensorboard_effects_when_disabled() -> None:
    sim = Simulation(HOOKS.build({"type": "RuntimeInfoHook", "enable_tensorboard": False}), RunState())
    sim.step(EventStep(Event.AFTER_TRAIN_ITER, 0, 0, EventInfo(outputs={"loss": 1.0})))
    sim.step(EventStep(Event.AFTER_VAL_EPOCH, 1, 1, EventInfo(metrics={"acc": 1.0})))
    assert not any(isinstance(e, fx.WriteTensorboard) for e in sim.effects)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(1, True), (0.5, True), (np.float64(1), True), (np.ones(1), True), (np.ones(2), False),
     (torch.ones(1, 1), True), (torch.ones(2), False), ("a", False), ([1], False)],
)
def test_is_scalar(value: object, expected: bool) -> None:
    assert is_scalar(value) is expected


def test_facade() -> None:
    hook = RuntimeInfoHook()
    assert hook.priority == "VERY_HIGH" and hook.to_fn_hook("r").priority_value == 10
    sim = Simulation(hook, RunState(iter=4))
    hook.before_train_iter(sim, batch_idx=0)
    hook.after_train_iter(sim, batch_idx=0, outputs={"loss": 2.0})
    assert sim.message_hub.info["iter"] == 4 and sim.message_hub.history["train/loss"] == [2.0]
    with pytest.raises(TypeError, match="enable_tensorboard"):
        RuntimeInfoHook(enable_tensorboard="yes")  # type: ignore[arg-type]


def test_contract() -> None:
    check_hook(RuntimeInfoHook(), max_examples=15)
