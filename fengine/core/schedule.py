"""Parameter schedules: MMEngine's scheduler families as pure functions of the step.

A schedule is a frozen record of hyper-parameters and a window ``[begin, end)`` counted in epochs
(``by_epoch=True``) or iterations. :meth:`Schedule.update` is one step of MMEngine's *chained*
recursion: given the parameter's current value, its base (initial) value and the window-relative
step ``k = step - begin``, it returns the next value. Chaining is what lets several schedules act on
one parameter (a warm-up on top of a decay): each multiplies (or affinely maps) whatever value the
others left. :func:`value_at` folds those updates in the order MMEngine's schedulers apply them, so
``value_at(schedules, base, step)`` is the value in effect during ``step`` (0-based), with no state.

Alone, each family follows the closed form given in its docstring (``n = end - begin - 1``); a
window that has ended keeps its last value. Values equal ``torch.optim.lr_scheduler`` (same
recursions, same floating-point operations where torch has the family).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Final

import attrs

#: MMEngine's "no end" for a window (``int(1e9)``).
INF: Final = 1_000_000_000


def _non_negative_int(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{attribute.name} must be an int >= 0, got {value!r}")


def _positive_int(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{attribute.name} must be an int > 0, got {value!r}")


def _unit_interval(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must lie in [0, 1], got {value!r}")


def _as_tuple(values: Any) -> Any:
    """A list or tuple as a tuple; anything else unchanged, for the validator to name."""
    return tuple(values) if isinstance(values, (list, tuple)) else values


def _int_list(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not isinstance(value, tuple) or any(
        isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in value
    ):
        raise ValueError(f"{attribute.name} must be a list of ints >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class Schedule:
    """The window every schedule shares; subclasses add the family's hyper-parameters.

    Args:
        begin: first step (epoch or iteration) at which the schedule acts.
        end: first step at which it no longer acts (``INF``: never stops).
        by_epoch: whether steps count epochs (``True``) or iterations.

    Raises:
        ValueError: ``begin`` or ``end`` not a non-negative int, or ``begin >= end``.
    """

    begin: int = attrs.field(default=0, validator=_non_negative_int)
    end: int = attrs.field(default=INF, validator=_non_negative_int)
    by_epoch: bool = True

    def __attrs_post_init__(self) -> None:
        if self.end <= self.begin:
            raise ValueError(
                f"end must be larger than begin, got begin={self.begin}, end={self.end}"
            )

    def update(self, value: float, base: float, step: int) -> float:
        """One step of the chained recursion at window-relative ``step`` (0 = first step)."""
        raise NotImplementedError

    def _per_epoch_fields(self, epoch_length: int) -> dict[str, Any]:
        """Family fields counted in steps, rescaled from epochs to iterations."""
        return {}


@attrs.frozen(kw_only=True)
class Constant(Schedule):
    """Multiply by ``factor`` until the last step of the window: ``base·factor`` for ``k < n``,
    ``base`` from ``k = n`` on.

    Raises:
        ValueError: ``factor`` outside ``[0, 1]``, or ``factor == 0`` with a finite ``end``
            (the value could not be restored at the end of the window).
    """

    factor: float = attrs.field(default=1.0 / 3, validator=_unit_interval)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.factor == 0 and self.end != INF:
            raise ValueError(f"factor=0 cannot be undone at end={self.end}; use a factor in (0, 1]")

    def update(self, value: float, base: float, step: int) -> float:
        if step == 0:
            return value * self.factor
        if step == self.end - self.begin - 1:
            return value * (1.0 / self.factor)
        return value


@attrs.frozen(kw_only=True)
class Linear(Schedule):
    """Scale linearly from ``start_factor`` to ``end_factor`` over the window:
    ``base·(s + (e - s)·k / n)``.

    Raises:
        ValueError: ``start_factor`` outside ``(0, 1]`` or ``end_factor`` outside ``[0, 1]``.
    """

    start_factor: float = attrs.field(default=1.0 / 3)
    end_factor: float = attrs.field(default=1.0, validator=_unit_interval)

    @start_factor.validator
    def _check_start(self, attribute: attrs.Attribute[float], value: float) -> None:
        if not 0.0 < value <= 1.0:  # 0 would divide by zero at the second step
            raise ValueError(f"start_factor must lie in (0, 1], got {value!r}")

    def update(self, value: float, base: float, step: int) -> float:
        if step == 0:
            return value * self.start_factor
        slope = self.end_factor - self.start_factor
        total = self.end - self.begin - 1
        return value * (1.0 + slope / (total * self.start_factor + (step - 1) * slope))


def _eta_min(eta_min: float | None, ratio: float | None, base: float) -> float:
    return base * ratio if ratio is not None else eta_min if eta_min is not None else 0.0


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
            _positive_int(self, attribute, value)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if self.eta_min is not None and self.eta_min_ratio is not None:
            raise ValueError(
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


@attrs.frozen(kw_only=True)
class CosineRestart(Schedule):
    """Cosine annealing restarted at the end of each period. In period ``i`` (length ``P_i``,
    weight ``w_i``) at local step ``j``: ``η_min + (w_i·base - η_min)·(1 + cos(π·j / P_i)) / 2``;
    after the last period the value is kept.

    Raises:
        ValueError: not exactly one of ``eta_min``/``eta_min_ratio``, a non-positive period, or
            ``periods`` and ``restart_weights`` of different lengths.
    """

    periods: tuple[int, ...] = attrs.field(converter=_as_tuple, validator=_int_list)
    restart_weights: tuple[float, ...] = attrs.field(default=(1.0,), converter=_as_tuple)
    eta_min: float | None = None
    eta_min_ratio: float | None = None

    @periods.validator
    def _check_periods(self, attribute: attrs.Attribute[Any], value: tuple[int, ...]) -> None:
        if not value or 0 in value:
            raise ValueError(f"periods must be a non-empty list of ints > 0, got {list(value)}")

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        if (self.eta_min is None) == (self.eta_min_ratio is None):
            raise ValueError(
                "give exactly one of eta_min and eta_min_ratio, "
                f"got eta_min={self.eta_min}, eta_min_ratio={self.eta_min_ratio}"
            )
        if len(self.periods) != len(self.restart_weights):
            raise ValueError(
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


@attrs.frozen(kw_only=True)
class MultiStep(Schedule):
    """Multiply by ``gamma`` at each milestone: ``base·gamma^(number of milestones <= k)``
    (a milestone listed twice counts twice).

    Raises:
        ValueError: a milestone that is not an int >= 0, or milestones out of order.
    """

    milestones: tuple[int, ...] = attrs.field(converter=_as_tuple, validator=_int_list)
    gamma: float = 0.1

    @milestones.validator
    def _check_order(self, attribute: attrs.Attribute[Any], value: tuple[int, ...]) -> None:
        if list(value) != sorted(value):
            raise ValueError(f"milestones must be in increasing order, got {list(value)}")

    def update(self, value: float, base: float, step: int) -> float:
        hits = self.milestones.count(step)
        return value * self.gamma**hits if hits else value

    def _per_epoch_fields(self, epoch_length: int) -> dict[str, Any]:
        return {"milestones": tuple(m * epoch_length for m in self.milestones)}


@attrs.frozen(kw_only=True)
class Step(Schedule):
    """Multiply by ``gamma`` every ``step_size`` steps: ``base·gamma^⌊k / step_size⌋``."""

    step_size: int = attrs.field(validator=_positive_int)
    gamma: float = 0.1

    def update(self, value: float, base: float, step: int) -> float:
        if step == 0 or step % self.step_size != 0:
            return value
        return value * self.gamma

    def _per_epoch_fields(self, epoch_length: int) -> dict[str, Any]:
        return {"step_size": self.step_size * epoch_length}


@attrs.frozen(kw_only=True)
class Exponential(Schedule):
    """Multiply by ``gamma`` every step: ``base·gamma^k`` (unchanged by conversion to
    iterations, so a converted schedule decays every iteration, as MMEngine's does)."""

    gamma: float

    def update(self, value: float, base: float, step: int) -> float:
        return value if step == 0 else value * self.gamma


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
    pct_start: float = attrs.field(default=0.3, validator=_unit_interval)
    anneal_strategy: str = attrs.field(default="cos")
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    three_phase: bool = False

    @total_steps.validator
    def _check_total(self, attribute: attrs.Attribute[int | None], value: int | None) -> None:
        if value is not None:
            _positive_int(self, attribute, value)

    @anneal_strategy.validator
    def _check_strategy(self, attribute: attrs.Attribute[str], value: str) -> None:
        if value not in _ANNEALERS:
            raise ValueError(f"anneal_strategy must be one of {_ANNEALERS}, got {value!r}")

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
            raise ValueError(f"OneCycle stepped {step + 1} times, beyond total_steps={total}")
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


def convert_to_iter_based(schedule: Schedule, epoch_length: int) -> Schedule:
    """The same schedule counted in iterations, as MMEngine's ``convert_to_iter_based=True``.

    ``begin`` and ``end`` (unless ``INF``) and every step-counted hyper-parameter (``step_size``,
    ``milestones``, ``T_max``, ``periods``, ``total_steps``) are multiplied by ``epoch_length``;
    factors (``gamma``, ...) are kept, so an exponential decay then acts every iteration.

    Args:
        schedule: an epoch-based schedule.
        epoch_length: iterations per epoch (``len(train_dataloader)``).

    Returns:
        The iteration-based schedule (``by_epoch=False``).

    Raises:
        ValueError: ``schedule.by_epoch`` is ``False`` or ``epoch_length`` is not a positive int.
    """
    if not schedule.by_epoch:
        raise ValueError(
            f"only epoch-based schedules can be converted to iterations, got by_epoch=False "
            f"for {type(schedule).__name__}"
        )
    if isinstance(epoch_length, bool) or not isinstance(epoch_length, int) or epoch_length <= 0:
        raise ValueError(f"epoch_length must be an int > 0, got {epoch_length!r}")
    end = schedule.end if schedule.end == INF else int(schedule.end * epoch_length)
    return attrs.evolve(
        schedule,
        begin=int(schedule.begin * epoch_length),
        end=end,
        by_epoch=False,
        **schedule._per_epoch_fields(epoch_length),
    )


def advance(schedule: Schedule, value: float, base: float, step: int) -> float:
    """Apply ``schedule`` at absolute ``step`` (in its own unit) if its window holds that step."""
    if schedule.begin <= step < schedule.end:
        return schedule.update(value, base, step - schedule.begin)
    return value


def trajectory(
    schedules: Schedule | Sequence[Schedule],
    base: float,
    steps: int,
    *,
    epoch_length: int | None = None,
) -> list[float]:
    """The value in effect during each of the first ``steps`` steps, in one pass.

    ``trajectory(schedules, base, n)[i] == value_at(schedules, base, i)``; the stepping order is
    described there.

    Args:
        schedules: one schedule, or several composed over their windows.
        base: the parameter's initial value (``initial_lr``).
        steps: how many values to return.
        epoch_length: iterations per epoch, to mix epoch- and iteration-based schedules.

    Returns:
        ``steps`` values, the first being the value once every schedule is built.

    Raises:
        ValueError: mixed units without ``epoch_length``, or a non-positive ``epoch_length``.
    """
    group = (schedules,) if isinstance(schedules, Schedule) else tuple(schedules)
    length = _epoch_length(group, epoch_length)
    every_step = tuple(s for s in group if length is None or not s.by_epoch)
    every_epoch = tuple(s for s in group if length is not None and s.by_epoch)
    value = base
    for schedule in group:  # each scheduler steps once when it is built, in list order
        value = advance(schedule, value, base, 0)
    values = [value] if steps > 0 else []
    for step in range(1, steps):
        for schedule in every_step:
            value = advance(schedule, value, base, step)
        if length is not None and step % length == 0:
            for schedule in every_epoch:
                value = advance(schedule, value, base, step // length)
        values.append(value)
    return values


def value_at(
    schedules: Schedule | Sequence[Schedule],
    base: float,
    step: int,
    *,
    epoch_length: int | None = None,
) -> float:
    """The scheduled value in effect during ``step`` (0-based), from the base value alone.

    Reproduces MMEngine's schedulers stepping one parameter: each schedule is applied once at
    step 0 in list order (when it is built), then after every step the schedules counted in that
    unit are applied in list order. With ``epoch_length`` the step counts iterations: schedules
    by iteration advance after every iteration, and those by epoch after every ``epoch_length``
    iterations (after the iteration ones). Without it, all schedules must share one unit.

    Costs ``O(step · len(schedules))``; :func:`trajectory` gives every value in one pass.

    Args:
        schedules: one schedule, or several composed over their windows.
        base: the parameter's initial value (``initial_lr``).
        step: the number of completed steps.
        epoch_length: iterations per epoch, to mix epoch- and iteration-based schedules.

    Returns:
        The parameter value.

    Raises:
        ValueError: a negative ``step``, mixed units without ``epoch_length``, or a
            non-positive ``epoch_length``.
    """
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step must be an int >= 0, got {step!r}")
    return trajectory(schedules, base, step + 1, epoch_length=epoch_length)[step]


def _epoch_length(group: tuple[Schedule, ...], epoch_length: int | None) -> int | None:
    """``epoch_length`` validated; ``None`` when every schedule counts steps in its own unit."""
    if epoch_length is None:
        if len({s.by_epoch for s in group}) > 1:
            raise ValueError(
                "schedules mix by_epoch=True and by_epoch=False; pass epoch_length to count "
                "steps in iterations"
            )
        return None
    if isinstance(epoch_length, bool) or not isinstance(epoch_length, int) or epoch_length <= 0:
        raise ValueError(f"epoch_length must be an int > 0, got {epoch_length!r}")
    return epoch_length
