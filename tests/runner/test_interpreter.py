"""The effects interpreter: every effect type has a handler that does what its record says."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from runner_toys import ToyMetric, ToyModel, loader, toy_kwargs

from fengine import dist
from fengine.core import effects as fx
from fengine.core.events import Event
from fengine.core.pipeline import FnHook
from fengine.core.run import EventInfo, RunState
from fengine.hooks import Hook
from fengine.runner import interpreter
from fengine.runner.checkpoint import read_checkpoint
from fengine.runner.runner import Runner

_NO_DEFAULTS = dict.fromkeys(("runtime_info", "timer", "sampler_seed", "logger", "param_scheduler", "checkpoint"))


def _runner(tmp_path: Any, **overrides: Any) -> Runner:
    runner = Runner(**toy_kwargs(tmp_path, default_hooks=_NO_DEFAULTS, **overrides))
    runner.train_loop  # noqa: B018 - built as train() would
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    return runner


def _apply(runner: Runner, *effects: Any) -> RunState:
    """Carry ``effects`` out as if one hook of an event emitted them, then end the event."""
    mark = len(runner.hook_host.event_end)
    runner.hook_host.end_event(runner.hook_host.carry_out(runner.run_state.emit(*effects)), mark)
    return runner.run_state


def test_every_known_effect_has_exactly_one_handler() -> None:
    assert set(interpreter._HANDLERS) == set(fx.KNOWN_EFFECTS)


def test_unknown_effects_are_refused(tmp_path: Any) -> None:
    with pytest.raises(TypeError, match="unknown effect 'bogus'"):
        _apply(_runner(tmp_path), "bogus")


def test_message_hub_effects(tmp_path: Any) -> None:
    runner = _runner(tmp_path)
    _apply(runner, fx.UpdateScalars({"train/loss": torch.tensor(2.5)}), fx.UpdateInfo({"a": 1, "b": 2}, pop=("a",)))
    assert runner.message_hub.get_scalar("train/loss").current() == 2.5
    assert runner.message_hub.get_info("a") is None and runner.message_hub.get_info("b") == 2
    _apply(runner, fx.RecordOptimizerScalars())
    assert runner.message_hub.get_scalar("train/lr").current() == 0.1
    runner.optim_wrapper = type("Bad", (), {"get_lr": lambda self: [0.1]})()
    with pytest.raises(TypeError, match=r"get_lr\(\)` should return a dict"):
        _apply(runner, fx.RecordOptimizerScalars())


def test_stop_training_and_effects_are_cleared(tmp_path: Any) -> None:
    runner = _runner(tmp_path)
    run = _apply(runner, fx.StopTraining("patience"))
    assert run.stop_training and runner.train_loop.stop_training and run.effects == ()


def test_step_schedulers(tmp_path: Any) -> None:
    schedulers = [
        {"type": "MultiStepLR", "milestones": [1], "by_epoch": True},
        {"type": "LinearLR", "start_factor": 0.5, "by_epoch": False, "end": 4},
        {"type": "ReduceOnPlateauLR", "monitor": "loss", "patience": 0, "by_epoch": True},
    ]
    runner = _runner(tmp_path, param_scheduler=schedulers)
    runner.param_schedulers = runner.build_param_scheduler(runner.param_schedulers)
    epoch_step, iter_step, plateau = runner.param_schedulers
    before = (epoch_step.last_step, iter_step.last_step, plateau.last_step)
    _apply(runner, fx.StepSchedulers(by_epoch=False))
    assert (epoch_step.last_step, iter_step.last_step, plateau.last_step) == (before[0], before[1] + 1, before[2])
    _apply(runner, fx.StepSchedulers(by_epoch=True, metrics={"loss": 1.0}))
    assert (epoch_step.last_step, plateau.last_step) == (before[0], before[2] + 1)
    runner.param_schedulers = 3
    with pytest.raises(TypeError, match="should be list of ParamScheduler"):
        _apply(runner, fx.StepSchedulers(by_epoch=True))


def test_sampler_epoch_cache_and_buffers(tmp_path: Any, monkeypatch: Any) -> None:
    data = {"dataset": {"type": "ToyDataset"}, "sampler": {"type": "DefaultSampler", "shuffle": True}, "batch_size": 3}
    runner = _runner(tmp_path, train_dataloader=data)
    _apply(runner, fx.SetSamplerEpoch(3))
    assert runner.train_dataloader.sampler.epoch == 3
    emptied: list[int] = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(1))
    _apply(runner, fx.EmptyCache())
    assert emptied == []  # no CUDA here: nothing to empty
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    _apply(runner, fx.EmptyCache())
    assert emptied == [1]
    reduced: list[tuple[torch.Tensor, str]] = []
    monkeypatch.setattr(dist, "all_reduce", lambda t, op="sum": reduced.append((t, op)))
    runner.model.register_buffer("running", torch.ones(2))
    _apply(runner, fx.SyncBuffers())
    assert reduced == []
    monkeypatch.setattr(dist, "is_distributed", lambda: True)
    _apply(runner, fx.SyncBuffers())
    assert [op for _, op in reduced] == ["mean"] and reduced[0][0] is runner.model.running


def test_load_weights_copies_into_the_live_model(tmp_path: Any) -> None:
    runner = _runner(tmp_path)
    runner.hook_host.follow_model(runner.model)
    _apply(runner, fx.LoadWeights({"linear1.weight": torch.full((2, 2), 3.0)}))
    assert torch.equal(runner.model.linear1.weight, torch.full((2, 2), 3.0))
    with pytest.raises(KeyError, match=r"\['nope'\]"):
        _apply(runner, fx.LoadWeights({"nope": torch.zeros(1)}))


def test_files_checkpoints_and_publishing(tmp_path: Any) -> None:
    runner = _runner(tmp_path)
    with pytest.raises(ValueError, match="outside before_save_checkpoint"):
        _apply(runner, fx.AddToCheckpoint("k", 1))

    class Extra(Hook):
        def before_save_checkpoint(self, runner: Any, checkpoint: dict[str, Any]) -> None:
            runner.run_state = runner.run_state.emit(fx.AddToCheckpoint("extra", 7))

    runner.register_hook(Extra())
    path = str(tmp_path / "a.pth")
    runner.run_hook(_Emitter([fx.SaveCheckpoint(path, meta={"epoch": 5, "iter": 9}, update_last=True)]), Event.AFTER_TRAIN, EventInfo())
    checkpoint = read_checkpoint(path)
    assert checkpoint["extra"] == 7 and (checkpoint["meta"]["epoch"], checkpoint["meta"]["iter"]) == (5, 9)
    assert (tmp_path / "last_checkpoint").read_text() == path
    _apply(runner, fx.PublishCheckpoint(path, ("meta", "extra")))
    (published,) = [p for p in os.listdir(tmp_path) if p.startswith("a-")]
    assert list(read_checkpoint(str(tmp_path / published))) == ["meta", "extra"]
    _apply(runner, fx.RemoveFile(path), fx.RemoveFile(str(tmp_path / "never.pth")))
    assert not os.path.exists(path)
    with pytest.raises(TypeError, match=r"unexpected keyword arguments \['bogus'\]"):
        _apply(runner, fx.SaveCheckpoint(path, extra={"bogus": 1}))


class _Emitter(Hook):
    """A hook whose pure handler emits the given effects after training."""

    def __init__(self, effects: list[Any]) -> None:
        self.effects = effects

    def to_fn_hook(self, name: str) -> FnHook[None]:
        return FnHook(name=name, priority="NORMAL", init=None, on={Event.AFTER_TRAIN: lambda run, own, info: (run.emit(*self.effects), own)})


def test_logging_effects(tmp_path: Any) -> None:
    runner = _runner(tmp_path, test_dataloader=loader(), test_cfg={}, test_evaluator=ToyMetric())
    runner.test_loop  # noqa: B018
    runner.message_hub.update_scalar("val/acc", 0.5)
    _apply(runner, fx.LogText("hello there"), fx.LogStep("val", "epoch", 3, step=2, scalars=True))
    log = (tmp_path / runner.timestamp / f"{runner.timestamp}.log").read_text()
    assert "hello there" in log and "Epoch(val) [0][4/4]    acc: 0.5000" in log
    scalars = (tmp_path / runner.timestamp / "vis_data" / "scalars.json").read_text().splitlines()
    assert json.loads(scalars[-1]) == {"acc": 0.5, "step": 2}
    runner.message_hub.update_scalar("test/acc", 0.75)
    runner.message_hub.update_info("test/names", ["a", "b"])
    _apply(runner, fx.LogStep("test", "epoch", 3, scalars=True))
    assert json.loads((tmp_path / runner.timestamp / f"{runner.timestamp}.json").read_text()) == {"acc": 0.75, "names": ["a", "b"]}
    with pytest.raises(ValueError, match=r"LogStep\.kind"):
        _apply(runner, fx.LogStep("val", "batch", 0))
    _apply(runner, fx.WriteTensorboard({"loss": 1.0}, step=1), fx.WriteTensorboard({"loss": 1.0}, step=2))
    log = (tmp_path / runner.timestamp / f"{runner.timestamp}.log").read_text()
    # RuntimeInfoHook's default, not the user's request: only a DEBUG line (a configured
    # TensorboardVisBackend warns; tests/visualization/test_vis_backend.py)
    assert "tensorboard is not installed" not in log


def test_tensorboard_values_are_read_only_when_written(tmp_path: Any) -> None:
    runner = _runner(tmp_path)
    written: list[tuple[str, Any, int]] = []

    class Writer:
        def add_scalar(self, key: str, value: Any, step: int) -> None:
            written.append((key, value, step))

    runner._effects.tensorboard = Writer()
    _apply(runner, fx.WriteTensorboard({"train/loss": torch.tensor(0.25), "train/n": 3}, step=7))
    assert written == [("train/loss", 0.25, 7), ("train/n", 3.0, 7)]
    assert all(type(value) is float for _, value, _ in written)


def test_export_logs(tmp_path: Any) -> None:
    runner = _runner(tmp_path / "work")
    runner.logger.info("line")
    target = tmp_path / "out"
    _apply(runner, fx.ExportLogs(runner.log_dir, str(target), (".log",), keep_local=False))
    assert (target / f"{runner.timestamp}.log").read_text().strip().endswith("line")
    assert not os.path.exists(os.path.join(runner.log_dir, f"{runner.timestamp}.log"))


def test_profiler_session(tmp_path: Any) -> None:
    runner = _runner(tmp_path)
    trace = str(tmp_path / "trace.json")
    _apply(runner, fx.ProfilerAction("start", {"activities": ["cpu"], "record_shapes": True, "json_trace_path": trace}))
    assert runner._effects.profiler.active
    ToyModel()(torch.randn(3, 2))
    _apply(runner, fx.ProfilerAction("step"), fx.ProfilerAction("export"))
    assert not runner._effects.profiler.active and json.loads(Path(trace).read_text())["traceEvents"]
    with pytest.raises(ValueError, match="unknown options"):
        _apply(runner, fx.ProfilerAction("start", {"with_modulez": True}))
    with pytest.raises(ValueError, match="'start', 'step' or 'export'"):
        _apply(runner, fx.ProfilerAction("pause"))
