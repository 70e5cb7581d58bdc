"""A run's schedulers step after its optimizer: no order warning, on either training path."""

from __future__ import annotations

import warnings
from typing import Any

import pytest
from runner_toys import ToyModel, toy_kwargs

from fengine import Runner


class OwnStep(ToyModel):
    """``train_step`` overridden: the runner calls it, and it calls ``optimizer.step``."""

    def train_step(self, data: Any, optim_wrapper: Any) -> dict[str, Any]:
        return super().train_step(data, optim_wrapper)  # type: ignore[no-any-return]


@pytest.mark.parametrize("model", [ToyModel, OwnStep], ids=["pure step", "model's train_step"])
def test_iteration_and_epoch_schedulers_train_without_an_order_warning(tmp_path: Any, model: type) -> None:
    schedulers = [
        {"type": "LinearLR", "start_factor": 0.1, "by_epoch": False, "begin": 0, "end": 3},
        {"type": "StepLR", "step_size": 1, "gamma": 0.5, "by_epoch": True},
    ]
    runner = Runner(**toy_kwargs(tmp_path, model=model(), param_scheduler=schedulers))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runner.train()
    assert [str(w.message) for w in caught if "scheduler" in str(w.message)] == []
    # 2 epochs of 4 iterations, counted from -1 as MMEngine counts the wrapper its schedulers step
    assert runner.optim_wrapper._global_step == 7
