"""Extending a run: train ``k`` epochs (iterations), resume with ``max_epochs=N``, get the run of N.

Schedulers are rebuilt from the config on resume and take only their counters (and what they
accumulate) from the checkpoint, so a window that ended with the old ``max_epochs`` follows the
new one. Every family, for the learning rate and for momentum, by epoch and by iteration: the
extended run's weights and learning rates equal the uninterrupted run's bit for bit.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from resume_toys import ResumeData  # noqa: F401  (registers the toy run's model, data and metric)

from fengine.runner.runner import Runner

EPOCHS, ITERS = 4, 10  # 6 batches an epoch

#: Each family's extra arguments for a run of ``total`` steps, drawn by hypothesis. Where a
#: default ``end`` would shape the values before the split (a warm-up's length, a cosine's period),
#: the draw fixes it, as a config does that means the same schedule in both runs.
_STRATEGIES: dict[str, Any] = {
    "Constant": lambda total: st.fixed_dictionaries(
        {"factor": st.sampled_from([0.5, 0.25]), "end": st.integers(1, total)}
    ),
    "Linear": lambda total: st.fixed_dictionaries(
        {"start_factor": st.sampled_from([0.1, 0.5]), "end": st.integers(2, total)}
    ),
    "CosineAnnealing": lambda total: st.fixed_dictionaries(
        {"T_max": st.integers(1, total), "eta_min": st.sampled_from([0.0, 0.001])}
    ),
    "CosineRestart": lambda total: st.lists(st.integers(1, total), min_size=1, max_size=3).map(
        lambda periods: {"periods": periods, "restart_weights": [1.0, 0.5, 0.25][: len(periods)], "eta_min": 0.0}
    ),
    "MultiStep": lambda total: st.fixed_dictionaries(
        {"milestones": st.lists(st.integers(1, total - 1), min_size=1, max_size=3, unique=True).map(sorted),
         "gamma": st.sampled_from([0.5, 0.1])}
    ),
    "Step": lambda total: st.fixed_dictionaries(
        {"step_size": st.integers(1, total - 1), "gamma": st.sampled_from([0.5, 0.9])}
    ),
    "Exponential": lambda total: st.fixed_dictionaries({"gamma": st.sampled_from([0.5, 0.9])}),
    "Poly": lambda total: st.fixed_dictionaries(
        {"power": st.sampled_from([1.0, 2.0]), "eta_min": st.sampled_from([0.0, 0.001]), "end": st.just(total)}
    ),
    "OneCycle": lambda total: st.fixed_dictionaries(
        {"eta_max": st.sampled_from([0.02, 0.05]), "total_steps": st.just(total), "pct_start": st.sampled_from([0.3, 0.5])}
    ),
    # Its judgements follow validation metrics, which a checkpoint does not keep: the
    # validation that closed a shorter window cannot be judged again, so the window is explicit.
    "ReduceOnPlateau": lambda total: st.fixed_dictionaries(
        {"monitor": st.just("mse"), "rule": st.sampled_from(["less", "greater"]), "patience": st.integers(0, 1),
         "factor": st.sampled_from([0.5, 0.1]), "end": st.just(total + 1)}
    ),
}
#: ``(family, parameter, by_epoch)``: OneCycle schedules only the learning rate, and
#: ReduceOnPlateau steps by epoch only (its constructor rejects ``by_epoch=False``).
_CASES = [
    (family, param, by_epoch)
    for by_epoch in (True, False)
    for param in ("LR", "Momentum")
    for family in _STRATEGIES
    if not (family == "OneCycle" and param == "Momentum")
    and not (family == "ReduceOnPlateau" and not by_epoch)
]


def _kwargs(work_dir: str, by_epoch: bool, length: int, schedulers: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    loader = {"dataset": {"type": "ResumeData"}, "batch_size": 4, "collate_fn": {"type": "default_collate"}}
    # Validation every epoch (ReduceOnPlateau reads it); none in iteration runs, where the shorter
    # run's closing validation would draw from the generators (a DataLoader seeds its iterator
    # from them) at a step the longer run does not validate.
    validation = {
        "val_dataloader": {**loader, "sampler": {"type": "DefaultSampler", "shuffle": False}},
        "val_evaluator": {"type": "ResumeMSE"},
        "val_cfg": {},
    }
    return {
        "model": {"type": "ResumeNet"},
        "work_dir": work_dir,
        "train_dataloader": {**loader, "sampler": {"type": "DefaultSampler" if by_epoch else "InfiniteSampler", "shuffle": True}},
        **(validation if by_epoch else {}),
        "train_cfg": {"by_epoch": True, "max_epochs": length, "val_interval": 1} if by_epoch
        else {"by_epoch": False, "max_iters": length},
        "optim_wrapper": {"optimizer": {"type": "SGD", "lr": 0.02, "momentum": 0.9}},
        "param_scheduler": schedulers,
        "default_hooks": {"logger": {"type": "LoggerHook", "interval": 1}},
        "randomness": {"seed": 0},
        **overrides,
    }


def _outcome(runner: Runner) -> tuple[dict[str, torch.Tensor], list[float], list[float]]:
    groups = runner.optim_wrapper.param_groups
    lrs = runner.message_hub.get_scalar("train/lr").data[0].tolist()
    return dict(runner.model.state_dict()), lrs, [g["momentum"] for g in groups] + [g["lr"] for g in groups]


def _extended_equals_uninterrupted(by_epoch: bool, split: int, schedulers: list[dict[str, Any]]) -> list[str]:
    """Run both ways; assert equality; return the resumed run's log."""
    total = EPOCHS if by_epoch else ITERS
    with tempfile.TemporaryDirectory() as straight, tempfile.TemporaryDirectory() as extended:
        expected = Runner(**_kwargs(straight, by_epoch, total, schedulers))
        expected.train()
        Runner(**_kwargs(extended, by_epoch, split, schedulers)).train()
        resumed = Runner(**_kwargs(extended, by_epoch, total, schedulers, resume=True))
        resumed.train()
        (want_weights, want_lrs, want_groups), (weights, lrs, groups) = _outcome(expected), _outcome(resumed)
        assert lrs == want_lrs
        assert groups == want_groups
        assert want_weights.keys() == weights.keys()
        for name, tensor in want_weights.items():
            assert torch.equal(weights[name], tensor), name
        assert (resumed.epoch, resumed.iter) == (expected.epoch, expected.iter)
        return [
            line
            for log in Path(extended).glob("*/*.log")
            for line in log.read_text().splitlines()
            if "param_scheduler[" in line
        ]


def _config(family: str, param: str, by_epoch: bool, args: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": f"{family}{param}", "by_epoch": by_epoch, **args}]


@pytest.mark.parametrize(("family", "param", "by_epoch"), _CASES)
def test_every_family_extends_to_the_uninterrupted_run(family: str, param: str, by_epoch: bool) -> None:
    total = EPOCHS if by_epoch else ITERS
    args = {
        "Constant": {"factor": 0.5, "end": total - 1},
        "Linear": {"start_factor": 0.1, "end": total},
        "CosineAnnealing": {"T_max": total, "eta_min": 0.001},
        "CosineRestart": {"periods": [1, total - 1], "restart_weights": [1.0, 0.5], "eta_min": 0.0},
        "MultiStep": {"milestones": [total // 2, total - 1], "gamma": 0.5},
        "Step": {"step_size": 1, "gamma": 0.5},
        "Exponential": {"gamma": 0.9},
        "Poly": {"power": 2.0, "eta_min": 0.001, "end": total},
        "OneCycle": {"eta_max": 0.05, "total_steps": total},
        "ReduceOnPlateau": {"monitor": "mse", "rule": "greater", "patience": 0, "factor": 0.5, "end": total + 1},
    }[family]
    _extended_equals_uninterrupted(by_epoch, total // 2, _config(family, param, by_epoch, args))


@settings(max_examples=20)
@given(case=st.sampled_from(_CASES), warm_up=st.booleans(), data=st.data())
def test_any_schedule_extends_from_any_split(case: tuple[str, str, bool], warm_up: bool, data: st.DataObject) -> None:
    family, param, by_epoch = case
    total = EPOCHS if by_epoch else ITERS
    split = data.draw(st.integers(1, total - 1), label="split")
    args = data.draw(_STRATEGIES[family](total), label="args")
    schedulers = _config(family, param, by_epoch, args)
    if warm_up and param == "LR":  # a chained warm-up over the first iterations, as configs have
        schedulers.insert(0, {"type": "LinearLR", "start_factor": 0.5, "end": 3, "by_epoch": False})
    _extended_equals_uninterrupted(by_epoch, split, schedulers)


def test_extending_max_epochs_moves_a_defaulted_end_and_says_so() -> None:
    """The case users report: ``MultiStepLR(milestones=[2, 3])`` with ``end`` left to
    ``max_epochs``, trained 2 epochs, then resumed with ``max_epochs=4``."""
    schedulers = [{"type": "MultiStepLR", "milestones": [2, 3], "gamma": 0.5}]
    lines = _extended_equals_uninterrupted(True, 2, schedulers)
    assert [line.split(" - INFO - ")[1].split(" in '")[0] for line in lines] == [
        "param_scheduler[0] (MultiStepLR): end is 4 in the config and was 2"
    ]
    assert lines[0].endswith("epoch_2.pth'; the config's value is used")


def test_a_changed_hyper_parameter_is_used_and_logged_per_key() -> None:
    schedulers = [{"type": "StepLR", "step_size": 1, "gamma": 0.5, "end": 4}]
    changed = [{"type": "StepLR", "step_size": 2, "gamma": 0.9, "end": 5}]
    with tempfile.TemporaryDirectory() as work_dir:
        Runner(**_kwargs(work_dir, True, 2, schedulers)).train()
        resumed = Runner(**_kwargs(work_dir, True, 5, changed, resume=True))
        resumed.train()
        log = "".join(p.read_text() for p in Path(work_dir).glob("*/*.log"))
    said = [line.split(" - INFO - ")[1].split(" in '")[0] for line in log.splitlines() if "param_scheduler[" in line]
    assert said == [
        "param_scheduler[0] (StepLR): end is 5 in the config and was 4",
        "param_scheduler[0] (StepLR): step_size is 2 in the config and was 1",
        "param_scheduler[0] (StepLR): gamma is 0.9 in the config and was 0.5",
    ]
    # Epochs 0-2 as the saved run set them (x0.5 every epoch; epoch 2's value was set when
    # epoch 1 ended); then the config's rule on the same counter: x0.9 at step 4 (step_size 2).
    lrs = resumed.message_hub.get_scalar("train/lr").data[0].tolist()
    assert [lrs[i * 6] for i in range(5)] == [0.02, 0.01, 0.005, 0.005, 0.005 * 0.9]
