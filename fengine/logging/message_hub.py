"""MessageHub: the run's named store of logged scalars (histories) and runtime information."""

from __future__ import annotations

import copy
import logging
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from fengine.logging.history_buffer import HistoryBuffer, check_max_length
from fengine.logging.logger import print_log
from fengine.logging.scalars import ScalarError, ScalarKeyError
from fengine.utils.manager import ManagerMixin

_STATE_KEYS = ("log_scalars", "runtime_info", "resumed_keys")
#: The prefixes a bare scalar name may stand for in :meth:`MessageHub.get_scalar`.
_MODES = ("train", "val", "test")


def _copy_or_reference(key: str, value: Any) -> Any:
    try:
        return copy.deepcopy(value)
    except Exception:  # an uncopyable object (a lock, an open file): keep the reference
        print_log(
            f"{key!r} in the message hub cannot be deep-copied; its reference is used",
            logger="current",
            level=logging.WARNING,
        )
        return value


def _as_buffer(key: str, value: Any) -> HistoryBuffer | None:
    """A buffer from a saved scalar: our dict form, a buffer, or any object with ``.data``."""
    if isinstance(value, HistoryBuffer):
        return copy.deepcopy(value)
    if isinstance(value, Mapping) and "log_history" in value:
        return HistoryBuffer.from_state_dict(dict(value))
    data = getattr(value, "data", None)
    if isinstance(data, tuple) and len(data) == 2:
        return HistoryBuffer(list(data[0]), list(data[1]), getattr(value, "max_length", 1_000_000))
    print_log(
        f"{key!r} in the loaded message hub is not a scalar history ({type(value).__name__}); "
        "it is skipped",
        logger="current",
        level=logging.WARNING,
    )
    return None


class MessageHub(ManagerMixin):
    """Named store of logged scalars and runtime information, shared by hooks and the runner.

    ``update_scalar`` appends to the key's :class:`HistoryBuffer` (created on first use); tensors
    are stored detached and read lazily, so logging costs about a microsecond and no device sync.
    ``update_info`` overwrites a runtime value. Each key is saved by :meth:`state_dict` only if it
    was logged with ``resumed=True``; a key's ``resumed`` flag cannot change later. Each history
    keeps its latest :attr:`history_length` records (MMEngine's 1,000,000 unless
    :meth:`set_history_length` says otherwise; a runner sets it from its log windows).

    Args:
        name: the instance name (see ``get_instance``).
        log_scalars: initial ``{key: HistoryBuffer}``.
        runtime_info: initial ``{key: value}``.
        resumed_keys: initial ``{key: bool}``; every key must be in one of the two dicts.

    Raises:
        TypeError: an argument is not a dict, or a scalar is not a HistoryBuffer.
        KeyError: a resumed key names nothing.
    """

    def __init__(
        self,
        name: str,
        log_scalars: Mapping[str, HistoryBuffer] | None = None,
        runtime_info: Mapping[str, Any] | None = None,
        resumed_keys: Mapping[str, bool] | None = None,
    ) -> None:
        super().__init__(name)
        self._history_length: int | None = None
        self._log_scalars: OrderedDict[str, HistoryBuffer] = self._parse("log_scalars", log_scalars)
        self._runtime_info: OrderedDict[str, Any] = self._parse("runtime_info", runtime_info)
        self._resumed_keys: OrderedDict[str, bool] = self._parse("resumed_keys", resumed_keys)
        # When each key was last updated (a tick, for resolving bare names to the newest mode),
        # and the bare names whose resolution was already announced.
        self._clock = 0
        self._updated: dict[str, int] = {}
        self._announced: set[str] = set()
        for key, value in self._log_scalars.items():
            if not isinstance(value, HistoryBuffer):
                raise ScalarError(
                    f"log_scalars[{key!r}] must be a HistoryBuffer, got {type(value).__name__}"
                )
        for key in self._resumed_keys:
            if key not in self._log_scalars and key not in self._runtime_info:
                raise ScalarKeyError(
                    f"resumed_keys names {key!r}, which is in neither log_scalars nor runtime_info"
                )

    @staticmethod
    def _parse(name: str, value: Mapping[str, Any] | None) -> OrderedDict[str, Any]:
        if value is None:
            return OrderedDict()
        if not isinstance(value, Mapping):
            raise TypeError(f"`{name}` must be a dict or None, got {type(value).__name__}")
        return OrderedDict(value)

    @classmethod
    def get_current_instance(cls) -> MessageHub:
        """The latest created hub; one named ``'fengine'`` is created if none exists."""
        if not cls._instance_dict:
            cls.get_instance("fengine")
        hub: MessageHub = super().get_current_instance()
        return hub

    def _set_resumed(self, key: str, resumed: bool) -> None:
        known = self._resumed_keys.get(key)
        if known is None:
            self._resumed_keys[key] = resumed
        elif known != resumed:
            raise ValueError(
                f"message hub key {key!r} was logged with resumed={known}; it cannot be logged "
                f"with resumed={resumed} now"
            )

    def update_scalar(self, key: str, value: Any, count: int = 1, resumed: bool = True) -> None:
        """Append ``value`` (with weight ``count``) to the history of ``key``.

        Args:
            key: the scalar's name, e.g. ``'train/loss'``.
            value: an int/float, NumPy scalar or size-1 array, or a 1-element tensor.
            count: how many samples ``value`` stands for (weights ``mean``).
            resumed: whether :meth:`state_dict` saves this key.

        Raises:
            TypeError: ``value`` or ``count`` has a wrong type.
            ValueError: an array/tensor with other than one element, or a changed ``resumed``.
        """
        if self._resumed_keys.get(key) is not resumed:
            self._set_resumed(key, resumed)
        if type(count) is not int:
            raise TypeError(f"update_scalar({key!r}): `count` must be an int, got {count!r}")
        buffer = self._log_scalars.get(key)
        if buffer is None:
            length = self._history_length
            buffer = self._log_scalars[key] = HistoryBuffer() if length is None else HistoryBuffer(max_length=length)
        buffer.update(value, count)
        self._clock += 1
        self._updated[key] = self._clock

    @property
    def history_length(self) -> int | None:
        """How many records each history keeps (``None``: each buffer's own ``max_length``)."""
        return self._history_length

    def set_history_length(self, length: int | None) -> None:
        """Bound every history, present, loaded and future, to its latest ``length`` records.

        Statistics over windows of at most ``length`` records are unchanged (bit for bit); reads
        of a longer window (or of the whole history) see the latest ``length`` records only.
        ``None`` leaves the buffers as they are and creates new ones with MMEngine's 1,000,000.

        Raises:
            ValueError: ``length`` is neither ``None`` nor a positive int.
        """
        if length is None:
            self._history_length = None
            return
        check_max_length(length)
        for buffer in self._log_scalars.values():
            buffer.resize(length)
        self._history_length = length

    def update_scalars(self, log_dict: Mapping[str, Any], resumed: bool = True) -> None:
        """:meth:`update_scalar` for each item; a value may be ``{'value': v, 'count': n}``.

        Raises:
            TypeError: ``log_dict`` is not a dict.
            KeyError: a dict value without ``'value'``.
        """
        if not isinstance(log_dict, Mapping):
            raise TypeError(f"update_scalars expects a dict, got {type(log_dict).__name__}")
        for key, item in log_dict.items():
            if isinstance(item, Mapping):
                if "value" not in item:
                    raise ScalarKeyError(
                        f"update_scalars: {key!r} is a dict without a 'value' key: {item!r}"
                    )
                count = item.get("count", 1)
                count = int(count.item()) if hasattr(count, "item") else count
                self.update_scalar(key, item["value"], count, resumed)
            else:
                self.update_scalar(key, item, 1, resumed)

    def update_info(self, key: str, value: Any, resumed: bool = True) -> None:
        """Set runtime information ``key`` to ``value`` (overwriting)."""
        self._set_resumed(key, resumed)
        self._runtime_info[key] = value

    def update_info_dict(self, info_dict: Mapping[str, Any], resumed: bool = True) -> None:
        """:meth:`update_info` for each item.

        Raises:
            TypeError: ``info_dict`` is not a dict.
        """
        if not isinstance(info_dict, Mapping):
            raise TypeError(f"update_info_dict expects a dict, got {type(info_dict).__name__}")
        for key, value in info_dict.items():
            self.update_info(key, value, resumed=resumed)

    def pop_info(self, key: str, default: Any = None) -> Any:
        """Remove and return runtime information ``key`` (``default`` if absent)."""
        return self._runtime_info.pop(key, default)

    @property
    def log_scalars(self) -> OrderedDict[str, HistoryBuffer]:
        """The live ``{key: HistoryBuffer}`` in first-logged order."""
        return self._log_scalars

    @property
    def runtime_info(self) -> OrderedDict[str, Any]:
        """The live ``{key: value}`` runtime information."""
        return self._runtime_info

    def get_scalar(self, key: str) -> HistoryBuffer:
        """The history of ``key``.

        A bare name that was never logged itself (``'val_acc'``) stands for the one
        ``<mode>/<name>`` key holding it (``'val/val_acc'``; modes ``train``, ``val``, ``test``),
        the most recently updated one when several modes hold it; the first resolution of
        each name is logged at INFO.

        Raises:
            KeyError: nothing was logged under ``key`` (the message lists the known keys).
        """
        buffer = self._log_scalars.get(key)
        if buffer is not None:
            return buffer
        if "/" not in key:
            held = [f"{mode}/{key}" for mode in _MODES if f"{mode}/{key}" in self._log_scalars]
            if held:
                return self._resolve(key, held)
        raise KeyError(
            f"{key!r} is not a logged scalar of message hub {self.instance_name!r}; "
            f"logged: {list(self._log_scalars)}"
        )

    def _resolve(self, name: str, held: list[str]) -> HistoryBuffer:
        # max() keeps the first of equal ticks: among keys only loaded from a checkpoint (tick 0),
        # the first in train, val, test order.
        chosen = max(held, key=lambda k: self._updated.get(k, 0))
        if name not in self._announced:
            self._announced.add(name)
            others = [k for k in held if k != chosen]
            also = f" (the most recently updated of {held})" if others else ""
            print_log(
                f"message hub {self.instance_name!r}: scalar {name!r} is read from "
                f"{chosen!r}{also}",
                logger="current",
                level=logging.INFO,
            )
        return self._log_scalars[chosen]

    def get_info(self, key: str, default: Any = None) -> Any:
        """Runtime information ``key``, or ``default`` if absent."""
        return self._runtime_info.get(key, default)

    def state_dict(self) -> dict[str, Any]:
        """The resumable keys as plain data (``torch.load(weights_only=True)`` can read it).

        Returns:
            ``{'log_scalars': {key: {'log_history', 'count_history', 'max_length'}},
            'runtime_info': {key: deep copy}, 'resumed_keys': {key: bool}}``.
        """
        keep = self._resumed_keys
        return {
            "log_scalars": {k: v.state_dict() for k, v in self._log_scalars.items() if keep.get(k)},
            "runtime_info": {
                k: _copy_or_reference(k, v) for k, v in self._runtime_info.items() if keep.get(k)
            },
            "resumed_keys": dict(keep),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any] | MessageHub) -> None:
        """Restore from :meth:`state_dict` output, an MMEngine message-hub dict, or another hub.

        Scalars may be saved buffers (dicts) or HistoryBuffer-like objects; other values are
        skipped with a warning. Resumed keys naming nothing loaded are skipped with a warning.

        Raises:
            KeyError: a dict without ``log_scalars``, ``runtime_info`` or ``resumed_keys``.
        """
        if isinstance(state_dict, MessageHub):
            self._log_scalars = copy.deepcopy(state_dict._log_scalars)
            self._runtime_info = copy.deepcopy(state_dict._runtime_info)
            self._resumed_keys = copy.deepcopy(state_dict._resumed_keys)
            self.set_history_length(self._history_length)
            return
        for key in _STATE_KEYS:
            if key not in state_dict:
                raise KeyError(
                    f"a message hub state needs {key!r}; got keys {sorted(map(str, state_dict))}"
                )
        for key, value in state_dict["log_scalars"].items():
            buffer = _as_buffer(key, value)
            if buffer is not None:
                if self._history_length is not None:
                    buffer.resize(self._history_length)
                self._log_scalars[key] = buffer
        for key, value in state_dict["runtime_info"].items():
            self._runtime_info[key] = _copy_or_reference(key, value)
        for key, resumed in state_dict["resumed_keys"].items():
            if key not in self._log_scalars and key not in self._runtime_info:
                print_log(
                    f"resumed key {key!r} was not loaded into the message hub; skipped",
                    logger="current",
                    level=logging.WARNING,
                )
                continue
            self._resumed_keys[key] = bool(resumed)
