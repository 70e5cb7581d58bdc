"""EMAHook's MMEngine attributes (``ema_model``, ``src_model``) and its methods called by hand."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.hooks import EMAHook
from fengine.hooks.ema_hook import EMAHookArgumentError
from fengine.model.averaged_model import ExponentialMovingAverage, StochasticWeightAverage
from fengine.runner import Runner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runner"))
from runner_toys import ToyModel, toy_kwargs


def _ema_hook(runner: Runner) -> EMAHook:
    return next(h for h in runner.hooks if isinstance(h, EMAHook))


def test_ema_model_is_the_average_kept_by_a_real_run(tmp_path: Path) -> None:
    runner = Runner(**toy_kwargs(tmp_path, custom_hooks=[dict(type="EMAHook", momentum=0.5)]))
    hook = _ema_hook(runner)
    assert hook.ema_model is None and hook.src_model is runner.model
    runner.train()
    view = hook.ema_model
    assert isinstance(view, ExponentialMovingAverage) and int(view.steps) == 8
    saved = torch.load(tmp_path / "epoch_2.pth", weights_only=False)  # MMEngine's layout
    assert int(saved["ema_state_dict"]["steps"]) == 8
    for key, value in saved["state_dict"].items():
        assert torch.equal(view.state_dict()[f"module.{key}"], value), key
        assert torch.equal(saved["ema_state_dict"][f"module.{key}"], runner.model.state_dict()[key]), key


def test_ema_model_follows_updates_in_place_and_shows_the_raw_weights_during_validation(tmp_path: Path) -> None:
    runner = Runner(**toy_kwargs(tmp_path))
    hook = EMAHook(momentum=0.5)
    hook.before_run(runner)
    view = hook.ema_model
    assert view is not None and hook.src_model is runner.model
    for step in range(3):
        with torch.no_grad():
            for p in runner.model.parameters():
                p.add_(1.0)
        before = {n: t.clone() for n, t in view.module.named_parameters()}
        hook.after_train_iter(runner, step)
        for name, p in runner.model.named_parameters():  # the same module object, updated in place
            expected = p.detach() if step == 0 else before[name].lerp(p.detach(), 0.5)  # the first update copies
            assert torch.equal(dict(view.module.named_parameters())[name], expected)
    average = {n: t.clone() for n, t in view.module.named_parameters()}
    raw = {n: t.detach().clone() for n, t in runner.model.named_parameters()}
    hook.before_val_epoch(runner)
    for name, p in runner.model.named_parameters():
        assert torch.equal(p, average[name]) and torch.equal(dict(hook.ema_model.module.named_parameters())[name], raw[name])  # type: ignore[union-attr]
    hook.after_val_epoch(runner)
    for name, p in runner.model.named_parameters():
        assert torch.equal(p, raw[name]) and torch.equal(dict(hook.ema_model.module.named_parameters())[name], average[name])  # type: ignore[union-attr]


def test_the_view_has_the_hooks_averaging_type(tmp_path: Path) -> None:
    runner = Runner(**toy_kwargs(tmp_path))
    hook = EMAHook(ema_type="StochasticWeightAverage")
    hook.before_run(runner)
    assert isinstance(hook.ema_model, StochasticWeightAverage)


def test_checkpoint_methods_called_by_hand_edit_the_dict(tmp_path: Path) -> None:
    runner = Runner(**toy_kwargs(tmp_path))
    hook = EMAHook()
    hook.before_run(runner)
    hook.before_train(runner)
    weights = ToyModel().state_dict()
    checkpoint: dict[str, Any] = {"state_dict": dict(weights)}
    hook.before_save_checkpoint(runner, checkpoint)
    average = hook.ema_model.state_dict()  # type: ignore[union-attr]
    for key, value in weights.items():
        assert torch.equal(checkpoint["ema_state_dict"][f"module.{key}"], value)
        assert torch.equal(checkpoint["state_dict"][key], average[f"module.{key}"])
    loaded = {"state_dict": ToyModel().state_dict()}
    hook.after_load_checkpoint(runner, loaded)  # not resuming: the average starts from the weights
    for key, value in loaded["state_dict"].items():
        assert torch.equal(hook.ema_model.state_dict()[f"module.{key}"], value)  # type: ignore[union-attr]


@given(st.integers(-3, -1), st.sampled_from(["begin_iter", "begin_epoch"]))
@settings(max_examples=10, deadline=None)
def test_negative_begins_are_rejected_as_mmengine_asserts(value: int, key: str) -> None:
    with pytest.raises(AssertionError, match=f"`{key}` must be an int >= 0, got {value}") as caught:
        EMAHook(**{key: value})
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, EMAHookArgumentError)
    with pytest.raises(AssertionError, match="`begin_iter` and `begin_epoch` should not be both set"):
        EMAHook(begin_iter=1, begin_epoch=1)


def test_before_train_by_hand_checks_the_configured_length(tmp_path: Path) -> None:
    runner = Runner(**toy_kwargs(tmp_path))
    EMAHook(begin_epoch=2).before_train(runner)
    with pytest.raises(AssertionError, match="begin_epoch=3 exceeds max_epochs=2"):
        EMAHook(begin_epoch=3).before_train(runner)
    iters = Runner(**toy_kwargs(tmp_path / "iters", train_cfg={"by_epoch": False, "max_iters": 5}))
    with pytest.raises(AssertionError, match="begin_iter=6 exceeds max_iters=5"):
        EMAHook(begin_iter=6).before_train(iters)
