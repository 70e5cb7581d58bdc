"""MMEngine's pickled types as data-only stand-ins, so its checkpoints load safely without MMEngine.

``torch.load(weights_only=True)`` refuses every global it does not know. An MMEngine checkpoint
pickles its message hub's ``HistoryBuffer`` objects (whose state holds NumPy arrays and
``getattr(HistoryBuffer, 'min')``-style references to its statistics methods), NumPy scalars in
the runtime info and a ``collections.Counter`` in ``MultiStepLR``'s state. Instead of unpickling
those with ``weights_only=False`` (which runs whatever the file names),
:func:`fengine.core.plain.load` maps each of these names to a data-only stand-in:

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
import pickle
from typing import Any

import numpy as np

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


__all__ = ["SAFE_GLOBALS", "LegacyHistoryBuffer", "to_plain_data"]
