"""The default CheckpointHook follows the train loop's kind (MMEngine defect §8(g))."""

from __future__ import annotations

import os
from typing import Any

import pytest
from runner_toys import toy_kwargs

from fengine.runner.runner import Runner


def _files(path: Any) -> list[str]:
    return sorted(f for f in os.listdir(path) if f.endswith(".pth") and not f.startswith("best_"))


@pytest.mark.parametrize(("max_iters", "val_interval", "expected"), [(10, 4, [4, 8, 10]), (6, 6, [6]), (5, 2, [2, 4, 5])])
def test_iteration_runs_save_with_each_validation(tmp_path: Any, max_iters: int, val_interval: int, expected: list[int]) -> None:
    train_cfg = {"by_epoch": False, "max_iters": max_iters, "val_interval": val_interval}
    Runner(**toy_kwargs(tmp_path, train_cfg=train_cfg)).train()
    assert _files(tmp_path) == sorted(f"iter_{n}.pth" for n in expected)


def test_epoch_runs_save_every_epoch(tmp_path: Any) -> None:
    Runner(**toy_kwargs(tmp_path, train_cfg={"by_epoch": True, "max_epochs": 3})).train()
    assert _files(tmp_path) == ["epoch_1.pth", "epoch_2.pth", "epoch_3.pth"]


def test_a_configured_checkpoint_hook_keeps_its_interval(tmp_path: Any) -> None:
    train_cfg = {"by_epoch": False, "max_iters": 6, "val_interval": 6}
    hooks = {"checkpoint": {"type": "CheckpointHook", "interval": 2}}
    Runner(**toy_kwargs(tmp_path, train_cfg=train_cfg, default_hooks=hooks)).train()
    assert _files(tmp_path) == ["iter_2.pth", "iter_4.pth", "iter_6.pth"]
