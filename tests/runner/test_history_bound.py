"""The run's message hub keeps only what its log windows read, and the log lines do not change."""

from __future__ import annotations

from typing import Any

import pytest
from runner_toys import toy_kwargs

from fengine.hooks import Hook
from fengine.logging import MessageHub
from fengine.runner import history_bound
from fengine.runner.history_bound import MIN_HISTORY, MMENGINE_HISTORY, history_length
from fengine.runner.log_processor import LogProcessor
from fengine.runner.runner import Runner

_CUSTOM = [
    {"data_src": "loss", "log_name": "loss_max5", "method_name": "max", "window_size": 5},
    {"data_src": "loss", "log_name": "loss_epoch", "method_name": "mean", "window_size": "epoch"},
    {"data_src": "lr", "log_name": "lr_min3", "method_name": "min", "window_size": 3},
]


class Twin(Hook):
    """Feeds an unbounded copy of the hub's scalars (sharing its runtime info) and renders every
    log line from both hubs."""

    priority = "LOWEST"

    def __init__(self) -> None:
        self.twin = MessageHub.get_instance("history-bound-twin")
        self.lines: list[tuple[str, str]] = []
        self.stored: list[int] = []

    def before_run(self, runner: Any) -> None:
        hub, twin = runner.message_hub, self.twin
        twin._runtime_info = hub.runtime_info
        original = hub.update_scalar

        def tee(key: str, value: Any, count: int = 1, resumed: bool = True) -> None:
            original(key, value, count, resumed)
            twin.update_scalar(key, value, count, resumed)

        hub.update_scalar = tee

    def _both(self, runner: Any, render: Any) -> None:
        hub = runner.message_hub
        bounded = render()[1]
        runner.message_hub = self.twin
        try:
            unbounded = render()[1]
        finally:
            runner.message_hub = hub
        self.lines.append((bounded, unbounded))
        self.stored.append(max(len(b._values) for b in hub.log_scalars.values()))

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        self._both(runner, lambda: runner.log_processor.get_log_after_iter(runner, batch_idx, "train"))

    def after_val_epoch(self, runner: Any, metrics: Any = None) -> None:
        size = len(runner.val_dataloader)
        self._both(runner, lambda: runner.log_processor.get_log_after_epoch(runner, size - 1, "val"))


def test_log_lines_are_identical_with_the_bound(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(history_bound, "MIN_HISTORY", 1)  # so the windows alone set the bound
    twin = Twin()
    runner = Runner(**toy_kwargs(
        tmp_path,
        train_cfg={"by_epoch": True, "max_epochs": 6, "val_interval": 1},
        log_processor={"window_size": 2, "custom_cfg": _CUSTOM},
        custom_hooks=[twin],
    ))
    runner.train()
    # the largest window: max over 5 records (the loaders have 4 batches)
    assert runner.message_hub.history_length == 5
    assert len(twin.lines) == 6 * 4 + 6
    assert all(bounded == unbounded for bounded, unbounded in twin.lines), twin.lines
    assert max(twin.stored) < 10 and len(twin.twin.get_scalar("train/loss")) == 24  # it did bound
    assert "loss_max5" in twin.lines[-2][0] and "loss_epoch" in twin.lines[-2][0]


def test_the_bound_follows_the_windows_in_use(tmp_path: Any) -> None:
    runner = Runner(**toy_kwargs(tmp_path, train_cfg={"by_epoch": False, "max_iters": 50_000, "val_interval": 25_000}))
    runner._train_loop = runner.build_train_loop(runner._train_loop)
    runner._val_loop = runner.build_val_loop(runner._val_loop)
    loops = (runner._train_loop, runner._val_loop, None)
    assert history_length(LogProcessor(), *loops) == MIN_HISTORY  # default windows: 10 and 4 batches
    assert history_length(LogProcessor(window_size=5000), *loops) == 5000
    glob = [{"data_src": "loss", "window_size": "global"}]
    assert history_length(LogProcessor(custom_cfg=glob), *loops) == 50_000  # 'global' reaches max_iters
    assert history_length(LogProcessor(custom_cfg=glob), None, runner._val_loop, None) == MMENGINE_HISTORY
    assert history_length(LogProcessor(custom_cfg=[{"data_src": "loss", "method_name": "max"}]), *loops) == MMENGINE_HISTORY

    class OwnProcessor(LogProcessor):
        pass

    assert history_length(OwnProcessor(), *loops) == MMENGINE_HISTORY  # unknown windows: MMEngine's
