"""Settings written back as a Python config file, and the run's config copy in its work dir.

:func:`python_source` turns settings into the text of a config file that
:meth:`fengine.config.Config.fromfile` reads back to equal settings: one ``name = value`` line
per top-level key, dicts with identifier keys as ``dict(key=value)``, numbers, strings, ``None``,
lists, tuples and sets as Python literals (``float('inf')`` and ``float('nan')`` too). A value
that is not plain data (a model, a dataset, a class, a function) cannot be written as a literal:
it is written as ``None``, after a comment holding its ``repr``, so the file still shows what the
run used. :func:`write_config_copy` writes that text to ``<work_dir>/<timestamp>.py``.
"""

from __future__ import annotations

import inspect
import keyword
import math
import os
from collections.abc import Callable, Mapping
from typing import Any

from fengine.utils.fileio import atomic_write

__all__ = ["given_arguments", "is_plain", "python_source", "write_config_copy"]

_WIDTH = 100
_INDENT = "    "
_PLAIN_ATOMS = (bool, int, float, str, bytes, type(None))


def is_plain(value: Any) -> bool:
    """Whether ``value`` is plain data: ``None``, numbers, strings, bytes and containers of them."""
    if isinstance(value, _PLAIN_ATOMS):
        return True
    if isinstance(value, list | tuple | set | frozenset):
        return all(is_plain(item) for item in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, _PLAIN_ATOMS) and is_plain(v) for k, v in value.items())
    return False


def _is_name(key: Any) -> bool:
    return isinstance(key, str) and key.isidentifier() and not keyword.iskeyword(key)


def _atom(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return f"float('{value}')"
    return repr(value)


def _inline(value: Any) -> str:
    """A plain value on one line."""
    if isinstance(value, Mapping):
        if all(_is_name(k) for k in value):
            return "dict(" + ", ".join(f"{k}={_inline(v)}" for k, v in value.items()) + ")"
        return "{" + ", ".join(f"{_inline(k)}: {_inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    if isinstance(value, tuple):
        inner = ", ".join(_inline(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, set | frozenset):
        if not value:
            return f"{type(value).__name__}()"
        items = "{" + ", ".join(sorted(_inline(v) for v in value)) + "}"
        return items if isinstance(value, set) else f"frozenset({items})"
    return _atom(value)


def _repr_comment(value: Any, indent: str) -> list[str]:
    try:
        text = repr(value)
    except Exception as error:  # a repr that fails must not stop the run
        text = f"<{type(value).__name__} whose repr raised {type(error).__name__}>"
    lines = [f"{indent}# not plain data, written as None; its repr:"]
    return lines + [f"{indent}#   {line}".rstrip() for line in text.splitlines() or [""]]


def _entries(value: Any) -> tuple[str, str, list[tuple[str, Any]]]:
    """Opening and closing brackets of a container and its items as (prefix, value)."""
    if isinstance(value, Mapping):
        if all(_is_name(k) for k in value):
            return "dict(", ")", [(f"{k}=", v) for k, v in value.items()]
        return "{", "}", [(f"{_inline(k)}: ", v) for k, v in value.items()]
    if isinstance(value, list):
        return "[", "]", [("", v) for v in value]
    return "(", ")", [("", v) for v in value]  # a tuple (sets are inline or not plain)


def _lines(head: str, value: Any, indent: str, tail: str) -> list[str]:
    """``head`` followed by ``value`` and ``tail``, as lines at ``indent``."""
    if is_plain(value):
        text = f"{indent}{head}{_inline(value)}{tail}"
        if len(text) <= _WIDTH or not isinstance(value, Mapping | list | tuple):
            return [text]
    elif not isinstance(value, Mapping | list | tuple):
        return [*_repr_comment(value, indent), f"{indent}{head}None{tail}"]
    opening, closing, items = _entries(value)
    lines = [f"{indent}{head}{opening}"]
    for prefix, item in items:
        lines += _lines(prefix, item, indent + _INDENT, ",")
    return [*lines, f"{indent}{closing}{tail}"]


def python_source(settings: Mapping[str, Any]) -> str:
    """The text of a Python config file holding ``settings``.

    Args:
        settings: top-level settings; keys that are not Python identifiers are left out (a
            config file cannot bind them), with a comment saying so.

    Returns:
        ``name = value`` lines; values that are not plain data appear as ``None`` after a
        comment with their ``repr``.
    """
    lines: list[str] = []
    for name, value in settings.items():
        if not _is_name(name):
            lines.append(f"# {name!r} is not a Python name, so a config file cannot hold it")
            continue
        lines += _lines(f"{name} = ", value, "", "")
    return "\n".join(lines) + "\n"


def given_arguments(function: Callable[..., Any], namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of ``function`` in ``namespace`` (its ``locals()``) that differ from defaults.

    Args:
        function: a function or ``__init__``; ``self``, ``cls`` and ``cfg`` are left out.
        namespace: names bound in a call of ``function``.

    Returns:
        ``{name: value}`` in the signature's order.
    """
    given: dict[str, Any] = {}
    for name, parameter in inspect.signature(function).parameters.items():
        if name in ("self", "cls", "cfg") or name not in namespace:
            continue
        value, default = namespace[name], parameter.default
        if value is default or (is_plain(value) and is_plain(default) and value == default):
            continue
        given[name] = value
    return given


def write_config_copy(
    work_dir: str, timestamp: str, settings: Mapping[str, Any], rank: int = 0
) -> str | None:
    """Write the run's settings to ``<work_dir>/<timestamp>.py`` (atomically, rank 0 only).

    Args:
        work_dir: the run's work dir.
        timestamp: the run's timestamp (the name of its log folder).
        settings: the config the run was built from, or the arguments of a ``Runner`` built in
            Python.
        rank: this process's rank; other ranks write nothing.

    Returns:
        The file's path, or ``None`` on ranks other than 0.
    """
    if rank != 0:
        return None
    path = os.path.join(work_dir, f"{timestamp}.py")
    atomic_write(path, python_source(settings).encode("utf-8"))
    return path
