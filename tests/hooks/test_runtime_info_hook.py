"""RuntimeInfoHook: message-hub keys and values over runs (spec §6.1)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings

from fengine.core import effects as fx
from fengine.core.events import Event
from fengine.core.run import EventInfo, RunState
from fengine.hooks import RuntimeInfoHook
from fengine.hooks.runtime_info_hook import RuntimeInfoHandlers, RuntimeInfoState, is_scalar
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
    loss = torch.tensor(1.5)
    sim.step(EventStep(Event.AFTER_TRAIN_ITER, 3, 12, EventInfo(outputs={"loss": loss})))
    last = sim.effects[-1]
    assert isinstance(last, fx.WriteTensorboard) and last.step == 13
    assert last.values["train/loss"] is loss  # not read back here: the shell converts when it writes
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


# -- end to end with the Runner: the message hub after a default 3-epoch run (spec §6.1) ----------

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runner"))
from runner_toys import toy_kwargs  # noqa: E402

from fengine.runner.runner import Runner  # noqa: E402


def test_e2e_hub_after_three_epochs(tmp_path: Path) -> None:
    train_cfg = {"by_epoch": True, "max_epochs": 3, "val_interval": 1}
    runner = Runner(**toy_kwargs(tmp_path, train_cfg=train_cfg, default_hooks={"logger": None}))
    runner.train()
    saved = torch.load(tmp_path / "epoch_3.pth", weights_only=False)
    runtime, scalars = saved["message_hub"]["runtime_info"], saved["message_hub"]["log_scalars"]
    expected_runtime = {
        "cfg", "seed", "experiment_name", "mmengine_version", "loop_stage", "epoch", "iter",
        "max_epochs", "max_iters", "dataset_meta", "eta", "last_ckpt",
    }
    assert expected_runtime <= set(runtime)
    assert (runtime["epoch"], runtime["iter"], runtime["max_epochs"], runtime["max_iters"]) == (2, 11, 3, 12)
    assert runtime["loop_stage"] == "train" and runtime["seed"] == 0
    assert {"train/lr", "train/data_time", "train/loss", "train/time", "val/data_time", "val/time", "val/acc"} <= set(scalars)
    hub = runner.message_hub
    assert hub.get_scalar("train/lr").current() == 0.1
    assert len(hub.get_scalar("val/acc").data[0]) == 3
    assert hub.get_info("loop_stage") is None  # popped after training


@pytest.mark.parametrize(
    "value", [np.array([5]), np.ones((1, 1), dtype=np.uint8) * 5, torch.tensor([5]), np.int32(5), torch.tensor(5.0)]
)
def test_one_element_metrics_reach_tensorboard_as_floats(value: object) -> None:
    run, _ = RuntimeInfoHandlers().after_val_epoch(RunState(epoch=1, iter=4), RuntimeInfoState(), EventInfo(metrics={"acc": value}))
    scalars, board = run.effects
    assert isinstance(scalars, fx.UpdateScalars) and scalars.values == {"val/acc": value}
    assert isinstance(board, fx.WriteTensorboard) and board.values == {"val/acc": 5.0}
    assert type(board.values["val/acc"]) is float


class _Described(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    def __init__(self, metainfo: dict[str, object] | None) -> None:
        if metainfo is not None:
            self.metainfo = metainfo

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"inputs": torch.ones(2), "data_samples": torch.ones(())}


@pytest.mark.parametrize("metainfo", [None, {}, {"classes": ("cat", "dog")}])
def test_before_train_by_hand_records_the_training_data_metainfo(tmp_path: Path, metainfo: dict[str, object] | None) -> None:
    """Called by hand before ``train()``, ``before_train`` sees the run the configured loop starts."""
    data = torch.utils.data.DataLoader(_Described(metainfo), batch_size=2)
    runner = Runner(**toy_kwargs(tmp_path, train_dataloader=data, default_hooks={"logger": None}))
    hook = RuntimeInfoHook()
    hook.before_train(runner)
    hub = runner.message_hub
    assert (hub.get_info("loop_stage"), hub.get_info("max_epochs"), hub.get_info("max_iters")) == ("train", 2, 4)
    assert hub.get_info("dataset_meta") == metainfo
    assert ("dataset_meta" in hub.runtime_info) is (metainfo is not None)
