"""core.schedule: values against torch.optim.lr_scheduler, the documented closed forms, windows,
conversion to iterations and composition."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim import lr_scheduler as tl

from fengine.core import schedule as fs

REL = 1e-12
bases = st.floats(1e-4, 10.0)
factors = st.floats(0.01, 1.0)
gammas = st.floats(0.05, 1.0)


def torch_values(
    make: Callable[[torch.optim.Optimizer], tl.LRScheduler], base: float, n: int
) -> list[float]:
    """The lr in effect during each of ``n`` steps, stepping a torch scheduler after each."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=base)
    scheduler = make(opt)
    values = []
    for _ in range(n):
        values.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return values


def assert_close(ours: list[float], reference: list[float]) -> None:
    assert len(ours) == len(reference)
    for i, (a, b) in enumerate(zip(ours, reference)):
        assert math.isclose(a, b, rel_tol=REL, abs_tol=0.0), (i, a, b)


# ---- against torch.optim.lr_scheduler -------------------------------------------------------


@settings(max_examples=30)
@given(base=bases, step_size=st.integers(1, 7), gamma=gammas, n=st.integers(1, 40))
def test_step_matches_torch(base: float, step_size: int, gamma: float, n: int) -> None:
    ours = fs.trajectory(fs.Step(step_size=step_size, gamma=gamma), base, n)
    assert_close(ours, torch_values(lambda o: tl.StepLR(o, step_size, gamma), base, n))


@settings(max_examples=30)
@given(
    base=bases,
    milestones=st.lists(st.integers(0, 30), max_size=5).map(sorted),
    gamma=gammas,
    n=st.integers(1, 40),
)
def test_multistep_matches_torch(base: float, milestones: list[int], gamma: float, n: int) -> None:
    ours = fs.trajectory(fs.MultiStep(milestones=milestones, gamma=gamma), base, n)
    assert_close(ours, torch_values(lambda o: tl.MultiStepLR(o, milestones, gamma), base, n))


@settings(max_examples=30)
@given(base=bases, gamma=gammas, n=st.integers(1, 60))
def test_exponential_matches_torch(base: float, gamma: float, n: int) -> None:
    ours = fs.trajectory(fs.Exponential(gamma=gamma), base, n)
    assert_close(ours, torch_values(lambda o: tl.ExponentialLR(o, gamma), base, n))


@settings(max_examples=40)
@given(
    base=bases, t_max=st.integers(1, 30), eta_min=st.floats(0.0, 1e-4), periods=st.integers(1, 3)
)
def test_cosine_matches_torch_through_restart_branch(
    base: float, t_max: int, eta_min: float, periods: int
) -> None:
    n = periods * 2 * t_max + 1  # past T_max, where the special up-swing branch runs
    ours = fs.trajectory(fs.Cosine(T_max=t_max, eta_min=eta_min), base, n)
    assert_close(ours, torch_values(lambda o: tl.CosineAnnealingLR(o, t_max, eta_min), base, n))


@settings(max_examples=30)
@given(
    base=bases,
    start=factors,
    stop=st.floats(0.0, 1.0),
    total=st.integers(0, 30),
    n=st.integers(1, 40),
)
def test_linear_matches_torch(base: float, start: float, stop: float, total: int, n: int) -> None:
    ours = fs.trajectory(fs.Linear(start_factor=start, end_factor=stop, end=total + 1), base, n)
    reference = torch_values(lambda o: tl.LinearLR(o, start, stop, total), base, n)
    assert_close(ours, reference)


@settings(max_examples=30)
@given(base=bases, factor=factors, total=st.integers(0, 30), n=st.integers(1, 40))
def test_constant_matches_torch(base: float, factor: float, total: int, n: int) -> None:
    ours = fs.trajectory(fs.Constant(factor=factor, end=total + 1), base, n)
    assert_close(ours, torch_values(lambda o: tl.ConstantLR(o, factor, total), base, n))


@settings(max_examples=30)
@given(base=bases, total=st.integers(1, 60), power=st.floats(0.1, 4.0), n=st.integers(1, 70))
def test_poly_matches_torch_polynomial(base: float, total: int, power: float, n: int) -> None:
    ours = fs.trajectory(fs.Poly(power=power, end=total + 1), base, n)
    assert_close(ours, torch_values(lambda o: tl.PolynomialLR(o, total, power), base, n))


@settings(max_examples=40)
@given(
    eta_max=st.floats(1e-3, 5.0),
    total=st.integers(2, 60),
    pct=st.floats(0.05, 0.95),
    strategy=st.sampled_from(["cos", "linear"]),
    div=st.floats(2.0, 100.0),
    final_div=st.floats(2.0, 1e4),
    three_phase=st.booleans(),
)
def test_onecycle_matches_torch(
    eta_max: float,
    total: int,
    pct: float,
    strategy: str,
    div: float,
    final_div: float,
    three_phase: bool,
) -> None:
    schedule = fs.OneCycle(
        eta_max=eta_max, total_steps=total, pct_start=pct, anneal_strategy=strategy,
        div_factor=div, final_div_factor=final_div, three_phase=three_phase,
    )  # fmt: skip

    def make(o: torch.optim.Optimizer) -> tl.LRScheduler:
        return tl.OneCycleLR(
            o, eta_max, total_steps=total, pct_start=pct, anneal_strategy=strategy,  # type: ignore[arg-type]
            cycle_momentum=False, div_factor=div, final_div_factor=final_div, three_phase=three_phase,
        )  # fmt: skip

    try:
        reference = torch_values(make, 1.0, total)
    except ZeroDivisionError:  # a phase of zero length: both refuse it
        with pytest.raises(ZeroDivisionError):
            fs.trajectory(schedule, 1.0, total)
        return
    assert_close(fs.trajectory(schedule, 1.0, total), reference)


def test_onecycle_refuses_to_step_past_total_steps() -> None:
    schedule = fs.OneCycle(eta_max=1.0, total_steps=4)
    assert len(fs.trajectory(schedule, 1.0, 5)) == 5  # steps 0..4 are defined
    with pytest.raises(ValueError, match="total_steps=4"):
        fs.trajectory(schedule, 1.0, 6)


# ---- closed forms of the docstrings (families torch lacks, and windows) ---------------------


@settings(max_examples=40)
@given(
    base=bases,
    periods=st.lists(st.integers(1, 8), min_size=1, max_size=4),
    data=st.data(),
    ratio=st.booleans(),
    low=st.floats(0.0, 0.5),
)
def test_cosine_restart_closed_form(
    base: float, periods: list[int], data: st.DataObject, ratio: bool, low: float
) -> None:
    weights = data.draw(st.lists(st.floats(0.1, 1.0), min_size=len(periods), max_size=len(periods)))
    kwargs = {"eta_min_ratio": low} if ratio else {"eta_min": low * base}
    schedule = fs.CosineRestart(periods=periods, restart_weights=weights, **kwargs)
    n = sum(periods) + 3
    values = fs.trajectory(schedule, base, n)
    eta_min = low * base
    expected, start = [], 0
    for period, weight in zip(periods, weights):
        for j in range(period):
            peak = weight * base
            expected.append(eta_min + (peak - eta_min) * (1 + math.cos(math.pi * j / period)) / 2)
        start += period
    expected += [expected[-1]] * 3  # after the last period the value is kept
    for i, (a, b) in enumerate(zip(values, expected)):
        assert math.isclose(a, b, rel_tol=1e-11, abs_tol=1e-15 * base), (i, a, b)


@settings(max_examples=40)
@given(
    base=bases,
    begin=st.integers(0, 5),
    length=st.integers(1, 20),
    start=factors,
    stop=st.floats(0.0, 1.0),
    extra=st.integers(0, 5),
)
def test_linear_window_closed_form(
    base: float, begin: int, length: int, start: float, stop: float, extra: int
) -> None:
    schedule = fs.Linear(start_factor=start, end_factor=stop, begin=begin, end=begin + length)
    values = fs.trajectory(schedule, base, begin + length + extra)
    n = length - 1
    for step, value in enumerate(values):
        if step < begin:
            expected = base  # the window has not opened
        else:
            k = min(step - begin, n)
            expected = base * (start + (stop - start) * (k / n if n else 0.0))
        assert math.isclose(value, expected, rel_tol=1e-11, abs_tol=1e-15 * base), (step, value)


@settings(max_examples=30)
@given(base=bases, length=st.integers(2, 30), eta_min=st.floats(0.0, 1e-3), power=st.floats(0.5, 3))
def test_poly_closed_form_with_eta_min(
    base: float, length: int, eta_min: float, power: float
) -> None:
    values = fs.trajectory(fs.Poly(eta_min=eta_min, power=power, end=length), base, length + 2)
    n = length - 1
    for k, value in enumerate(values):
        k = min(k, n)
        expected = eta_min + (base - eta_min) * (1 - k / n) ** power
        assert math.isclose(value, expected, rel_tol=1e-11, abs_tol=1e-14), (k, value, expected)


def test_cosine_defaults_t_max_to_the_window_and_uses_eta_min_ratio() -> None:
    values = fs.trajectory(fs.Cosine(eta_min_ratio=0.1, begin=2, end=6), 1.0, 8)
    expected = [0.1 + 0.9 * (1 + math.cos(math.pi * k / 4)) / 2 for k in range(4)]
    assert values[:2] == [1.0, 1.0]
    assert values[2:6] == pytest.approx(expected, rel=REL)
    assert values[6:] == [values[5], values[5]]  # frozen after the window


# ---- conversion, composition, value_at --------------------------------------------------------


@settings(max_examples=40)
@given(
    base=bases,
    epoch_length=st.integers(1, 5),
    milestones=st.lists(st.integers(0, 6), max_size=3).map(sorted),
    step_size=st.integers(1, 3),
    begin=st.integers(0, 2),
    gamma=gammas,
)
def test_converted_piecewise_schedules_match_their_epoch_values(
    base: float, epoch_length: int, milestones: list[int], step_size: int, begin: int, gamma: float
) -> None:
    epochs = 8
    for schedule in (
        fs.MultiStep(milestones=milestones, gamma=gamma, begin=begin, end=epochs),
        fs.Step(step_size=step_size, gamma=gamma, begin=begin, end=epochs),
    ):
        by_epoch = fs.trajectory(schedule, base, epochs)
        converted = fs.convert_to_iter_based(schedule, epoch_length)
        assert not converted.by_epoch
        assert (converted.begin, converted.end) == (begin * epoch_length, epochs * epoch_length)
        by_iter = fs.trajectory(converted, base, epochs * epoch_length)
        assert by_iter == [by_epoch[i // epoch_length] for i in range(epochs * epoch_length)]


def test_conversion_rescales_step_counted_fields_only() -> None:
    assert fs.convert_to_iter_based(fs.Cosine(T_max=3, end=5), 4) == fs.Cosine(
        T_max=12, begin=0, end=20, by_epoch=False
    )
    assert fs.convert_to_iter_based(fs.Exponential(gamma=0.5, begin=1), 3) == fs.Exponential(
        gamma=0.5, begin=3, end=fs.INF, by_epoch=False
    )
    restart = fs.convert_to_iter_based(
        fs.CosineRestart(periods=[2, 3], restart_weights=[1, 0.5], eta_min=0.0), 2
    )
    assert restart.periods == (4, 6)  # type: ignore[attr-defined]
    assert fs.convert_to_iter_based(fs.OneCycle(eta_max=1.0, total_steps=5), 2).total_steps == 10  # type: ignore[attr-defined]


def test_conversion_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="by_epoch=False"):
        fs.convert_to_iter_based(fs.Exponential(gamma=0.5, by_epoch=False), 3)
    with pytest.raises(ValueError, match="epoch_length must be an int > 0, got 0"):
        fs.convert_to_iter_based(fs.Exponential(gamma=0.5), 0)


def test_spec_example_warmup_by_iteration_then_multistep_by_epoch() -> None:
    # Spec §6.5: epoch loop 3 x 4 iterations, lr 0.1.
    schedules = [
        fs.MultiStep(milestones=[1, 2], end=3),
        fs.Linear(start_factor=0.5, end=2, by_epoch=False),
    ]
    values = fs.trajectory(schedules, 0.1, 12, epoch_length=4)
    assert values == pytest.approx([0.05, 0.1, 0.1, 0.1] + [0.01] * 4 + [0.001] * 4, rel=REL)
    assert [fs.value_at(schedules, 0.1, i, epoch_length=4) for i in range(12)] == values


@settings(max_examples=30)
@given(base=bases, warm=st.integers(1, 6), total=st.integers(8, 30), start=factors)
def test_warmup_then_cosine_without_eta_min_is_the_product(
    base: float, warm: int, total: int, start: float
) -> None:
    # With eta_min = 0 every update is multiplicative, so chaining is the product of factors.
    schedules = [
        fs.Linear(start_factor=start, end=warm, by_epoch=False),
        fs.Cosine(T_max=total, by_epoch=False),
    ]
    values = fs.trajectory(schedules, base, total)
    warmup = fs.trajectory(schedules[0], 1.0, total)
    cosine = fs.trajectory(schedules[1], base, total)
    assert_close(values, [w * c for w, c in zip(warmup, cosine)])


def test_reachable_as_fc_schedule() -> None:
    import fengine.core as fc

    assert fc.schedule is fs and fc.schedule.value_at(fs.Exponential(gamma=0.5), 2.0, 3) == 0.25


def test_value_at_needs_epoch_length_to_mix_units() -> None:
    mixed = [fs.Exponential(gamma=0.5), fs.Exponential(gamma=0.5, by_epoch=False)]
    with pytest.raises(ValueError, match="pass epoch_length"):
        fs.value_at(mixed, 1.0, 3)
    with pytest.raises(ValueError, match="step must be an int >= 0, got -1"):
        fs.value_at(mixed[0], 1.0, -1)
    assert fs.value_at(mixed, 1.0, 4, epoch_length=2) == 0.5**4 * 0.5**2


def test_record_validation_names_the_field() -> None:
    cases: list[tuple[Callable[[], object], str]] = [
        (lambda: fs.Exponential(gamma=0.5, begin=3, end=3), "begin=3, end=3"),
        (lambda: fs.Exponential(gamma=0.5, begin=-1), "begin must be an int >= 0, got -1"),
        (lambda: fs.MultiStep(milestones=[3, 1]), r"increasing order, got \[3, 1\]"),
        (
            lambda: fs.MultiStep(milestones=[1, 2.5]),
            r"milestones must be a list of ints >= 0, got \(1, 2.5\)",
        ),
        (lambda: fs.MultiStep(milestones=3), "milestones must be a list of ints"),  # type: ignore[arg-type]
        (lambda: fs.Step(step_size=0), "step_size must be an int > 0, got 0"),
        (lambda: fs.Linear(start_factor=0.0), r"start_factor must lie in \(0, 1\], got 0.0"),
        (lambda: fs.Linear(end_factor=1.5), r"end_factor must lie in \[0, 1\], got 1.5"),
        (lambda: fs.Constant(factor=0.0, end=5), "factor=0 cannot be undone at end=5"),
        (lambda: fs.Cosine(eta_min=0.0, eta_min_ratio=0.1), "not both"),
        (lambda: fs.Cosine(T_max=0), "T_max must be an int > 0, got 0"),
        (lambda: fs.CosineRestart(periods=[2]), "exactly one of eta_min and eta_min_ratio"),
        (
            lambda: fs.CosineRestart(periods=[2, 0], restart_weights=[1, 1], eta_min=0.0),
            r"periods must be a non-empty",
        ),
        (lambda: fs.CosineRestart(periods=[2, 3], eta_min=0.0), "same length"),
        (lambda: fs.OneCycle(anneal_strategy="exp"), "anneal_strategy must be one of"),
        (lambda: fs.OneCycle(pct_start=1.5), r"pct_start must lie in \[0, 1\]"),
    ]
    for make, message in cases:
        with pytest.raises(ValueError, match=message):
            make()
