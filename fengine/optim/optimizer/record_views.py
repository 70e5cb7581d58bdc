"""torch's ``param_groups`` and ``state`` of a :class:`~fengine.optim.optimizer.PureStepOptimizer`, as views of its record.

A :class:`ParamGroupView` is a real ``dict`` (torch, MMEngine and user code keep treating it as
one); writing one of the record's hyper-parameters (``group['lr'] = 0.05``) changes the record at
once, and assigning a record changes what the group holds at once, so the group's entries and the
record never disagree. Other keys (``params``, ``foreach``, ``initial_lr``, ...) stay in the dict.
:class:`StateView` and :class:`EntryView` are torch's ``state[param][key]`` read from the record and
written through to it.
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, NoReturn

from torch import Tensor

if TYPE_CHECKING:
    from fengine.optim.optimizer.pure_step import PureStepOptimizer


def _detached() -> None:
    """The owner of a group that no longer belongs to an optimizer."""


class ParamGroupView(dict[str, Any]):
    """One entry of ``optimizer.param_groups``: a dict whose hyper-parameters are the record's.

    Reads are plain dict reads. Every write goes through :meth:`__setitem__`, which hands a
    hyper-parameter to the optimizer's record; the optimizer writes the record's values back into
    the dict whenever a record is assigned. Hyper-parameters cannot be removed. A copy, deep copy
    or pickle of a group is a plain ``dict``.

    Args:
        owner: the optimizer the group belongs to (held weakly).
        index: the group's position in ``param_groups``.
        entries: the group's keys and values.
    """

    __slots__ = ("_index", "_owner")
    _owner: Callable[[], PureStepOptimizer | None]

    def __init__(self, owner: PureStepOptimizer, index: int, entries: Mapping[str, Any]) -> None:
        super().__init__(entries)
        self._owner = weakref.ref(owner)
        self._index = index

    def detach(self) -> None:
        """Make this group a plain dict, no longer the optimizer's (it was replaced)."""
        self._owner = _detached

    def __setitem__(self, key: str, value: Any) -> None:
        dict.__setitem__(self, key, value)
        owner = self._owner()
        if owner is not None:
            owner._group_written(self._index, key, value)

    def _hyper_key(self, key: str) -> bool:
        owner = self._owner()
        return owner is not None and key in owner._hyper_keys

    def _refuse(self, key: str) -> NoReturn:
        raise KeyError(
            f"{key!r} is a hyper-parameter of the optimizer's record and cannot be removed from "
            f"param_groups[{self._index}]; assign it a new value instead"
        )

    def __delitem__(self, key: str) -> None:
        if self._hyper_key(key):
            self._refuse(key)
        dict.__delitem__(self, key)
        self._touch()

    def pop(self, key: str, *default: Any) -> Any:
        """``dict.pop``, except for the record's hyper-parameters (a ``KeyError``)."""
        if self._hyper_key(key):
            self._refuse(key)
        value = dict.pop(self, key, *default)
        self._touch()
        return value

    def popitem(self) -> tuple[str, Any]:
        """``dict.popitem``, except for the record's hyper-parameters (a ``KeyError``)."""
        key = next(reversed(self), None)
        if key is not None and self._hyper_key(key):
            self._refuse(key)
        item = dict.popitem(self)
        self._touch()
        return item

    def clear(self) -> NoReturn:
        """Refused: a group keeps its ``params`` and hyper-parameters."""
        raise TypeError(f"param_groups[{self._index}] cannot be cleared: it holds the record's hyper-parameters")

    def setdefault(self, key: str, default: Any = None) -> Any:
        """``dict.setdefault``, writing through :meth:`__setitem__`."""
        if key in self:
            return self[key]
        self[key] = default
        return default

    def update(self, *args: Any, **kwargs: Any) -> None:
        """``dict.update``, each entry written through :meth:`__setitem__`."""
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __ior__(self, other: Any) -> ParamGroupView:  # type: ignore[override,misc]
        self.update(other)
        return self

    def _touch(self) -> None:
        owner = self._owner()
        if owner is not None:
            owner._steppable = None

    def __reduce__(self) -> tuple[type[dict[str, Any]], tuple[dict[str, Any]]]:
        return dict, (dict(self),)

    def __copy__(self) -> dict[str, Any]:
        return dict(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> dict[str, Any]:
        return copy.deepcopy(dict(self), memo)


class EntryView(MutableMapping[str, Any]):
    """``optimizer.state[param]``: one parameter's torch-format state, read from the record.

    Writing a key (``state[p]['momentum_buffer'] = t``) puts the value into the record.

    Args:
        owner: the optimizer.
        index: the parameter's position in the record.
    """

    def __init__(self, owner: PureStepOptimizer, index: int) -> None:
        self._owner = owner
        self._index = index

    def _entry(self) -> dict[str, Any]:
        return self._owner._export_entry(self._index)

    def __getitem__(self, key: str) -> Any:
        return self._entry()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entry())

    def __len__(self) -> int:
        return len(self._entry())

    def __setitem__(self, key: str, value: Any) -> None:
        entry = self._entry()
        entry[key] = value
        self._owner._import_entry(self._index, entry, strict=True)

    def __delitem__(self, key: str) -> None:
        entry = self._entry()
        del entry[key]
        self._owner._import_entry(self._index, entry, strict=True)

    def __repr__(self) -> str:
        return repr(self._entry())


class StateView(MutableMapping[Tensor, Any]):
    """``optimizer.state``: torch's per-parameter state, keyed by parameter, read from the record.

    Holds the parameters that have state (as torch's dict does); ``state[p]`` of any parameter of
    the optimizer is its :class:`EntryView` (empty before its first step).

    Args:
        owner: the optimizer.
    """

    def __init__(self, owner: PureStepOptimizer) -> None:
        self._owner = owner

    def _position(self, param: object) -> int:
        position = self._owner._position_of(param)
        if position is None:
            raise KeyError(f"{type(param).__name__} is not a parameter of this optimizer; "
                           "its state holds only the parameters of its param_groups")
        return position

    def __getitem__(self, param: Tensor) -> EntryView:
        return EntryView(self._owner, self._position(param))

    def __contains__(self, param: object) -> bool:
        position = self._owner._position_of(param)
        return position is not None and bool(self._owner._export_entry(position))

    def __iter__(self) -> Iterator[Tensor]:
        owner = self._owner
        return (p for i, p in enumerate(owner.flat_params) if owner._export_entry(i))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __setitem__(self, param: Tensor, entry: Mapping[str, Any]) -> None:
        self._owner._import_entry(self._position(param), dict(entry), strict=True)

    def __delitem__(self, param: Tensor) -> None:
        self._owner._import_entry(self._position(param), {}, strict=True)

    def __repr__(self) -> str:
        return repr({p: dict(EntryView(self._owner, self._position(p))) for p in self})
