"""The deferred non-finite loss check: a NaN stops the run naming its step; no checkpoint after it."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from runner_toys import ToyModel, toy_kwargs

from fengine import Runner
from fengine.hooks import Hook
from fengine.runner.base_loop import NonFiniteLossError
from fengine.runner.checkpoint import find_latest_checkpoint, read_checkpoint
from fengine.runner.finite_watch import FiniteWatch


class NaNAt(ToyModel):
    """The toy model whose loss is ``value`` at the ``bad``-th training forward (0-based)."""

    def __init__(self, bad: int, value: float = math.nan) -> None:
        super().__init__()
        self.bad, self.value, self.calls = bad, value, 0

    def forward(self, inputs: Any, data_samples: Any = None, mode: str = "tensor") -> Any:
        out = super().forward(inputs, data_samples, mode)
        if mode == "loss":
            if self.calls == self.bad:
                out = {"loss": out["loss"] * self.value}
            self.calls += 1
        return out


@given(st.integers(0, 23), st.sampled_from([math.nan, math.inf, -math.inf]), st.booleans())
@settings(max_examples=6, deadline=None)
def test_a_nan_stops_the_run_naming_its_iteration_and_no_checkpoint_holds_it(
    tmp_path_factory: pytest.TempPathFactory, bad: int, value: float, by_epoch: bool
) -> None:
    work_dir = tmp_path_factory.mktemp("run")
    train_cfg = {"by_epoch": True, "max_epochs": 6} if by_epoch else {"by_epoch": False, "max_iters": 24, "val_interval": 100}
    kwargs = toy_kwargs(
        work_dir,
        model=NaNAt(bad, value),
        train_cfg=train_cfg,
        val_dataloader=None,
        val_cfg=None,
        val_evaluator=None,
        default_hooks={
            "logger": {"type": "LoggerHook", "interval": 5},
            "checkpoint": {"type": "CheckpointHook", "interval": 1 if by_epoch else 3},
        },
    )
    with pytest.raises(NonFiniteLossError, match=rf"non-finite loss at iteration {bad + 1} \(epoch "):
        Runner(**kwargs).train()
    newest = find_latest_checkpoint(str(work_dir))
    if newest is None:  # the NaN came before the first save
        return
    checkpoint = read_checkpoint(newest)
    assert checkpoint["meta"]["iter"] <= bad  # saved before the bad step
    assert all(bool(torch.isfinite(t).all()) for t in checkpoint["state_dict"].values())


class Seen(Hook):
    """Records ``runner.iter`` after each train iteration."""

    def __init__(self, seen: list[int]) -> None:
        self.seen = seen

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        self.seen.append(runner.iter)


def test_eager_stops_at_the_step_and_the_deferred_check_at_the_next_line(tmp_path: Any) -> None:
    stopped = {}
    for mode in ("eager", True):
        seen: list[int] = []
        kwargs = toy_kwargs(
            tmp_path / str(mode),
            model=NaNAt(2),
            train_cfg={"by_epoch": False, "max_iters": 12, "val_interval": 100, "check_finite": mode},
            val_dataloader=None, val_cfg=None, val_evaluator=None,
            default_hooks={"logger": {"type": "LoggerHook", "interval": 5, "by_epoch": False}, "checkpoint": None},
            custom_hooks=[Seen(seen)],
        )
        with pytest.raises(NonFiniteLossError, match="non-finite loss at iteration 3 "):
            Runner(**kwargs).train()
        stopped[mode] = seen
    assert stopped["eager"] == [0, 1]  # the bad third step raises before its after_train_iter
    # Found at the next log line: the last batch of the loader's first pass (4 batches) ends the
    # fourth step, and the hook recording it runs before the logger.
    assert stopped[True] == [0, 1, 2, 3]


def test_the_watch_reads_once_per_check_and_forgets_what_it_checked() -> None:
    watch = FiniteWatch()
    for i in range(5):
        watch.add({"loss": torch.tensor(float(i))}, i, 0, i)
    assert len(watch) == 5
    watch.check()
    assert len(watch) == 0
    watch.add({"loss": torch.tensor(1.0)}, 5, 0, 5)
    watch.add({"loss": torch.tensor(math.inf)}, 6, 1, 0)
    watch.add({"loss": torch.tensor(math.nan)}, 7, 1, 1)
    with pytest.raises(NonFiniteLossError, match=r"iteration 7 \(epoch 2, batch 0\): loss=\[inf\]"):
        watch.check()
    watch.add({"not a loss": 1.0}, 8, 1, 2)
    assert len(watch) == 0
