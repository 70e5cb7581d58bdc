"""Loading checkpoint files safely, MMEngine's included, without importing MMEngine.

``torch.load(weights_only=True)`` refuses every global it does not know. An MMEngine checkpoint
pickles its message hub's ``HistoryBuffer`` objects (whose state holds NumPy arrays and
``getattr(HistoryBuffer, 'min')``-style references to its statistics methods), NumPy scalars in
the runtime info and a ``collections.Counter`` in ``MultiStepLR``'s state. Instead of unpickling
those with ``weights_only=False`` (which runs whatever the file names), the safe loader maps each
of these names to a data-only stand-in:

* ``mmengine.logging.history_buffer.HistoryBuffer`` → :class:`LegacyHistoryBuffer`, which only
  stores its state, and is then turned into fengine's plain buffer dict
  (``log_history``/``count_history``/``max_length``);
* ``builtins.getattr`` → a function that answers only for :class:`LegacyHistoryBuffer` (returning
  the method's name) and refuses everything else;
* NumPy's array/dtype/scalar reconstructors and ``collections.Counter``, which build data only.

After loading, :func:`to_plain_data` replaces stand-ins, NumPy arrays and scalars by Python data.
"""

from __future__ import annotations

import collections
import contextlib
import pickle
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

_HISTORY_BUFFER = "mmengine.logging.history_buffer.HistoryBuffer"


class LegacyHistoryBuffer:
    """What an unpickled MMEngine ``HistoryBuffer`` becomes: its saved attributes, nothing else."""

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots) form
            state = {**(state[0] or {}), **(state[1] or {})}
        if not isinstance(state, dict):
            raise pickle.UnpicklingError(f"{_HISTORY_BUFFER} state should be a dict, got {type(state).__name__}")
        self.state = dict(state)

    def to_buffer_state(self) -> dict[str, Any]:
        """fengine's plain ``HistoryBuffer.state_dict()`` form of the saved history."""
        logs = self.state.get("_log_history", ())
        counts = self.state.get("_count_history", ())
        return {
            "log_history": [float(v) for v in np.asarray(logs).reshape(-1)],
            "count_history": [int(v) for v in np.asarray(counts).reshape(-1)],
            "max_length": int(self.state.get("max_length", 1_000_000)),
        }


def _legacy_getattr(owner: Any, name: Any) -> str:
    # MMEngine pickles its buffers' statistics methods as getattr(HistoryBuffer, 'mean'); those
    # references are meaningless outside MMEngine, so they become the method's name.
    if owner is LegacyHistoryBuffer and isinstance(name, str):
        return name
    raise pickle.UnpicklingError(
        f"getattr({owner!r}, {name!r}) in a checkpoint is refused: only MMEngine's HistoryBuffer "
        "method references are allowed"
    )


def _numpy_globals() -> list[tuple[Any, str]]:
    core = getattr(np, "_core", None) or np.core
    multiarray = core.multiarray
    names = []
    for package in ("numpy.core", "numpy._core"):
        names += [(multiarray._reconstruct, f"{package}.multiarray._reconstruct"), (multiarray.scalar, f"{package}.multiarray.scalar")]
    names += [(np.ndarray, "numpy.ndarray"), (np.dtype, "numpy.dtype")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        names += [(getattr(dtypes, n), f"numpy.dtypes.{n}") for n in dir(dtypes) if n.endswith("DType")]
    return names


SAFE_GLOBALS: list[tuple[Any, str]] = [
    (LegacyHistoryBuffer, _HISTORY_BUFFER),
    (_legacy_getattr, "builtins.getattr"),
    (collections.Counter, "collections.Counter"),
    *_numpy_globals(),
]


@contextlib.contextmanager
def _allowed() -> Iterator[None]:
    scope = getattr(torch.serialization, "safe_globals", None)
    if scope is None:  # torch < 2.5: MMEngine files then need weights_only=False
        yield
        return
    with scope(SAFE_GLOBALS):
        yield


def load_file(path: str, map_location: Any = "cpu", weights_only: bool = True, mmap: bool = False) -> Any:
    """``torch.load`` with MMEngine's data types allowed in safe mode, then made plain.

    Args:
        path: the file.
        map_location: as ``torch.load``'s.
        weights_only: ``torch.load``'s safe mode (plus :data:`SAFE_GLOBALS`); ``False`` unpickles
            anything and is for trusted files only.
        mmap: map tensor data instead of reading it (cheap look at a large file's metadata).

    Returns:
        The loaded object, passed through :func:`to_plain_data`.

    Raises:
        Exception: whatever ``torch.load`` raises (unreadable, truncated, refused globals).
    """
    if not weights_only:
        return to_plain_data(torch.load(path, map_location=map_location, weights_only=False, mmap=mmap))
    with _allowed():
        return to_plain_data(torch.load(path, map_location=map_location, weights_only=True, mmap=mmap))


def to_plain_data(value: Any) -> Any:
    """Replace history-buffer stand-ins, NumPy arrays and NumPy scalars by plain Python data.

    Containers are rebuilt only when something inside changed; a ``Counter`` stays a ``Counter``
    (schedulers compare milestones with it).

    Args:
        value: loaded checkpoint content.

    Returns:
        The same structure with plain leaves.
    """
    if isinstance(value, LegacyHistoryBuffer):
        return value.to_buffer_state()
    # Objects that only look like MMEngine's buffer (unpickled with weights_only=False).
    if type(value).__name__ == "HistoryBuffer" and hasattr(value, "_log_history"):
        legacy = LegacyHistoryBuffer()
        legacy.state = dict(vars(value))
        return legacy.to_buffer_state()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        items = {k: to_plain_data(v) for k, v in value.items()}
        if all(items[k] is v for k, v in value.items()):
            return value
        rebuilt: dict[Any, Any] = type(value)() if isinstance(value, collections.OrderedDict | collections.Counter) else {}
        rebuilt.update(items)
        return rebuilt
    if isinstance(value, list | tuple) and not hasattr(value, "_fields"):
        converted = [to_plain_data(v) for v in value]
        if all(a is b for a, b in zip(converted, value)):
            return value
        return type(value)(converted)
    return value


__all__ = ["SAFE_GLOBALS", "LegacyHistoryBuffer", "load_file", "to_plain_data"]
