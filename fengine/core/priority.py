"""Hook priorities with MMEngine's names and values (lower runs earlier)."""

from __future__ import annotations

import enum

from fengine.core import plain


@plain.register("priority.Priority")
class Priority(enum.Enum):
    """MMEngine's priority levels."""

    HIGHEST = 0
    VERY_HIGH = 10
    HIGH = 30
    ABOVE_NORMAL = 40
    NORMAL = 50
    BELOW_NORMAL = 60
    LOW = 70
    VERY_LOW = 90
    LOWEST = 100


PriorityLike = int | str | Priority

_ACCEPTED = (
    "an int in 0..100, a Priority member, or one of the names "
    + ", ".join(repr(p.name) for p in Priority)
    + " (case-insensitive)"
)


def get_priority(priority: PriorityLike) -> int:
    """Return the integer value of a priority.

    Args:
        priority: an int in ``0..100`` (``bool`` counts as int, as in MMEngine), a
            :class:`Priority` member, or a member name in any case (``'very_high'``).

    Returns:
        The priority value; lower values run earlier.

    Raises:
        ValueError: an int outside ``0..100``.
        KeyError: an unknown name (a ``KeyError`` as in MMEngine), listing the accepted names.
        TypeError: any other type.
    """
    if isinstance(priority, Priority):
        return priority.value
    if isinstance(priority, int):
        if not 0 <= priority <= 100:
            raise ValueError(f"priority must be between 0 and 100, got {priority!r}; accepted: {_ACCEPTED}")
        return int(priority)
    if isinstance(priority, str):
        try:
            return Priority[priority.upper()].value
        except KeyError:
            raise KeyError(f"unknown priority name {priority!r}; accepted: {_ACCEPTED}") from None
    raise TypeError(
        f"priority must be an integer or Priority enum value, got {priority!r} "
        f"of type {type(priority).__name__}; accepted: {_ACCEPTED}"
    )
