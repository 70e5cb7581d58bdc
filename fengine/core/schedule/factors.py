"""The schedule families that scale the value by factors: Constant, Linear, MultiStep, Step, Exponential.

Each multiplies whatever value the other schedules left (MMEngine's chained recursion), by a
fixed factor, a linearly moving one, or ``gamma`` at milestones or at every step; the
:mod:`~fengine.core.schedule.annealing` families instead anneal towards a floor or a target.
"""

from __future__ import annotations

from typing import Any

import attrs

from fengine.core import plain
from fengine.core.schedule.base import (
    INF,
    Schedule,
    ScheduleError,
    as_tuple,
    int_list,
    positive_int,
    unit_interval,
)


@plain.register("schedule.Constant")
@attrs.frozen(kw_only=True)
class Constant(Schedule):
    """Multiply by ``factor`` until the last step of the window: ``base·factor`` for ``k < n``,
    ``base`` from ``k = n`` on.

    Raises:
        ValueError: ``factor`` outside ``[0, 1]``, or ``factor == 0`` with a finite ``end``
            (the value could not be restored at the end of the window).
    """

    factor: float = attrs.field(default=1.0 / 3, validator=unit_interval)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.factor == 0 and self.end != INF:
            raise ScheduleError(f"factor=0 cannot be undone at end={self.end}; use a factor in (0, 1]")

    def update(self, value: float, base: float, step: int) -> float:
        if step == 0:
            return value * self.factor
        if step == self.end - self.begin - 1:
            return value * (1.0 / self.factor)
        return value


@plain.register("schedule.Linear")
@attrs.frozen(kw_only=True)
class Linear(Schedule):
    """Scale linearly from ``start_factor`` to ``end_factor`` over the window:
    ``base·(s + (e - s)·k / n)``.

    Raises:
        ValueError: ``start_factor`` outside ``(0, 1]`` or ``end_factor`` outside ``[0, 1]``.
    """

    start_factor: float = attrs.field(default=1.0 / 3)
    end_factor: float = attrs.field(default=1.0, validator=unit_interval)

    @start_factor.validator
    def _check_start(self, attribute: attrs.Attribute[float], value: float) -> None:
        if not 0.0 < value <= 1.0:  # 0 would divide by zero at the second step
            raise ScheduleError(f"start_factor must lie in (0, 1], got {value!r}")

    def update(self, value: float, base: float, step: int) -> float:
        if step == 0:
            return value * self.start_factor
        slope = self.end_factor - self.start_factor
        total = self.end - self.begin - 1
        return value * (1.0 + slope / (total * self.start_factor + (step - 1) * slope))


@plain.register("schedule.MultiStep")
@attrs.frozen(kw_only=True)
class MultiStep(Schedule):
    """Multiply by ``gamma`` at each milestone: ``base·gamma^(number of milestones <= k)``
    (a milestone listed twice counts twice).

    Raises:
        ValueError: a milestone that is not an int >= 0, or milestones out of order.
    """

    milestones: tuple[int, ...] = attrs.field(converter=as_tuple, validator=int_list)
    gamma: float = 0.1

    @milestones.validator
    def _check_order(self, attribute: attrs.Attribute[Any], value: tuple[int, ...]) -> None:
        if list(value) != sorted(value):
            raise ScheduleError(f"milestones must be in increasing order, got {list(value)}")

    def update(self, value: float, base: float, step: int) -> float:
        hits = self.milestones.count(step)
        return value * self.gamma**hits if hits else value

    def _per_epoch_fields(self, epoch_length: int) -> dict[str, Any]:
        return {"milestones": tuple(m * epoch_length for m in self.milestones)}


@plain.register("schedule.Step")
@attrs.frozen(kw_only=True)
class Step(Schedule):
    """Multiply by ``gamma`` every ``step_size`` steps: ``base·gamma^⌊k / step_size⌋``."""

    step_size: int = attrs.field(validator=positive_int)
    gamma: float = 0.1

    def update(self, value: float, base: float, step: int) -> float:
        if step == 0 or step % self.step_size != 0:
            return value
        return value * self.gamma

    def _per_epoch_fields(self, epoch_length: int) -> dict[str, Any]:
        return {"step_size": self.step_size * epoch_length}


@plain.register("schedule.Exponential")
@attrs.frozen(kw_only=True)
class Exponential(Schedule):
    """Multiply by ``gamma`` every step: ``base·gamma^k`` (unchanged by conversion to
    iterations, so a converted schedule decays every iteration, as MMEngine's does)."""

    gamma: float

    def update(self, value: float, base: float, step: int) -> float:
        return value if step == 0 else value * self.gamma

