"""Logged scalars: numbers that are also callable, and the conversion of values to log.

``HistoryBuffer.current`` answers both MMEngine's call style and plain attribute access, so it
returns the callable number types below; :func:`to_number` turns whatever a hook logs into
something a buffer can hold without forcing a device sync.
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
import torch


class ScalarError(TypeError, ValueError, AssertionError):
    """A value, count or history that cannot be logged.

    Both a ``TypeError`` and a ``ValueError`` (either may be caught), and an ``AssertionError``,
    since MMEngine checks these with ``assert``: MMEngine-style handlers keep working.
    """


class ScalarKeyError(KeyError, AssertionError):
    """A missing or unknown key in what is logged (also an ``AssertionError``, as in MMEngine)."""


class CallableFloat(float):
    """A ``float`` that returns itself when called.

    ``HistoryBuffer.current`` returns one, so both ``buf.current > 0.95`` (attribute style) and
    MMEngine's ``buf.current() > 0.95`` (method style) work. Arithmetic gives plain floats, and it
    pickles as a plain ``float``.
    """

    __slots__ = ()

    def __call__(self) -> CallableFloat:
        return self

    def __reduce__(self) -> tuple[type[float], tuple[float]]:
        return float, (float(self),)


class CallableInt(int):
    """An ``int`` that returns itself when called (see :class:`CallableFloat`)."""

    __slots__ = ()

    def __call__(self) -> CallableInt:
        return self

    def __reduce__(self) -> tuple[type[int], tuple[int]]:
        return int, (int(self),)


def to_number(value: Any) -> Any:
    """``value`` as something a :class:`HistoryBuffer` can hold without a device sync.

    Python numbers pass through; NumPy scalars and size-1 arrays become Python numbers; 1-element
    tensors are returned detached (read later). ``bool`` is kept (it is an ``int``).

    Args:
        value: the scalar to log.

    Returns:
        An ``int``/``float`` or a detached 1-element tensor.

    Raises:
        ScalarError: ``value`` is not a number, NumPy number/array or tensor, or an array or
            tensor with other than one element.
    """
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ScalarError(
                f"a logged tensor must have exactly one element, got shape {tuple(value.shape)}"
            )
        return value.detach() if value.requires_grad else value
    if isinstance(value, (np.ndarray, np.generic)):
        if value.size != 1:
            raise ScalarError(
                f"a logged array must have exactly one element, got shape {value.shape}"
            )
        return value.item()
    if isinstance(value, numbers.Number) and isinstance(value, (int, float)):
        return value
    raise ScalarError(
        f"a logged value must be an int, float, NumPy scalar/size-1 array or 1-element tensor, "
        f"got {type(value).__name__}: {value!r}"
    )
