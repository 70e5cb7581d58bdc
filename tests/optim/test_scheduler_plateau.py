"""ReduceOnPlateau: MMEngine-measured tables, agreement with torch's ReduceLROnPlateau, errors.

The tables' expected values were measured by running MMEngine 0.10.7's ``ReduceOnPlateauLR`` /
``ReduceOnPlateauMomentum`` on a ``torch.optim.SGD(momentum=0.9)``: for each metric, ``step()``
(the end of a training epoch) then ``step({key: metric})`` (the end of validation), reading every
group's value after the second call.
"""

from __future__ import annotations

import io
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fengine.optim.scheduler as sch
from fengine.optim.scheduler.plateau import PlateauRule, PlateauState, plateau_step


def sgd(*lrs: float) -> torch.optim.SGD:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=lrs[0], momentum=0.9)


def run(scheduler: Any, key: str, metrics: list[float]) -> list[list[float]]:
    out = []
    for metric in metrics:
        scheduler.step()
        scheduler.step({key: metric})
        out.append([g[scheduler.param_name] for g in scheduler.optimizer.param_groups])
    return out


def test_mmengine_table_less_rel_with_cooldown_and_floor() -> None:
    scheduler = sch.ReduceOnPlateauLR(sgd(0.1), patience=1, factor=0.5, cooldown=1, min_value=0.02)
    metrics = [1.0, 0.9, 0.95, 0.95, 0.95, 0.8, 0.85, 0.85, 0.85, 0.85, 0.85, 0.85]
    expected = [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.02, 0.02]
    assert run(scheduler, "loss", metrics) == [[v] for v in expected]


def test_mmengine_table_greater_abs_window_and_per_group_floor() -> None:
    scheduler = sch.ReduceOnPlateauLR(
        sgd(0.1, 0.04), monitor="acc", rule="greater", threshold=0.05, threshold_rule="abs",
        patience=0, factor=0.3, begin=2, end=8, min_value=[0.01, 0.005],
    )  # fmt: skip
    metrics = [0.5, 0.52, 0.53, 0.6, 0.62, 0.62, 0.7, 0.7, 0.7, 0.7]
    expected = [[0.1, 0.04]] * 2 + [[0.03, 0.012]] * 2 + [[0.01, 0.005]] * 6
    assert run(scheduler, "acc", metrics) == expected


def test_mmengine_table_momentum_skips_reductions_below_eps() -> None:
    scheduler = sch.ReduceOnPlateauMomentum(
        sgd(0.1), patience=1, factor=0.5, threshold=1e-3, eps=0.3
    )
    expected = [[0.9], [0.9], [0.45], [0.45], [0.45], [0.45]]
    assert run(scheduler, "loss", [3.0, 3.0, 3.0, 3.0, 2.9999, 3.0]) == expected


@settings(max_examples=50)
@given(
    metrics=st.lists(st.floats(0.0, 2.0), min_size=1, max_size=25),
    rule=st.sampled_from(["less", "greater"]),
    threshold_rule=st.sampled_from(["rel", "abs"]),
    threshold=st.floats(0.0, 0.1),
    patience=st.integers(0, 3),
    cooldown=st.integers(0, 3),
    factor=st.floats(0.05, 0.9),
    min_value=st.floats(0.0, 0.01),
    eps=st.sampled_from([1e-8, 1e-3]),
)
def test_matches_torch_reduce_lr_on_plateau(
    metrics: list[float], rule: str, threshold_rule: str, threshold: float, patience: int,
    cooldown: int, factor: float, min_value: float, eps: float,
) -> None:  # fmt: skip
    reference_opt = sgd(0.1, 0.03)
    reference = torch.optim.lr_scheduler.ReduceLROnPlateau(
        reference_opt, mode="min" if rule == "less" else "max", factor=factor, patience=patience,
        threshold=threshold, threshold_mode=threshold_rule, cooldown=cooldown, min_lr=min_value,
        eps=eps,
    )  # fmt: skip
    ours = sch.ReduceOnPlateauLR(
        sgd(0.1, 0.03), rule=rule, factor=factor, patience=patience, threshold=threshold,
        threshold_rule=threshold_rule, cooldown=cooldown, min_value=min_value, eps=eps,
    )  # fmt: skip
    for metric in metrics:
        reference.step(metric)
        ours.step()
        ours.step({"loss": metric})
        assert ours.get_last_value() == [g["lr"] for g in reference_opt.param_groups]


def test_plateau_step_is_pure_and_resets_after_a_reduction() -> None:
    rule = PlateauRule(patience=1, cooldown=2)
    state = PlateauState(best=1.0, num_bad_epochs=1)
    after, reduce = plateau_step(rule, state, 1.0)
    assert reduce and after == PlateauState(best=1.0, num_bad_epochs=0, cooldown_counter=2)
    assert state == PlateauState(best=1.0, num_bad_epochs=1)
    assert plateau_step(rule, after, 2.0) == (PlateauState(1.0, 0, 1), False)  # cooling down


def test_state_round_trip_through_a_checkpoint() -> None:
    metrics = [1.0, 1.0, 0.5, 0.6, 0.6, 0.6, 0.7, 0.2, 0.3, 0.3]
    first = sch.ReduceOnPlateauLR(sgd(0.1), patience=1, cooldown=1, factor=0.5)
    run(first, "loss", metrics[:4])
    buffer = io.BytesIO()
    torch.save({"opt": first.optimizer.state_dict(), "s": first.state_dict()}, buffer)
    tail = run(first, "loss", metrics[4:])
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    second = sch.ReduceOnPlateauLR(sgd(0.1))  # constructed with other settings: the state wins
    second.optimizer.load_state_dict(saved["opt"])
    second.load_state_dict(saved["s"])
    assert (second.patience, second.cooldown, second.factor) == (1, 1, 0.5)
    assert run(second, "loss", metrics[4:]) == tail


class WrapperWithBaseGroup:
    """An OptimWrapper of several groups lists one extra base-settings group in param_groups."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.base = {"params": [], "lr": optimizer.defaults["lr"]}

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return [*self.optimizer.param_groups, self.base]


def test_min_value_list_covers_a_wrappers_base_group() -> None:
    wrapper = WrapperWithBaseGroup(sgd(0.1, 0.2))
    scheduler = sch.ReduceOnPlateauLR(wrapper, patience=0, factor=0.1, min_value=[0.05, 0.03])
    assert scheduler.min_values == [0.05, 0.03, 0.03]
    run(scheduler, "loss", [1.0, 1.0])
    assert scheduler.get_last_value() == [0.05, 0.03, 0.03]
    with pytest.raises(ValueError, match="expected 2 values for min_value, got 3"):
        sch.ReduceOnPlateauLR(wrapper, min_value=[0.1, 0.1, 0.1])


def test_errors_name_the_argument() -> None:
    optimizer = sgd(0.1)
    with pytest.raises(ValueError, match="by epoch only, got by_epoch=False"):
        sch.ReduceOnPlateauLR(optimizer, by_epoch=False)
    with pytest.raises(ValueError, match="convert_to_iter_based=True"):
        sch.ReduceOnPlateauLR(optimizer, convert_to_iter_based=True, epoch_length=3)
    with pytest.raises(ValueError, match=r"factor must lie in \[0, 1\), got 1.0"):
        sch.ReduceOnPlateauLR(optimizer, factor=1.0)
    with pytest.raises(ValueError, match="rule must be one of"):
        sch.ReduceOnPlateauLR(optimizer, rule="lower")
    with pytest.raises(ValueError, match=r"threshold must be >= 0, got -0\.1"):
        sch.ReduceOnPlateauLR(optimizer, threshold=-0.1)
    scheduler = sch.ReduceOnPlateauLR(optimizer, monitor="acc")
    with pytest.raises(TypeError, match=r"metrics must be a dict.*got list"):
        scheduler.step([0.5])  # type: ignore[arg-type]
    with pytest.raises(KeyError, match=r"monitor 'acc' is not among the metrics \['loss'\]"):
        scheduler.step({"loss": 0.5})
