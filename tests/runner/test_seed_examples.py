"""The seed page's runner examples, with ``fengine`` in place of ``mmengine``."""

from __future__ import annotations

import os
from typing import Any

from runner_toys import ToyMetric, ToyModel, toy_kwargs

from fengine import Runner
from fengine.hooks import (
    CheckpointHook,
    DistSamplerSeedHook,
    EMAHook,
    Hook,
    IterTimerHook,
    LoggerHook,
)
from fengine.runner import get_priority


class AccuracyMetric(ToyMetric):
    """Accuracy 1, returned as ``val_acc``: the runner logs it as ``val/val_acc``."""

    def compute_metrics(self, results: list[Any]) -> dict[str, Any]:
        return {"val_acc": super().compute_metrics(results)["acc"]}


def test_custom_hook_implementation(tmp_path: Any) -> None:
    # --- the seed's example ---
    class CustomValidationHook(Hook):
        def __init__(self, val_interval: int = 1) -> None:
            self.val_interval = val_interval

        def after_train_epoch(self, runner: Any) -> None:
            if (runner.epoch + 1) % self.val_interval == 0:
                runner.val()

                # Custom validation logic
                val_metrics = runner.message_hub.get_scalar("val_acc")
                if val_metrics.current > 0.95:
                    runner.logger.info("High accuracy achieved!")

    # --- a runner to register it with: 6 epochs, the loop's own validation only at the end ---
    metric = AccuracyMetric()
    runner = Runner(
        **toy_kwargs(tmp_path, train_cfg={"by_epoch": True, "max_epochs": 6, "val_interval": 10}, val_evaluator=metric)
    )
    runner.register_hook(CustomValidationHook(val_interval=5))
    runner.train()
    log = (tmp_path / runner.timestamp / f"{runner.timestamp}.log").read_text()
    assert log.count("High accuracy achieved!") == 1  # after epoch 5 only
    assert metric.calls == 2  # the hook's runner.val() after epoch 5, the loop's after epoch 6
    assert "val_acc" not in runner.message_hub.log_scalars  # logged under its mode only
    assert log.count("scalar 'val_acc' is read from 'val/val_acc'") == 1  # said once
    buffer = runner.message_hub.get_scalar("val_acc")
    assert buffer is runner.message_hub.get_scalar("val/val_acc")
    assert buffer.current == buffer.current() == 1  # the seed's and MMEngine's spellings


def test_using_built_in_hooks(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.chdir(tmp_path)
    model = ToyModel()
    # --- the seed's example ---
    default_hooks = dict(
        timer=dict(type="IterTimerHook"),
        logger=dict(type="LoggerHook", interval=100),
        param_scheduler=dict(type="ParamSchedulerHook"),
        sampler_seed=dict(type="DistSamplerSeedHook"),
        checkpoint=dict(type="CheckpointHook", interval=1, save_best="auto", max_keep_ckpts=3),
    )
    custom_hooks = [dict(type="EMAHook", momentum=0.0002, priority=49)]
    runner = Runner(model=model, default_hooks=default_hooks, custom_hooks=custom_hooks)
    # --- what it built ---
    assert os.path.dirname(runner.work_dir) == str(tmp_path / "work_dirs")
    assert os.path.isdir(runner.work_dir) and os.path.basename(runner.work_dir).startswith(runner.timestamp)
    names = [type(h).__name__ for h in runner.hooks]
    assert names == ["RuntimeInfoHook", "EMAHook", "IterTimerHook", "DistSamplerSeedHook", "LoggerHook", "ParamSchedulerHook", "CheckpointHook"]
    hooks = {type(h): h for h in runner.hooks}
    assert hooks[EMAHook].priority == 49
    assert isinstance(hooks[IterTimerHook], IterTimerHook) and isinstance(hooks[DistSamplerSeedHook], DistSamplerSeedHook)
    assert hooks[LoggerHook].interval == 100
    assert hooks[CheckpointHook].max_keep_ckpts == 3
    assert runner.model is model and (runner.epoch, runner.iter) == (0, 0)
    second = Runner(model=ToyModel(), default_hooks=default_hooks, custom_hooks=custom_hooks)
    assert second.work_dir != runner.work_dir  # a fresh folder each time


def test_priority_based_hook_ordering(tmp_path: Any) -> None:
    # --- the seed's example ---
    class HighPriorityHook(Hook):
        priority = "HIGH"  # or get_priority('HIGH')

        def before_train_iter(self, runner: Any) -> None:  # type: ignore[override]
            # This runs before normal priority hooks
            pass

    class LowPriorityHook(Hook):
        priority = "LOW"

        def after_train_iter(self, runner: Any) -> None:  # type: ignore[override]
            # This runs after normal priority hooks
            pass

    # --- registered among the default hooks ---
    runner = Runner(ToyModel(), work_dir=str(tmp_path), custom_hooks=[LowPriorityHook(), HighPriorityHook()])
    names = [type(h).__name__ for h in runner.hooks]
    assert names == [
        "RuntimeInfoHook", "HighPriorityHook", "IterTimerHook", "DistSamplerSeedHook", "LoggerHook",
        "ParamSchedulerHook", "LowPriorityHook", "CheckpointHook",
    ]
    assert get_priority("HIGH") == 30 and get_priority(LowPriorityHook.priority) == 70
    info = runner.get_hooks_info()
    assert f"({'HIGH':<12}) {'HighPriorityHook':<35}" in info.split("before_train_iter:")[1].split("----")[0]
    assert f"({'LOW':<12}) {'LowPriorityHook':<35}" in info.split("after_train_iter:")[1].split("----")[0]

    class NumericHigh(HighPriorityHook):
        priority = get_priority("HIGH")

    runner.register_hook(NumericHigh())
    assert [type(h).__name__ for h in runner.hooks][1:3] == ["HighPriorityHook", "NumericHigh"]


def test_priority_example_hooks_run_with_the_seeds_signatures(tmp_path: Any) -> None:
    """The seed's hooks take only `runner`; they train, in priority order around a NORMAL hook."""
    calls: list[str] = []

    class HighPriorityHook(Hook):
        priority = "HIGH"

        def before_train_iter(self, runner: Any) -> None:  # type: ignore[override]
            calls.append("high")

    class NormalHook(Hook):
        def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
            calls.append(f"normal {batch_idx}")

    class LowPriorityHook(Hook):
        priority = "LOW"

        def after_train_iter(self, runner: Any) -> None:  # type: ignore[override]
            calls.append("low")

    hooks = [LowPriorityHook(), NormalHook(), HighPriorityHook()]
    Runner(**toy_kwargs(tmp_path, train_cfg={"by_epoch": True, "max_epochs": 1}, custom_hooks=hooks)).train()
    assert calls == [c for b in range(4) for c in ("high", f"normal {b}", "low")]
