"""The window every schedule shares (:class:`Schedule`, :data:`INF`) and the field validators.

The families (:mod:`~fengine.core.schedule.factors`, :mod:`~fengine.core.schedule.annealing`)
subclass :class:`Schedule` and validate their fields with the checks below, so this module sits
under both and imports nothing else of the package.
"""

from __future__ import annotations

from typing import Any, Final

import attrs

from fengine.core import plain


class ScheduleError(ValueError, AssertionError):
    """A bad schedule or scheduler argument.

    A ``ValueError``, and an ``AssertionError`` too, since MMEngine checks these with ``assert``:
    MMEngine-style ``except AssertionError`` keeps working.
    """


#: MMEngine's "no end" for a window (``int(1e9)``).
INF: Final = 1_000_000_000


def _non_negative_int(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ScheduleError(f"{attribute.name} must be an int >= 0, got {value!r}")


def positive_int(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """attrs validator: ``value`` is an int > 0 (not a bool).

    Raises:
        ValueError: otherwise, naming the field and the value.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ScheduleError(f"{attribute.name} must be an int > 0, got {value!r}")


def unit_interval(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    """attrs validator: ``0 <= value <= 1``.

    Raises:
        ValueError: otherwise, naming the field and the value.
    """
    if not 0.0 <= value <= 1.0:
        raise ScheduleError(f"{attribute.name} must lie in [0, 1], got {value!r}")


def as_tuple(values: Any) -> Any:
    """attrs converter: a list or tuple as a tuple; anything else unchanged, for the validator to name.

    Args:
        values: the field's given value.

    Returns:
        ``tuple(values)`` for a list or tuple, else ``values``.
    """
    return tuple(values) if isinstance(values, (list, tuple)) else values


def int_list(instance: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    """attrs validator: a tuple of ints >= 0 (after :func:`as_tuple`).

    Raises:
        ValueError: otherwise, naming the field and the value.
    """
    if not isinstance(value, tuple) or any(
        isinstance(v, bool) or not isinstance(v, int) or v < 0 for v in value
    ):
        raise ScheduleError(f"{attribute.name} must be a list of ints >= 0, got {value!r}")


@plain.register("schedule.Schedule")
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
            raise ScheduleError(
                f"end should be larger than begin, got begin={self.begin}, end={self.end}"
            )

    def update(self, value: float, base: float, step: int) -> float:
        """One step of the chained recursion at window-relative ``step`` (0 = first step)."""
        raise NotImplementedError

    def _per_epoch_fields(self, epoch_length: int) -> dict[str, Any]:
        """Family fields counted in steps, rescaled from epochs to iterations."""
        return {}
