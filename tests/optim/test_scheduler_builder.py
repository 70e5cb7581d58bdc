"""build_param_schedulers: default ends, conversion, several optimizers, and clear errors."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch

import fengine.optim.scheduler as sch
from fengine.registry import ConfigError, RegistryError


def sgd(lr: float = 0.1) -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)


def test_end_defaults_to_the_run_length_in_each_unit() -> None:
    built = sch.build_param_schedulers(
        sgd(),
        [
            {"type": "MultiStepLR", "milestones": [1]},
            {"type": "LinearLR", "by_epoch": False},
            {"type": "ConstantLR", "end": 2},
        ],
        epoch_length=5,
        max_epochs=4,
        max_iters=20,
    )
    assert isinstance(built, list)
    assert [(s.begin, s.end, s.by_epoch) for s in built] == [
        (0, 4, True),
        (0, 20, False),
        (0, 2, True),
    ]
    unset = sch.build_param_schedulers(sgd(), {"type": "StepLR", "step_size": 2})
    assert isinstance(unset, list) and unset[0].end == sch.INF


def test_conversion_happens_after_the_default_end() -> None:
    built = sch.build_param_schedulers(
        sgd(),
        {"type": "CosineAnnealingLR", "begin": 1, "T_max": 2, "convert_to_iter_based": True},
        epoch_length=3,
        max_epochs=4,
    )
    assert isinstance(built, list)
    scheduler = built[0]
    assert (scheduler.begin, scheduler.end, scheduler.by_epoch, scheduler.T_max) == (
        3,
        12,
        False,
        6,
    )
    direct = sch.CosineAnnealingLR.build_iter_from_epoch(
        sgd(), begin=1, end=4, T_max=2, epoch_length=3
    )
    assert direct.schedules == scheduler.schedules


def test_built_schedulers_pass_through_and_several_optimizers_get_their_own() -> None:
    gen, disc = sgd(0.1), sgd(0.2)
    ready = sch.StepLR(gen, step_size=1)
    assert sch.build_param_schedulers(gen, [ready]) == [ready]
    shared = sch.build_param_schedulers(
        {"gen": gen, "disc": disc}, {"type": "ExponentialLR", "gamma": 0.5}
    )
    assert isinstance(shared, dict) and sorted(shared) == ["disc", "gen"]
    assert shared["disc"][0].optimizer is disc and shared["gen"][0].optimizer is gen
    by_name = sch.build_param_schedulers(
        {"gen": sgd(), "disc": sgd()},
        {"gen": [{"type": "StepLR", "step_size": 1}], "disc": {"type": "PolyLR"}},
        max_epochs=3,
    )
    assert isinstance(by_name, dict)
    assert [type(s).__name__ for s in by_name["gen"] + by_name["disc"]] == ["StepLR", "PolyLR"]


class UserLR(sch.LinearLR):
    """A user's subclass with its own constructor, as configs may name."""

    def __init__(self, optimizer: Any, warm: int, **kwargs: Any) -> None:
        super().__init__(optimizer, start_factor=0.5, end=warm, **kwargs)


def test_a_subclass_with_its_own_constructor_keeps_its_signature() -> None:
    assert list(inspect.signature(UserLR).parameters) == ["optimizer", "warm", "kwargs"]
    built = sch.build_param_schedulers(
        sgd(), {"type": UserLR, "warm": 2, "convert_to_iter_based": True}, epoch_length=2
    )
    assert isinstance(built, list) and (built[0].end, built[0].by_epoch) == (4, False)


def test_errors_name_the_bad_key() -> None:
    optimizer = sgd()
    with pytest.raises(
        RegistryError, match=r"MultiStepLr is not in the fengine::[a-z_ ]+ registry.*did you mean 'MultiStepLR'"
    ):
        sch.build_param_schedulers(optimizer, {"type": "MultiStepLr", "milestones": [1]})
    with pytest.raises(ValueError, match=r"milestones must be in increasing order, got \[3, 1\]"):
        sch.build_param_schedulers(optimizer, {"type": "MultiStepLR", "milestones": [3, 1]})
    with pytest.raises(ValueError, match="begin=4, end=4"):
        sch.build_param_schedulers(
            optimizer, {"type": "StepLR", "step_size": 1, "begin": 4}, max_epochs=4
        )
    with pytest.raises(ConfigError, match=r"MultiStepLR .*rejects its arguments.*'milestone'"):
        sch.build_param_schedulers(optimizer, {"type": "MultiStepLR", "milestone": [1]})
    with pytest.raises(ValueError, match="needs by_epoch=True and the epoch length"):
        sch.build_param_schedulers(optimizer, {"type": "LinearLR", "convert_to_iter_based": True})
    with pytest.raises(ValueError, match="by_epoch=False"):
        sch.build_param_schedulers(
            optimizer,
            {"type": "LinearLR", "by_epoch": False, "convert_to_iter_based": True},
            epoch_length=2,
        )
    with pytest.raises(TypeError, match="config dict or a built scheduler, got str"):
        sch.build_param_schedulers(optimizer, ["LinearLR"])
    with pytest.raises(TypeError, match="single optimizer"):
        sch.build_param_schedulers(optimizer, {"gen": [{"type": "LinearLR"}]})
    with pytest.raises(KeyError, match=r"no schedulers for optimizer\(s\) \['disc'\]"):
        sch.build_param_schedulers({"gen": sgd(), "disc": sgd()}, {"gen": {"type": "LinearLR"}})
