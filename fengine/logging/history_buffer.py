"""HistoryBuffer: the values logged under one message-hub key, with windowed statistics.

Values may be Python numbers, NumPy scalars or size-1 arrays, or 1-element tensors. Tensors are
kept (detached) as they are and turned into Python numbers only when a statistic is read, in one
transfer per device and dtype (stacked, then copied once), so logging a loss every training step
never forces a device sync and a log line reads each logged key once.
Statistics are computed with NumPy over the same values and in the same order as MMEngine, so the
numbers agree to the last bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from fengine.logging.scalars import CallableFloat, CallableInt, ScalarError, to_number
from fengine.logging.window_stats import fast_mean

__all__ = ["CallableFloat", "CallableInt", "HistoryBuffer", "to_number"]


def _check_window(window_size: int | None) -> None:
    if window_size is not None and (not isinstance(window_size, int) or window_size < 1):
        raise ValueError(f"`window_size` must be None or a positive int, got {window_size!r}")


def check_max_length(max_length: int) -> None:
    """Raise ``ValueError`` unless ``max_length`` is a positive int."""
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"`max_length` must be a positive int, got {max_length!r}")


class HistoryBuffer:
    """The history of one logged scalar: values, their counts, and statistics over windows.

    ``mean(w)`` is the sum of the last ``w`` values divided by the sum of their counts (all values
    when ``w`` is ``None`` or larger than the history); ``max(w)``/``min(w)`` likewise; ``current``
    is the latest value. Only the latest ``max_length`` records are kept (MMEngine's default of
    1,000,000 here; a runner's message hub bounds its buffers by the log windows in use, see
    :meth:`~fengine.logging.MessageHub.set_history_length`), so every statistic over a window of
    at most ``max_length`` records is exactly what an unbounded history gives. Between two
    trims up to ``2 * max_length - 1`` records are held (trimming is amortised).

    Args:
        log_history: initial values; a nested list or a 2-D array/tensor is read flat, oldest
            first (as MMEngine, which keeps its history in one NumPy array).
        count_history: initial counts, one per value (read the same way).
        max_length: how many records to keep (the latest).

    Raises:
        ScalarError: the two histories differ in length (a ``ValueError`` and, as in MMEngine,
            an ``AssertionError``), or a value or count that cannot be logged.
        ValueError: ``max_length`` is not positive.
    """

    _statistics_methods: ClassVar[dict[str, Callable[..., Any]]] = {}

    def __init__(
        self,
        log_history: Sequence[Any] = (),
        count_history: Sequence[Any] = (),
        max_length: int = 1_000_000,
    ) -> None:
        log_history, count_history = _flat(log_history), _flat(count_history)
        if len(log_history) != len(count_history):
            raise ScalarError(
                f"`log_history` and `count_history` must have equal lengths, got "
                f"{len(log_history)} and {len(count_history)}"
            )
        check_max_length(max_length)
        self.max_length = max_length
        self._values: list[Any] = []
        self._counts: list[Any] = []
        self._pending = -1  # index of the earliest value still held as a tensor, -1 if none
        self._has_float = False
        for value, count in zip(log_history, count_history):
            self.update(to_number(value), count)

    def update(self, log_val: Any, count: int | float = 1) -> None:
        """Append one value (any type :func:`to_number` accepts) with its count.

        Raises:
            TypeError: the value or the count is not a number.
        """
        kind = type(log_val)
        if kind is float:
            self._has_float = True
        elif kind is not int:
            log_val = to_number(log_val)
            if isinstance(log_val, torch.Tensor):
                if self._pending < 0:
                    self._pending = len(self._values)
                if not self._has_float and log_val.is_floating_point():
                    self._has_float = True
            elif isinstance(log_val, float):
                self._has_float = True
        if type(count) is not int:
            if isinstance(count, np.generic) or (
                isinstance(count, torch.Tensor) and count.numel() == 1
            ):
                count = count.item()
            if not isinstance(count, (int, float)):
                raise ScalarError(
                    f"`count` must be an int or float, got {type(count).__name__}: {count!r}"
                )
        self._values.append(log_val)
        self._counts.append(count)
        if len(self._values) >= 2 * self.max_length:  # trim rarely: amortised O(1) per update
            self._trim()

    def resize(self, max_length: int) -> None:
        """Keep only the latest ``max_length`` records from now on (dropping older ones now).

        Raises:
            ValueError: ``max_length`` is not a positive int.
        """
        check_max_length(max_length)
        self.max_length = max_length
        if len(self._values) > max_length:
            self._trim()

    def _trim(self) -> None:
        drop = len(self._values) - self.max_length
        del self._values[:drop]
        del self._counts[:drop]
        if self._pending >= 0:
            self._pending = max(0, self._pending - drop)

    def _settle(self) -> list[Any]:
        """Turn pending tensors into numbers, reading each device and dtype's in one transfer."""
        values = self._values
        if self._pending >= 0:
            groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
            for i in range(self._pending, len(values)):
                item = values[i]
                if isinstance(item, torch.Tensor):
                    groups.setdefault((item.device, item.dtype), []).append(i)
            for indices in groups.values():
                for i, number in zip(indices, _read([values[i] for i in indices])):
                    values[i] = number
            self._pending = -1
        if len(values) > self.max_length:
            self._trim()
        return values

    def _window(self, window_size: int | None) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        _check_window(window_size)
        values = self._settle()
        if not values:
            raise ValueError("HistoryBuffer is empty: call update() before reading statistics")
        size = len(values) if window_size is None else min(window_size, len(values))
        return np.array(values[-size:]), np.array(self._counts[-size:])

    def __len__(self) -> int:
        return min(len(self._values), self.max_length)

    @property
    def data(self) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """``(values, counts)`` as NumPy arrays, oldest first."""
        values = self._settle()
        return np.array(values), np.array(self._counts)

    @property
    def _log_history(self) -> np.ndarray[Any, Any]:  # MMEngine-style statistics methods read it
        return self.data[0]

    @property
    def _count_history(self) -> np.ndarray[Any, Any]:
        return self.data[1]

    def mean(self, window_size: int | None = None) -> float:
        """Sum of the last ``window_size`` values over the sum of their counts.

        Short all-float windows with unit counts are summed in Python in NumPy's order (see
        :mod:`fengine.logging.window_stats`); the result is the same double either way.

        Raises:
            ValueError: the buffer is empty or ``window_size`` is not a positive int.
        """
        _check_window(window_size)
        history = self._settle()
        size = len(history)
        if window_size is not None and window_size < size:
            size = window_size
        if size:
            fast = fast_mean(history[-size:], self._counts[-size:])
            if fast is not None:
                return fast
        values, counts = self._window(window_size)
        return float(values.sum() / counts.sum())

    def max(self, window_size: int | None = None) -> int | float:
        """Largest of the last ``window_size`` values (all when ``None``)."""
        values, _ = self._window(window_size)
        result: int | float = values.max().item()
        return result

    def min(self, window_size: int | None = None) -> int | float:
        """Smallest of the last ``window_size`` values (all when ``None``)."""
        values, _ = self._window(window_size)
        result: int | float = values.min().item()
        return result

    @property
    def current(self) -> CallableFloat | CallableInt:
        """The latest value; usable as ``buf.current`` and as ``buf.current()``.

        It is a float if any value in the history is a float (as a NumPy array of the history
        would be), else an int.

        Raises:
            ValueError: the buffer is empty.
        """
        values = self._settle()
        if not values:
            raise ValueError("HistoryBuffer is empty: call update() before reading `current`")
        latest = values[-1]
        return CallableFloat(latest) if self._has_float else CallableInt(latest)

    @classmethod
    def register_statistics(cls, method: Callable[..., Any]) -> Callable[..., Any]:
        """Register ``method(buffer, *args, **kwargs)`` under its ``__name__`` for :meth:`statistics`.

        Raises:
            KeyError: a method of that name is already registered.
        """
        name = method.__name__
        if name in cls._statistics_methods:
            raise KeyError(f"a statistics method named {name!r} is already registered")
        cls._statistics_methods[name] = method
        return method

    def statistics(self, method_name: str, *args: Any, **kwargs: Any) -> Any:
        """Call the statistic ``method_name`` (``mean``, ``max``, ``min``, ``current`` or registered).

        Raises:
            KeyError: no such statistic.
        """
        method = self._statistics_methods.get(method_name)
        if method is None:
            raise KeyError(
                f"unknown statistics method {method_name!r}; known: "
                f"{sorted(self._statistics_methods)}"
            )
        return method(self, *args, **kwargs)

    def state_dict(self) -> dict[str, Any]:
        """Plain lists and numbers (loadable with ``torch.load(weights_only=True)``)."""
        values = self._settle()
        return {
            "log_history": list(values),
            "count_history": list(self._counts),
            "max_length": self.max_length,
        }

    @classmethod
    def from_state_dict(cls, state: dict[str, Any]) -> HistoryBuffer:
        """Rebuild a buffer from :meth:`state_dict` output.

        Raises:
            KeyError: ``log_history`` or ``count_history`` is missing.
        """
        for key in ("log_history", "count_history"):
            if key not in state:
                raise KeyError(f"a HistoryBuffer state needs {key!r}, got keys {sorted(state)}")
        return cls(state["log_history"], state["count_history"], state.get("max_length", 1_000_000))

    def __getstate__(self) -> dict[str, Any]:
        return self.state_dict()

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Accept MMEngine's pickled layout too (NumPy arrays under private names).
        logs: Iterable[Any] = state.get("log_history", state.get("_log_history", ()))
        counts: Iterable[Any] = state.get("count_history", state.get("_count_history", ()))
        fresh = HistoryBuffer(
            [to_number(v) for v in logs],
            list(counts),
            int(state.get("max_length", 1_000_000)),
        )
        self.__dict__.update(fresh.__dict__)

    def __repr__(self) -> str:
        return f"HistoryBuffer(len={len(self)}, max_length={self.max_length})"


def _read(tensors: list[torch.Tensor]) -> list[Any]:
    """The numbers in 1-element ``tensors`` of one device and dtype, read in one transfer.

    On a GPU a read is a sync; stacking first makes it one per log line instead of one per
    logged step. The numbers are the ones ``item()`` gives (the same dtype, copied exactly).
    """
    if len(tensors) == 1:
        return [tensors[0].item()]
    shape = tensors[0].shape
    if all(t.shape == shape for t in tensors):
        numbers: list[Any] = torch.stack(tensors).reshape(-1).tolist()
    else:
        numbers = torch.cat([t.reshape(1) for t in tensors]).tolist()
    return numbers


def _flat(history: Sequence[Any]) -> Sequence[Any]:
    """A history given as rows (a nested list, a 2-D array or tensor) as one flat sequence."""
    if isinstance(history, (np.ndarray, torch.Tensor)):
        flat: list[Any] = history.reshape(-1).tolist()  # the same numbers, read in one call
        return flat
    if any(isinstance(item, (list, tuple, np.ndarray, torch.Tensor)) and len(item) != 1 for item in history[:1]):
        return [value for row in history for value in _flat(row)]
    return history


def _current(buffer: HistoryBuffer) -> CallableFloat | CallableInt:
    return buffer.current


HistoryBuffer._statistics_methods.update(
    mean=HistoryBuffer.mean, max=HistoryBuffer.max, min=HistoryBuffer.min, current=_current
)
