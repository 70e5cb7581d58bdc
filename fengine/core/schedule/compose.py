"""Schedules put to use: conversion to iterations, and the values of several composed schedules.

:func:`value_at` and :func:`trajectory` fold the families' one-step updates over their windows
in the order MMEngine's schedulers step; :func:`convert_to_iter_based` rescales an epoch-based
schedule. They work on any :class:`~fengine.core.schedule.base.Schedule`, so they know no family.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from fengine.core.schedule.base import INF, Schedule, ScheduleError


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
        raise ScheduleError(
            f"only epoch-based schedules can be converted to iterations, got by_epoch=False "
            f"for {type(schedule).__name__}"
        )
    if isinstance(epoch_length, bool) or not isinstance(epoch_length, int) or epoch_length <= 0:
        raise ScheduleError(f"epoch_length must be an int > 0, got {epoch_length!r}")
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
        raise ScheduleError(f"step must be an int >= 0, got {step!r}")
    return trajectory(schedules, base, step + 1, epoch_length=epoch_length)[step]


def _epoch_length(group: tuple[Schedule, ...], epoch_length: int | None) -> int | None:
    """``epoch_length`` validated; ``None`` when every schedule counts steps in its own unit."""
    if epoch_length is None:
        if len({s.by_epoch for s in group}) > 1:
            raise ScheduleError(
                "schedules mix by_epoch=True and by_epoch=False; pass epoch_length to count "
                "steps in iterations"
            )
        return None
    if isinstance(epoch_length, bool) or not isinstance(epoch_length, int) or epoch_length <= 0:
        raise ScheduleError(f"epoch_length must be an int > 0, got {epoch_length!r}")
    return epoch_length
