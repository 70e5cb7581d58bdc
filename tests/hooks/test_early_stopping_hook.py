"""EarlyStoppingHook: MMEngine's scenarios (A18), the seed's mode/baseline/restore, properties."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.core.effects import LoadWeights, LogText, StopTraining
from fengine.core.events import Event
from fengine.core.pipeline import FnHook, HookError, Pipeline, dispatch
from fengine.core.priority import Priority
from fengine.core.run import EventInfo, RunState
from fengine.hooks.early_stopping_hook import (
    EarlyStoppingHook,
    EarlyStoppingState,
    early_stopping_fn_hook,
)
from fengine.registry import HOOKS
from fengine.testing import check_hook


def evaluate(
    hook: EarlyStoppingHook | FnHook[EarlyStoppingState], values: list[Any], **run: Any
) -> tuple[list[int], int | None, EarlyStoppingState, RunState]:
    """Feed ``values`` as successive validations; wait counts, the 0-based stop index, the state."""
    fn = hook if isinstance(hook, FnHook) else hook.to_fn_hook("EarlyStoppingHook")
    pipeline = Pipeline.of([fn])
    state = RunState(**run)
    waits, stop = [], None
    for i, value in enumerate(values):
        metrics = {"other": 0.0} if value is None else {fn_monitor(hook): value}
        state = attrs.evolve(state, epoch=i + 1, effects=())
        state = dispatch(pipeline, Event.AFTER_VAL_EPOCH, state, EventInfo(metrics=metrics))
        own = state.hook_states.get(fn.name, fn.init)
        waits.append(own.wait_count)
        if any(isinstance(e, StopTraining) for e in state.effects) and stop is None:
            stop = i
            break
    return waits, stop, state.hook_states.get(fn.name, fn.init), state


def fn_monitor(hook: Any) -> str:
    return str(hook.monitor) if isinstance(hook, EarlyStoppingHook) else "acc"


# -- A18, with the seed's defaults made explicit ----------------------------------------------


def test_a18_a_acc_with_min_delta_one() -> None:
    hook = EarlyStoppingHook("acc", min_delta=1, patience=3)
    assert hook.rule == "greater"
    waits, stop, state, run = evaluate(hook, [90, 91, 92, 88, 89, 90])
    assert waits == [0, 0, 0, 1, 2, 3]
    assert stop == 5 and state.best_score == 92 and state.best_epoch == 3
    reasons = [e.reason for e in run.effects if isinstance(e, StopTraining)]
    assert reasons == [
        "the monitored metric did not improve in the last 3 records. best score: 92.000. "
    ]
    assert any(isinstance(e, LogText) and e.message == reasons[0] for e in run.effects)


def test_a18_b_loss_with_mmengine_min_delta() -> None:
    hook = EarlyStoppingHook("val_loss", min_delta=0.1, patience=2)
    assert hook.rule == "less"
    waits, stop, state, _ = evaluate(hook, [1.0, 0.95, 0.85, 0.80, 0.74, 0.70, 0.65])
    assert stop == 6 and state.best_score == 0.74
    assert waits == [0, 1, 0, 1, 0, 1, 2]


def test_a18_c_stopping_threshold() -> None:
    hook = EarlyStoppingHook("acc", stopping_threshold=0.9)
    _, stop, state, _ = evaluate(hook, [0.5, 0.8, 0.91])
    assert stop == 2 and state.best_score == 0.91
    _, stop, _, _ = evaluate(hook, [0.5, 0.9])
    assert stop is None


def test_a18_d_non_finite() -> None:
    _, stop, state, _ = evaluate(EarlyStoppingHook("acc"), [0.5, math.nan])
    assert stop == 1 and state.best_score == 0.5
    # check_finite=False: NaN is a non-improving evaluation, never the best (MMEngine makes it best).
    lenient = EarlyStoppingHook("acc", check_finite=False, patience=2)
    waits, stop, state, _ = evaluate(lenient, [0.5, math.nan, 0.6, 0.7])
    assert stop is None and waits == [0, 1, 0, 0] and state.best_score == 0.7
    waits, stop, state, _ = evaluate(lenient, [0.5, math.nan, math.nan])
    assert stop == 2 and state.best_score == 0.5


def test_a18_e_missing_monitor() -> None:
    waits, stop, _, run = evaluate(EarlyStoppingHook("acc"), [None, None])
    assert stop is None and waits == [0, 0]
    (warning,) = run.effects
    assert isinstance(warning, LogText) and warning.level == 30
    assert "do not include `monitor` (acc)" in warning.message
    with pytest.raises(
        RuntimeError, match="monitors 'acc', which the evaluation did not return"
    ) as caught:
        evaluate(EarlyStoppingHook("acc", strict=True), [None])
    assert isinstance(caught.value, HookError) and isinstance(caught.value.error, KeyError)


# -- the seed's arguments ---------------------------------------------------------------------


def test_direction() -> None:
    assert EarlyStoppingHook("coco/bbox_mAP").rule == "greater"
    assert EarlyStoppingHook("loss").rule == "less"
    assert EarlyStoppingHook("acc", mode="min").rule == "less"  # explicit mode wins
    assert EarlyStoppingHook("loss", mode="max").rule == "greater"
    assert EarlyStoppingHook("loss", rule="greater").rule == "greater"
    assert EarlyStoppingHook("recall", mode="auto", rule="greater").rule == "greater"
    with pytest.warns(UserWarning, match="cannot infer whether a higher or lower 'recall'"):
        assert EarlyStoppingHook("recall").rule == "less"  # the seed's default mode
    with pytest.raises(ValueError, match="Cannot infer the rule for key 'recall'"):
        EarlyStoppingHook("recall", mode="auto")
    with pytest.raises(
        ValueError, match='`rule` should be either "greater" or "less", but got \'up\''
    ):
        EarlyStoppingHook("acc", rule="up")
    with pytest.raises(ValueError, match="mode must be 'min', 'max' or 'auto', got 'down'"):
        EarlyStoppingHook("acc", mode="down")
    with pytest.raises(ValueError, match="mode='min' and rule='greater' disagree"):
        EarlyStoppingHook("acc", mode="min", rule="greater")


def test_argument_validation_and_defaults() -> None:
    hook = EarlyStoppingHook("acc")
    assert (hook.min_delta, hook.patience, hook.priority) == (0.0, 5, "LOWEST")
    assert HOOKS.get("EarlyStoppingHook") is EarlyStoppingHook
    assert hook.to_fn_hook("x").priority_value == Priority.LOWEST.value
    with pytest.raises(ValueError, match="min_delta must be a number >= 0, got -1"):
        EarlyStoppingHook("acc", min_delta=-1)
    with pytest.raises(ValueError, match=r"patience must be an int >= 0, got 1.5"):
        EarlyStoppingHook("acc", patience=1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="monitor must be a metric name"):
        EarlyStoppingHook(None)  # type: ignore[arg-type]


def test_equal_scores_are_not_improvements() -> None:
    waits, stop, _, _ = evaluate(EarlyStoppingHook("acc", patience=2), [0.5, 0.5, 0.5])
    assert waits == [0, 1, 2] and stop == 2


def test_baseline_must_be_beaten() -> None:
    hook = EarlyStoppingHook("acc", patience=2, baseline=0.5)
    waits, stop, state, _ = evaluate(hook, [0.4, 0.5])
    assert waits == [1, 2] and stop == 1
    assert state.best_score == 0.5 and state.best_epoch is None
    _, stop, state, _ = evaluate(hook, [0.4, 0.6, 0.55])
    assert stop is None and state.best_score == 0.6 and state.best_epoch == 2


def test_restore_best_weights() -> None:
    weight = torch.zeros(2)
    hook = EarlyStoppingHook("loss", patience=3, restore_best_weights=True, verbose=True)
    fn = hook.to_fn_hook("ES")
    pipeline = Pipeline.of([fn])
    run = RunState(params={"w": weight})
    for epoch, loss in enumerate([3.0, 1.0, 2.0, 4.0], start=1):
        weight.fill_(epoch)
        run = dispatch(
            pipeline,
            Event.AFTER_VAL_EPOCH,
            attrs.evolve(run, epoch=epoch),
            EventInfo(metrics={"loss": loss}),
        )
    state = run.hook_states["ES"]
    assert state.best_epoch == 2 and torch.equal(state.best_weights["w"], torch.full((2,), 2.0))
    run = dispatch(pipeline, Event.AFTER_TRAIN, attrs.evolve(run, effects=()), EventInfo())
    load, log = run.effects
    assert isinstance(load, LoadWeights) and torch.equal(load.tensors["w"], torch.full((2,), 2.0))
    assert isinstance(log, LogText) and "epoch 2" in log.message
    plain = early_stopping_fn_hook("ES", "loss", "less")
    assert Event.AFTER_TRAIN not in plain.on  # nothing to restore: no handler


# -- properties -------------------------------------------------------------------------------


VALUES = st.lists(st.integers(0, 8).map(lambda k: k / 4), min_size=1, max_size=15)


@settings(max_examples=50)
@given(
    values=VALUES,
    rule=st.sampled_from(["greater", "less"]),
    min_delta=st.sampled_from([0.0, 0.25, 0.5, 1.0]),
    patience=st.integers(0, 4),
)
def test_stops_exactly_when_patience_non_improving_evaluations_accumulate(
    values: list[float], rule: str, min_delta: float, patience: int
) -> None:
    fn = early_stopping_fn_hook("ES", "acc", rule, min_delta=min_delta, patience=patience)  # type: ignore[arg-type]
    _, stop, state, _ = evaluate(fn, values)
    # Independent reading: evaluation i improves iff it beats the last improving value by
    # min_delta (strictly, when min_delta is 0); count the non-improving ones since.
    expected_stop, last_improving, waited = None, None, 0
    for i, value in enumerate(values):
        gain = (
            None
            if last_improving is None
            else (value - last_improving) * (1 if rule == "greater" else -1)
        )
        if gain is None or (gain > 0 and gain >= min_delta):
            last_improving, waited = value, 0
        else:
            waited += 1
            if waited >= patience:
                expected_stop = i
                break
    assert stop == expected_stop
    assert state.best_score == last_improving
    if stop is not None:
        assert state.wait_count == patience or patience == 0


def test_default_hook_contract() -> None:
    check_hook(
        EarlyStoppingHook("accuracy", patience=1, restore_best_weights=True), max_examples=15
    )
    check_hook(EarlyStoppingHook("accuracy", strict=False, baseline=0.5), max_examples=10)


# -- end to end with the Runner ----------------------------------------------------------------

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runner"))
from runner_toys import ToyMetric, toy_kwargs  # noqa: E402

from fengine.core.plain import from_plain  # noqa: E402
from fengine.runner.runner import Runner  # noqa: E402


def ten_epochs(
    work_dir: Path, scores: list[float], hook: EarlyStoppingHook, **kwargs: Any
) -> Runner:
    return Runner(
        **toy_kwargs(
            work_dir,
            train_cfg={"by_epoch": True, "max_epochs": 10, "val_interval": 1},
            val_evaluator=ToyMetric(values=scores),
            custom_hooks=[hook],
            default_hooks={
                "checkpoint": {"type": "CheckpointHook", "interval": 1, "save_best": None}
            },
            **kwargs,
        )
    )


def test_training_ends_at_the_stopping_epoch_and_the_state_survives_resume(tmp_path: Path) -> None:
    runner = ten_epochs(
        tmp_path / "a",
        [90, 91, 92, 88, 89, 90, 95],
        EarlyStoppingHook("acc", min_delta=1, patience=3),
    )
    runner.train()
    assert runner.epoch == 6
    assert sorted(p.name for p in (tmp_path / "a").glob("epoch_*.pth"))[-1] == "epoch_6.pth"
    saved = torch.load(tmp_path / "a" / "epoch_5.pth", weights_only=True)["hook_states"][
        "EarlyStoppingHook"
    ]
    state = from_plain(saved)
    assert (state.best_score, state.wait_count, state.best_epoch, state.best_iter) == (92, 1, 3, 12)
    # epoch_5.pth is written before epoch 5 validates; the resumed run runs that validation
    # first and goes on counting from wait 1, so it stops where the uninterrupted run did. From
    # a fresh state the same scores (89, 90, 99) would each count as improvements.
    resumed = ten_epochs(
        tmp_path / "b",
        [89, 90, 99],
        EarlyStoppingHook("acc", min_delta=1, patience=3),
        load_from=str(tmp_path / "a" / "epoch_5.pth"),
        resume=True,
    )
    resumed.train()
    assert resumed.epoch == 6
    assert resumed.val_evaluator.calls == 2


def test_restore_best_weights_end_to_end(tmp_path: Path) -> None:
    hook = EarlyStoppingHook("acc", mode="min", patience=2, restore_best_weights=True)
    runner = ten_epochs(tmp_path, [3.0, 1.0, 2.0, 2.5, 0.5], hook)
    runner.train()
    assert runner.epoch == 4
    best = torch.load(tmp_path / "epoch_2.pth", weights_only=True)["state_dict"]
    final = torch.load(tmp_path / "epoch_4.pth", weights_only=True)["state_dict"]
    live = runner.model.state_dict()
    assert all(torch.equal(live[k], v) for k, v in best.items())
    assert not all(torch.equal(live[k], v) for k, v in final.items())
