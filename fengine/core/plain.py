"""Records ↔ plain data, and the one way a checkpoint file is read: a checkpoint is data, never code.

:func:`to_plain` turns attrs records (optimizer, EMA and hook states), enums, frozensets and
mappings into dicts, lists, tuples, numbers, strings and tensors; :func:`from_plain` rebuilds them.
A record or enum is stored under a **stable tag** given by :func:`register`
(``{"__record__": "ema.EMAState", "fields": {...}}``, ``{"__enum__": "events.Event", "value": ...}``),
never under the module that defines it, so moving a class never breaks a checkpoint.

Decoding builds only registered types: an unknown tag, a field the record does not declare or a
missing required field raises :class:`UntrustedCheckpointError` before anything is built, so a
crafted file can name any function (``os:system``) and nothing is called. :func:`load` is the
only place fengine calls ``torch.load``: always ``weights_only=True`` (plus MMEngine's data types,
see :mod:`fengine.core.mmengine_pickle`), then decoded.

fengine's own tags are ``<area>.<Name>`` (``ema.EMAState``, ``schedule.Linear``,
``hooks.CheckpointState``); register your records under your package's name
(``@plain.register("myproject.CounterState")``).
"""

from __future__ import annotations

import contextlib
import enum
import os
import re
from collections.abc import Callable, Iterator, Mapping
from typing import IO, Any, TypeVar

import attrs
import torch

from fengine.core.mmengine_pickle import SAFE_GLOBALS, to_plain_data

T = TypeVar("T", bound=type)

_RECORD = "__record__"
_ENUM = "__enum__"
_FROZENSET = "__frozenset__"
_DICT = "__dict__"
_TAG_FORM = re.compile(r"[A-Za-z_][\w\-]*(\.[A-Za-z_][\w\-]*)+")

# Leaves need no decoding; skipping them keeps long histories and big state dicts cheap to read.
_LEAVES = frozenset((int, float, bool, str, bytes, type(None), torch.Tensor))

_BY_TAG: dict[str, type] = {}
_BY_CLASS: dict[type, str] = {}


class UntrustedCheckpointError(ValueError):
    """A checkpoint names something that is not a registered record or enum; nothing was built.

    Attributes:
        tag: the refused tag (``None`` for a malformed entry without one).
        where: the key path inside the checkpoint (``message_hub.runtime_info.foo``).
        source: the file, or ``None`` for data handed in directly.
    """

    def __init__(self, reason: str, tag: Any, where: str, source: str | None) -> None:
        self.tag, self.where, self.source = tag, where, source
        place = f"at {where or '<top level>'}" + (f" of checkpoint {source!r}" if source else "")
        super().__init__(
            f"refused {tag!r} {place}: {reason}. A checkpoint builds only records and enums "
            "registered under a stable tag (@fengine.core.plain.register('package.Name')) and "
            "never calls anything else; register your own record if it is one"
        )


def _class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register(tag: str) -> Callable[[T], T]:
    """Class decorator: store records (or enums) of this class in checkpoints under ``tag``.

    Put it above ``@attrs.frozen``. The tag is what a checkpoint holds instead of the class's
    module, so keep it stable when the class moves; a dotted name led by your package
    (``"myproject.CounterState"``) keeps it apart from fengine's own (``"ema.EMAState"``).

    Args:
        tag: dotted name, e.g. ``"myproject.CounterState"``.

    Returns:
        The decorator, which returns the class unchanged.

    Raises:
        ValueError: ``tag`` is not a dotted name, or it (or the class) is already registered
            differently.
        TypeError: the class is neither an attrs record nor an ``enum.Enum``.
    """
    if not isinstance(tag, str) or not _TAG_FORM.fullmatch(tag):
        raise ValueError(f"a checkpoint tag is a dotted name such as 'myproject.CounterState', got {tag!r}")

    def decorate(cls: T) -> T:
        if not isinstance(cls, type) or not (attrs.has(cls) or issubclass(cls, enum.Enum)):
            raise TypeError(
                f"@register({tag!r}) applies to attrs records (put it above @attrs.frozen) and "
                f"enums, got {cls!r}"
            )
        known, other = _BY_TAG.get(tag), _BY_CLASS.get(cls)
        if known is not None and known is not cls:
            raise ValueError(f"checkpoint tag {tag!r} already names {_class_name(known)}; cannot also name {_class_name(cls)}")
        if other is not None and other != tag:
            raise ValueError(f"{_class_name(cls)} is already registered as {other!r}; cannot also be {tag!r}")
        _BY_TAG[tag], _BY_CLASS[cls] = cls, tag
        return cls

    return decorate


def registered() -> dict[str, type]:
    """Every registered tag and its class (a copy)."""
    return dict(_BY_TAG)


def _tag_of(value: Any) -> str:
    cls = type(value)
    tag = _BY_CLASS.get(cls)
    if tag is None:
        kind = "enum" if isinstance(value, enum.Enum) else "record"
        raise TypeError(
            f"cannot store {kind} {_class_name(cls)} in a checkpoint: it has no checkpoint tag; "
            f"decorate the class with @fengine.core.plain.register('yourpackage.{cls.__qualname__}') "
            "(a stable name, independent of the module it lives in)"
        )
    return tag


def to_plain(value: Any) -> Any:
    """``value`` as plain data that ``torch.load(weights_only=True)`` accepts.

    Tensors, numbers, strings, bytes, ``None``, lists and tuples pass through (containers
    converted item by item); registered records and enums and frozensets become tagged dicts;
    other mappings become dicts (a dict whose keys collide with the tags is wrapped).

    Raises:
        TypeError: a value of another type, or a record or enum without a tag, naming it.
    """
    if value is None or isinstance(value, bool | int | float | complex | str | bytes | torch.Tensor | torch.Size):
        return value
    if isinstance(value, enum.Enum):
        return {_ENUM: _tag_of(value), "value": to_plain(value.value)}
    if attrs.has(type(value)):
        tag = _tag_of(value)
        return {_RECORD: tag, "fields": {f.name: to_plain(getattr(value, f.name)) for f in attrs.fields(type(value))}}
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
        "numbers, strings, bytes, None, lists, tuples, sets, mappings, enums and registered attrs records of these"
    )


def from_plain(value: Any, where: str = "", source: str | None = None) -> Any:
    """Rebuild what :func:`to_plain` produced; only registered records and enums are built.

    Containers in which nothing was rebuilt are returned as they are (a loaded ``state_dict``
    keeps its ``OrderedDict`` and metadata).

    Args:
        value: plain data, e.g. loaded with ``torch.load(weights_only=True)``.
        where: the key path of ``value`` inside its checkpoint, for messages.
        source: the file it came from, for messages.

    Returns:
        The rebuilt value.

    Raises:
        UntrustedCheckpointError: an unknown tag, a malformed tagged entry, a field the record
            does not declare, a missing required field or values the record or enum refuses,
            naming the tag, the key path and the file; nothing has been called.
    """
    return _Decoder(source).decode(value, where)


class _Decoder:
    def __init__(self, source: str | None) -> None:
        self.source = source

    def refuse(self, reason: str, tag: Any, where: str) -> UntrustedCheckpointError:
        return UntrustedCheckpointError(reason, tag, where, self.source)

    def decode(self, value: Any, where: str) -> Any:
        if isinstance(value, dict):
            if _RECORD in value:
                return self.record(value, where)
            if _ENUM in value:
                return self.enum(value, where)
            if _FROZENSET in value:
                items = self.entry(value, _FROZENSET, (_FROZENSET,), where, (list, tuple))
                return frozenset(self.decode(v, f"{where}[{i}]") for i, v in enumerate(items))
            if _DICT in value and len(value) == 1:
                return self.mapping(self.entry(value, _DICT, (_DICT,), where, (dict,)), where, rebuilt=True)
            return self.mapping(value, where)
        if type(value) in (list, tuple):
            items = [v if type(v) in _LEAVES else self.decode(v, f"{where}[{i}]") for i, v in enumerate(value)]
            return value if all(a is b for a, b in zip(items, value)) else type(value)(items)
        if type(value) is set:
            return {self.decode(v, where) for v in value}
        return value

    def mapping(self, value: dict[Any, Any], where: str, rebuilt: bool = False) -> dict[Any, Any]:
        items = {
            k: v if type(v) in _LEAVES else self.decode(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()
        }
        if not rebuilt and all(items[k] is v for k, v in value.items()):
            return value
        return items

    def entry(self, value: dict[Any, Any], key: str, keys: tuple[str, ...], where: str, kinds: tuple[type, ...]) -> Any:
        tag = value.get(_RECORD, value.get(_ENUM))
        if set(value) != set(keys):
            raise self.refuse(f"a {key!r} entry has exactly the keys {list(keys)}, got {sorted(map(str, value))}", tag, where)
        if not isinstance(value[key], kinds):
            raise self.refuse(f"its {key!r} is a {type(value[key]).__name__}, not a {' or '.join(k.__name__ for k in kinds)}", tag, where)
        return value[key]

    def registered(self, tag: Any, where: str, kind: str) -> type:
        cls = _BY_TAG.get(tag) if isinstance(tag, str) else None
        if cls is None:
            raise self.refuse(f"no {kind} is registered under this tag", tag, where)
        if (kind == "record") != attrs.has(cls):
            raise self.refuse(f"it names a registered {'enum' if kind == 'record' else 'record'}, not a {kind}", tag, where)
        return cls

    def record(self, value: dict[Any, Any], where: str) -> Any:
        fields = self.entry(value, "fields", (_RECORD, "fields"), where, (dict,))
        tag = value[_RECORD]
        cls = self.registered(tag, where, "record")
        declared = {f.name: f for f in attrs.fields(cls) if f.init}
        unknown = sorted(str(k) for k in fields if k not in declared)
        missing = [n for n, f in declared.items() if n not in fields and f.default is attrs.NOTHING]
        if unknown or missing:
            raise self.refuse(
                f"fields {unknown} are not declared by {_class_name(cls)} and required fields {missing} "
                f"are missing (declared: {list(declared)})",
                tag,
                where,
            )
        kwargs = {declared[k].alias: self.decode(v, f"{where}.{k}" if where else k) for k, v in fields.items()}
        try:
            return cls(**kwargs)
        except Exception as error:
            raise self.refuse(f"{_class_name(cls)} refuses the stored fields: {error}", tag, where) from error

    def enum(self, value: dict[Any, Any], where: str) -> Any:
        self.entry(value, "value", (_ENUM, "value"), where, (object,))
        tag = value[_ENUM]
        cls = self.registered(tag, where, "enum")
        try:
            return cls(self.decode(value["value"], where))
        except ValueError as error:
            raise self.refuse(f"not a member of {_class_name(cls)}: {error}", tag, where) from error


@contextlib.contextmanager
def _mmengine_types() -> Iterator[None]:
    scope = getattr(torch.serialization, "safe_globals", None)
    if scope is None:  # torch < 2.5: MMEngine's pickled buffers are then refused
        yield
        return
    with scope(SAFE_GLOBALS):
        yield


def load(
    file: str | os.PathLike[str] | IO[bytes],
    map_location: Any = "cpu",
    mmap: bool = False,
    decode: bool = True,
) -> Any:
    """Read a checkpoint file as data: ``torch.load(weights_only=True)``, then :func:`from_plain`.

    MMEngine's pickled message-hub buffers, NumPy values and ``Counter`` load as data-only
    stand-ins and become plain Python data (:mod:`fengine.core.mmengine_pickle`); any other
    pickled object is refused by ``torch.load``.

    Args:
        file: a path or a binary file object.
        map_location: as ``torch.load``'s.
        mmap: map tensor data instead of reading it (a cheap look at a large file's metadata).
        decode: rebuild registered records (``False``: the plain data, e.g. to verify a
            checksum first and then call :func:`from_plain`).

    Returns:
        The file's content.

    Raises:
        UntrustedCheckpointError: ``decode`` and the content names an unregistered type.
        Exception: whatever ``torch.load`` raises (unreadable, truncated, refused globals).
    """
    with _mmengine_types():
        loaded = to_plain_data(torch.load(file, map_location=map_location, weights_only=True, mmap=mmap))
    if not decode:
        return loaded
    return from_plain(loaded, source=os.fspath(file) if isinstance(file, str | os.PathLike) else None)


__all__ = ["UntrustedCheckpointError", "from_plain", "load", "register", "registered", "to_plain"]
