"""LoggerHook: which iterations get a line, and the steps of scalar records (spec §6.4, A24)."""

from __future__ import annotations

import itertools
import json
import os
import re
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.core import effects as fx
from fengine.core.events import Event
from fengine.core.run import EventInfo, RunState
from fengine.hooks import LoggerHook
from fengine.registry import HOOKS
from fengine.testing import EventStep, RunScript, Simulation, check_hook, events


def train_lines(sim: Simulation) -> list[fx.LogStep]:
    return [e for e in sim.effects if isinstance(e, fx.LogStep) and e.mode == "train"]


def epoch_loop(epochs: int, per_epoch: int) -> RunScript:
    steps, it = [], 0
    for epoch in range(epochs):
        for b in range(per_epoch):
            steps.append(EventStep(Event.AFTER_TRAIN_ITER, epoch, it, EventInfo(batch_idx=b)))
            it += 1
    return RunScript(tuple(steps), epochs, it, True, {"train": per_epoch})


@pytest.mark.parametrize(
    ("per_epoch", "kwargs", "logged"),
    [
        (4, {"interval": 3}, [3, 7]),  # the 4th iteration of each epoch is not logged (A24)
        (4, {"interval": 3, "ignore_last": False}, [3, 4, 7, 8]),
        (9, {}, [9, 18]),  # 9 batches, default interval 10: the last one is logged
        (4, {"interval": 3, "by_epoch": False}, [3, 6]),  # counted over the whole run
    ],
)
def test_train_line_rules(per_epoch: int, kwargs: dict[str, object], logged: list[int]) -> None:
    script = epoch_loop(2, per_epoch)
    sim = Simulation(LoggerHook(**kwargs), script.initial_state()).play(script)  # type: ignore[arg-type]
    assert [e.step for e in train_lines(sim)] == logged
    assert all(e.kind == "iter" and e.scalars for e in train_lines(sim))


@settings(max_examples=50, deadline=None)
@given(script=events(max_iters_per_epoch=7, max_epochs=3, max_iters=20), interval=st.integers(1, 5), ignore_last=st.booleans(), by_epoch=st.booleans())
def test_a_line_exactly_where_the_rules_say(script: RunScript, interval: int, ignore_last: bool, by_epoch: bool) -> None:
    hook = LoggerHook(interval=interval, ignore_last=ignore_last, by_epoch=by_epoch)
    sim = Simulation(hook, script.initial_state()).play(script)
    n = script.dataloader_len["train"]
    expected = []
    for s in script.steps:
        if s.event is Event.AFTER_TRAIN_ITER:
            b = s.info.batch_idx
            assert b is not None
            counted = b if by_epoch else s.iter
            last = b + 1 == n
            if (counted + 1) % interval == 0 or (last and (not ignore_last or n <= interval)):
                expected.append((b, s.iter + 1))
    assert [(e.batch_idx, e.step) for e in train_lines(sim)] == expected
    val_lines = [e for e in sim.effects if isinstance(e, fx.LogStep) and e.mode == "val" and e.kind == "iter"]
    val_len = script.dataloader_len["val"]
    n_val = sum(s.event is Event.AFTER_VAL_EPOCH for s in script.steps)
    assert len(val_lines) == n_val * (val_len // interval)
    assert not any(e.scalars for e in val_lines)
    exp_names = [e for e in sim.effects if isinstance(e, fx.LogText) and e.message.startswith("Exp name:")]
    assert len(exp_names) == sum(s.event is Event.AFTER_TRAIN_ITER and s.info.batch_idx == n - 1 for s in script.steps)


@pytest.mark.parametrize(
    ("by_epoch_loop", "kwargs", "step"),
    [
        (True, {}, 2),  # epoch
        (False, {}, 10),  # iter: fengine's default in iteration-based runs
        (False, {"log_metric_by_epoch": True}, 0),  # explicitly MMEngine's choice: epoch (0)
        (True, {"log_metric_by_epoch": False}, 10),
        (True, {"by_epoch": False}, 10),
    ],
)
def test_validation_record_step(by_epoch_loop: bool, kwargs: dict[str, object], step: int) -> None:
    epoch = 2 if by_epoch_loop else 0
    run = RunState(epoch=epoch, iter=10, train_by_epoch=by_epoch_loop, dataloader_len={"val": 4})
    sim = Simulation(LoggerHook(**kwargs), run)  # type: ignore[arg-type]
    sim.step(EventStep(Event.AFTER_VAL_EPOCH, epoch, 10, EventInfo(metrics={"acc": 1.0})))
    assert sim.effects == [fx.LogStep("val", "epoch", 3, step=step, scalars=True)]


def test_test_summary_and_out_dir_export() -> None:
    hook = LoggerHook(out_dir="/shared", out_suffix=".log", keep_local=False)
    run = RunState(work_dir="/runs/exp/", log_dir="/runs/exp/20240101", dataloader_len={"test": 2})
    sim = Simulation(hook, run)
    for event in (Event.BEFORE_RUN, Event.AFTER_TEST_EPOCH, Event.AFTER_RUN):
        sim.step(EventStep(event, 0, 0, EventInfo(metrics={"acc": 1.0})))
    assert sim.effects == [
        fx.LogText(f"Text logs will be saved to {os.path.join('/shared', 'exp')} after the training process."),
        fx.LogStep("test", "epoch", 1, step=0, scalars=True),
        fx.ExportLogs("/runs/exp/20240101", "/shared/exp", (".log",), keep_local=False),
    ]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"interval": 0}, ValueError, "interval must be greater than 0"),
        ({"interval": 1.5}, TypeError, "interval"),
        ({"ignore_last": 1}, TypeError, "ignore_last"),
        ({"interval_exp_name": 0}, ValueError, "interval_exp_name"),
        ({"out_dir": 3}, TypeError, "out_dir"),
        ({"file_client_args": {}}, ValueError, "needs out_dir"),
        ({"out_dir": "x", "file_client_args": {}, "backend_args": {}}, ValueError, "cannot be set at the same time"),
        ({"out_suffix": [1]}, TypeError, "out_suffix"),
        ({"log_metric_by_epoch": "yes"}, TypeError, "log_metric_by_epoch"),
        ({"reset_flag": None}, TypeError, "reset_flag"),
    ],
)
def test_argument_errors(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        LoggerHook(**kwargs)  # type: ignore[arg-type]


def test_facade_and_contract() -> None:
    hook = HOOKS.build({"type": "LoggerHook", "interval": 2, "reset_flag": True})
    assert hook.priority == "BELOW_NORMAL" and hook.reset_flag and hook.out_suffix == (".json", ".log", ".py", "yaml")
    sim = Simulation(hook, RunState(iter=5, dataloader_len={"train": 100, "val": 4}))
    hook.after_train_iter(sim, batch_idx=5)
    hook.after_val_iter(sim, batch_idx=1)
    assert sim.effects == [fx.LogStep("train", "iter", 5, step=6, scalars=True), fx.LogStep("val", "iter", 1, scalars=False)]
    check_hook(hook, max_examples=10)


# -- end to end with the Runner: log lines and scalars.json (spec §6.4, A24) ---------------------

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runner"))
from runner_toys import toy_kwargs  # noqa: E402

import fengine.runner.hook_host as hook_host  # noqa: E402
from fengine.runner.runner import Runner  # noqa: E402

NUMBER = r"-?\d+\.\d{4}"


@pytest.fixture
def one_second_per_event(monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's clock, read once per event, advances one second per read."""
    ticks = itertools.count()
    monkeypatch.setattr(hook_host, "time", types.SimpleNamespace(time=lambda: float(next(ticks))))


def run_toy(tmp_path: Path, **overrides: Any) -> tuple[list[str], list[dict[str, Any]]]:
    kwargs = toy_kwargs(tmp_path, optim_wrapper={"optimizer": {"type": "SGD", "lr": 0.1}, "clip_grad": {"max_norm": 100}})
    kwargs.update(overrides)
    Runner(**kwargs).train()
    (log,) = tmp_path.glob("*/*.log")
    (scalars,) = tmp_path.glob("*/vis_data/scalars.json")
    lines = [line.split(" - ")[-1] for line in log.read_text().splitlines() if " - INFO - " in line]
    return lines, [json.loads(line) for line in scalars.read_text().splitlines()]


def test_epoch_mode_lines_and_json(tmp_path: Path, one_second_per_event: None) -> None:
    hooks = {"logger": {"type": "LoggerHook", "interval": 3}, "checkpoint": None}
    lines, records = run_toy(tmp_path, default_hooks=hooks)
    train = [line for line in lines if line.startswith("Epoch(train)")]
    assert len(train) == 2  # the 4th iteration of each epoch is not logged
    assert re.fullmatch(
        rf"Epoch\(train\) \[1\]\[3/4\]  lr: 1\.0000e-01  eta: 0:00:10  time: 2\.0000  data_time: 1\.0000  "
        rf"grad_norm: {NUMBER}  loss: {NUMBER}",
        train[0],
    )
    assert "Epoch(val) [1][3/4]    eta: 0:00:02  time: 2.0000  data_time: 1.0000  " in lines
    assert "Epoch(val) [1][4/4]    acc: 1  data_time: 1.0000  time: 2.0000" in lines
    assert lines[lines.index(train[0]) + 1].startswith("Exp name: ")
    first = records[0]
    assert (first["lr"], first["data_time"], first["time"], first["epoch"], first["iter"], first["step"]) == (
        0.1, 1.0, 2.0, 1, 3, 3,
    )
    assert list(first) == ["lr", "data_time", "grad_norm", "loss", "time", "epoch", "iter", "step"]
    assert [r for r in records if "acc" in r] == [
        {"acc": 1, "data_time": 1.0, "time": 2.0, "step": 1},
        {"acc": 1, "data_time": 1.0, "time": 2.0, "step": 2},
    ]


def test_iteration_mode_lines_and_validation_steps(tmp_path: Path, one_second_per_event: None) -> None:
    lines, records = run_toy(
        tmp_path,
        train_cfg={"by_epoch": False, "max_iters": 5, "val_interval": 3},
        log_processor={"by_epoch": False},
        default_hooks={"logger": {"type": "LoggerHook", "interval": 2}, "checkpoint": None},
    )
    assert re.fullmatch(
        rf"Iter\(train\) \[2/5\]  lr: 1\.0000e-01  eta: 0:00:06  time: 2\.0000  data_time: 1\.0000  "
        rf"grad_norm: {NUMBER}  loss: {NUMBER}",
        next(line for line in lines if line.startswith("Iter(train) [2/5]")),
    )
    assert lines.count("Iter(val) [4/4]    acc: 1  data_time: 1.0000  time: 2.0000") == 2
    # MMEngine records these at step 0; fengine at the iteration they were computed.
    assert [r for r in records if "acc" in r] == [
        {"acc": 1, "data_time": 1.0, "time": 2.0, "step": 3},
        {"acc": 1, "data_time": 1.0, "time": 2.0, "step": 5},
    ]


def test_file_client_args_warn_through_the_current_logger(tmp_path: Any) -> None:
    import logging

    from fengine.fileio import FileClient, LocalBackend
    from fengine.logging import MMLogger

    class Keep(logging.Handler):
        def __init__(self) -> None:
            super().__init__()
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    logger, keep = MMLogger.get_current_instance(), Keep()
    logger.addHandler(keep)
    try:
        legacy = LoggerHook(out_dir=str(tmp_path), file_client_args={"backend": "disk"})
    finally:
        logger.removeHandler(keep)
    assert [(r.levelno, r.getMessage()) for r in keep.records] == [
        (logging.WARNING, 'LoggerHook: "file_client_args" will be deprecated in future. Please use "backend_args" instead')
    ]
    assert isinstance(legacy.file_client, FileClient) and legacy.file_backend is legacy.file_client
    plain = LoggerHook(out_dir=str(tmp_path))
    assert type(plain.file_backend) is LocalBackend and not hasattr(LoggerHook(), "file_client")
    with pytest.raises(ValueError, match="unsupported storage backend 'petrel'"):
        LoggerHook(out_dir=str(tmp_path), backend_args={"backend": "petrel"})
