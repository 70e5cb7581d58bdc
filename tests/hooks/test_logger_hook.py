"""LoggerHook: which iterations get a line, and the steps of scalar records (spec §6.4, A24)."""

from __future__ import annotations

import os

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
        ({"out_dir": "x", "file_client_args": {}, "backend_args": {}}, ValueError, "cannot both"),
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
