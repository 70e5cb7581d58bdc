"""The schedule families that anneal: Cosine, CosineRestart, Poly and OneCycle.

Cosine, CosineRestart and Poly map the value affinely towards a floor (``eta_min``); OneCycle
follows its own absolute curve and ignores what other schedules did. The families that only scale
the value are in :mod:`~fengine.core.schedule.factors`.
"""

from __future__ import annotations

import math
from typing import Any, Final

import attrs

from fengine.core import plain
from fengine.core.schedule.base import (
    Schedule,
    ScheduleError,
    as_tuple,
    int_list,
    positive_int,
    unit_interval,
)


def _eta_min(eta_min: float | None, ratio: float | None, base: float) -> float:
    return base * ratio if ratio is not None else eta_min if eta_min is not None else 0.0


@plain.register("schedule.Cosine")
@attrs.frozen(kw_only=True)
class Cosine(Schedule):
    """Cosine annealing (SGDR without restarts):
    ``η_min + (base - η_min)·(1 + cos(π·k / T_max)) / 2``.

    ``T_max`` defaults to ``end - begin``. ``η_min`` is ``eta_min``, or ``base·eta_min_ratio``
    (at most one of the two; neither means 0).

    Raises:
        ValueError: both ``eta_min`` and ``eta_min_ratio`` given, or ``T_max <= 0``.
    """

    T_max: int | None = attrs.field(default=None)
    eta_min: float | None = None
    eta_min_ratio: float | None = None

    @T_max.validator
    def _check_t_max(self, attribute: attrs.Attribute[int | None], value: int | None) -> None:
        if value is not None:
            positive_int(self, attribute, value)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.eta_min is not None and self.eta_min_ratio is not None:
            raise ScheduleError(
                f"give eta_min or eta_min_ratio, not both (got {self.eta_min}, {self.eta_min_ratio})"
            )

    def update(self, value: float, base: float, step: int) -> float:
        if step == 0:
            return value
        t_max = self.T_max or (self.end - self.begin)
        low = _eta_min(self.eta_min, self.eta_min_ratio, base)
        if (step - 1 - t_max) % (2 * t_max) == 0:  # the ratio below would be 0/0 here
            return value + (base - low) * (1 - math.cos(math.pi / t_max)) / 2
        ratio = (1 + math.cos(math.pi * step / t_max)) / (
            1 + math.cos(math.pi * (step - 1) / t_max)
        )
        return ratio * (value - low) + low

    def _per_epoch_fields(self, epoch_length: int) -> dict[str, Any]:
        return {} if self.T_max is None else {"T_max": self.T_max * epoch_length}


@plain.register("schedule.CosineRestart")
@attrs.frozen(kw_only=True)
class CosineRestart(Schedule):
    """Cosine annealing restarted at the end of each period. In period ``i`` (length ``P_i``,
    weight ``w_i``) at local step ``j``: ``η_min + (w_i·base - η_min)·(1 + cos(π·j / P_i)) / 2``;
    after the last period the value is kept.

    Raises:
        ValueError: not exactly one of ``eta_min``/``eta_min_ratio``, a non-positive period, or
            ``periods`` and ``restart_weights`` of different lengths.
    """

    periods: tuple[int, ...] = attrs.field(converter=as_tuple, validator=int_list)
    restart_weights: tuple[float, ...] = attrs.field(default=(1.0,), converter=as_tuple)
    eta_min: float | None = None
    eta_min_ratio: float | None = None

    @periods.validator
    def _check_periods(self, attribute: attrs.Attribute[Any], value: tuple[int, ...]) -> None:
        if not value or 0 in value:
            raise ScheduleError(f"periods must be a non-empty list of ints > 0, got {list(value)}")

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if (self.eta_min is None) == (self.eta_min_ratio is None):
            raise ScheduleError(
                "give exactly one of eta_min and eta_min_ratio, "
                f"got eta_min={self.eta_min}, eta_min_ratio={self.eta_min_ratio}"
            )
        if len(self.periods) != len(self.restart_weights):
            raise ScheduleError(
                f"periods and restart_weights must have the same length, got "
                f"{list(self.periods)} and {list(self.restart_weights)}"
            )

    def update(self, value: float, base: float, step: int) -> float:
        start = 0
        for period, weight in zip(self.periods, self.restart_weights):
            if step < start + period:
                local = step - start
                if local == 0:
                    return base * weight
                low = _eta_min(self.eta_min, self.eta_min_ratio, base)
                ratio = (1 + math.cos(math.pi * local / period)) / (
                    1 + math.cos(math.pi * (local - 1) / period)
                )
                return ratio * (value - low) + low
            start += period
        return value

    def _per_epoch_fields(self, epoch_length: int) -> dict[str, Any]:
        return {"periods": tuple(p * epoch_length for p in self.periods)}


@plain.register("schedule.Poly")
@attrs.frozen(kw_only=True)
class Poly(Schedule):
    """Polynomial decay to ``eta_min`` at the last step of the window:
    ``η_min + (base - η_min)·(1 - k / n)^power``."""

    eta_min: float = 0.0
    power: float = 1.0

    def update(self, value: float, base: float, step: int) -> float:
        if step == 0:
            return value
        remaining = self.end - self.begin - 1 - step
        decay: float = (1 - 1 / (remaining + 1)) ** self.power
        return (value - self.eta_min) * decay + self.eta_min


_ANNEALERS: Final = ("cos", "linear")


@plain.register("schedule.OneCycle")
@attrs.frozen(kw_only=True)
class OneCycle(Schedule):
    """The 1cycle policy: from ``eta_max / div_factor`` up to ``eta_max`` over the first
    ``pct_start`` of ``total_steps`` (default ``end - begin``), then down to
    ``eta_max / div_factor / final_div_factor`` (with ``three_phase``, back to the start value
    first). Each phase anneals from ``a`` to ``b`` as ``b + (a - b)·(1 + cos(π·p)) / 2`` (``'cos'``)
    or ``a + (b - a)·p`` (``'linear'``), ``p`` the fraction of the phase done. Not chained: the
    value ignores what other schedules did, and ``base`` is not used.

    Raises:
        ValueError: ``pct_start`` outside ``[0, 1]``, an unknown ``anneal_strategy``, or
            ``total_steps`` not a positive int; from :meth:`update`, a step past ``total_steps``.
    """

    eta_max: float = 0.0
    total_steps: int | None = attrs.field(default=None)
    pct_start: float = attrs.field(default=0.3, validator=unit_interval)
    anneal_strategy: str = attrs.field(default="cos")
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    three_phase: bool = False

    @total_steps.validator
    def _check_total(self, attribute: attrs.Attribute[int | None], value: int | None) -> None:
        if value is not None:
            positive_int(self, attribute, value)

    @anneal_strategy.validator
    def _check_strategy(self, attribute: attrs.Attribute[str], value: str) -> None:
        if value not in _ANNEALERS:
            raise ScheduleError(f"anneal_strategy must be one of {_ANNEALERS}, got {value!r}")

    def _phases(self) -> list[tuple[float, float, float]]:
        """(last step, start value, end value) of each phase."""
        total = self.total_steps or (self.end - self.begin)
        low = self.eta_max / self.div_factor
        final = low / self.final_div_factor
        rise = (float(self.pct_start * total) - 1, low, self.eta_max)
        if self.three_phase:
            back = (float(2 * self.pct_start * total) - 2, self.eta_max, low)
            return [rise, back, (total - 1, low, final)]
        return [rise, (total - 1, self.eta_max, final)]

    def update(self, value: float, base: float, step: int) -> float:
        total = self.total_steps or (self.end - self.begin)
        if step > total:
            raise ScheduleError(f"OneCycle stepped {step + 1} times, beyond total_steps={total}")
        phases = self._phases()
        index, start_step = 0, 0.0
        while index < len(phases) - 1 and step > phases[index][0]:  # the last phase takes the rest
            start_step = phases[index][0]
            index += 1
        end_step, start, stop = phases[index]
        pct = (step - start_step) / (end_step - start_step)
        if self.anneal_strategy == "cos":
            return stop + (start - stop) / 2.0 * (math.cos(math.pi * pct) + 1)
        return (stop - start) * pct + start

    def _per_epoch_fields(self, epoch_length: int) -> dict[str, Any]:
        return {} if self.total_steps is None else {"total_steps": self.total_steps * epoch_length}

