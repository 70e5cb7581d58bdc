"""Records ↔ plain data: what a checkpoint stores, loadable with ``torch.load(weights_only=True)``.

:func:`to_plain` turns attrs records (optimizer, EMA and hook states), enums, frozensets and
mappings into dicts, lists, tuples, numbers, strings and tensors; :func:`from_plain` rebuilds them.
A record is named by ``module:QualName`` and rebuilt only from a module that is already imported,
so loading a checkpoint never imports code.
"""

from __future__ import annotations

import enum
import sys
from collections.abc import Mapping
from typing import Any

import attrs
import torch

_RECORD = "__record__"
_ENUM = "__enum__"
_FROZENSET = "__frozenset__"
_DICT = "__dict__"


def _name(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def _resolve(name: str) -> Any:
    module_name, _, qualname = name.partition(":")
    module = sys.modules.get(module_name)
    if module is None:
        raise ValueError(
            f"cannot rebuild {name!r}: module {module_name!r} is not imported; import the code that "
            "defines it (e.g. construct the hook) before loading the checkpoint"
        )
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            raise ValueError(f"cannot rebuild {name!r}: {qualname!r} is not defined in {module_name!r}")
    return obj


def to_plain(value: Any) -> Any:
    """``value`` as plain data that ``torch.load(weights_only=True)`` accepts.

    Tensors, numbers, strings, bytes, ``None``, lists and tuples pass through (containers
    converted item by item); attrs records, enums and frozensets become tagged dicts; other
    mappings become dicts (a dict whose keys collide with the tags is wrapped).

    Raises:
        TypeError: a value of another type, naming it.
    """
    if value is None or isinstance(value, bool | int | float | complex | str | bytes | torch.Tensor | torch.Size):
        return value
    if isinstance(value, enum.Enum):
        return {_ENUM: _name(type(value)), "value": to_plain(value.value)}
    if attrs.has(type(value)):
        fields = {f.name: to_plain(getattr(value, f.name)) for f in attrs.fields(type(value))}
        return {_RECORD: _name(type(value)), "fields": fields}
    if isinstance(value, frozenset):
        return {_FROZENSET: [to_plain(v) for v in value]}
    if isinstance(value, Mapping):
        plain = {k: to_plain(v) for k, v in value.items()}
        return {_DICT: plain} if any(k in (_RECORD, _ENUM, _FROZENSET, _DICT) for k in plain) else plain
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(to_plain(v) for v in value)
    if isinstance(value, set):
        return {to_plain(v) for v in value}
    raise TypeError(
        f"cannot store a {type(value).__qualname__} in a checkpoint: {value!r}; accepted: tensors, "
        "numbers, strings, bytes, None, lists, tuples, sets, mappings, enums and attrs records of these"
    )


def from_plain(value: Any) -> Any:
    """Rebuild what :func:`to_plain` produced (records through their already-imported classes).

    Raises:
        ValueError: a record or enum whose module is not imported or whose class is gone.
    """
    if isinstance(value, dict):
        if _RECORD in value:
            cls = _resolve(value[_RECORD])
            return cls(**{k: from_plain(v) for k, v in value["fields"].items()})
        if _ENUM in value:
            return _resolve(value[_ENUM])(from_plain(value["value"]))
        if _FROZENSET in value:
            return frozenset(from_plain(v) for v in value[_FROZENSET])
        if _DICT in value and len(value) == 1:
            return {k: from_plain(v) for k, v in value[_DICT].items()}
        return {k: from_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(from_plain(v) for v in value)
    if isinstance(value, set):
        return {from_plain(v) for v in value}
    return value
