"""``load`` and ``dump``: JSON, YAML and pickle files by their extension (MMEngine's ``mmengine.fileio``).

Also MMEngine's local-disk storage objects, :class:`FileClient`, :class:`LocalBackend` and
:func:`get_file_backend` (:mod:`fengine.file_client`).

Writes are atomic (:func:`fengine.utils.fileio.atomic_write`). ``load`` never unpickles: a pickle
file can run any code when loaded, and nothing fengine reads may (checkpoints have their own safe
decoder, :func:`fengine.runner.load_checkpoint`); unpickle a file you trust with ``pickle`` itself.
"""

from __future__ import annotations

import importlib
import json
import os
import pickle
from typing import Any

from fengine.file_client import FileClient, LocalBackend, get_file_backend
from fengine.utils.fileio import atomic_write

__all__ = ["FileClient", "LocalBackend", "dump", "get_file_backend", "load"]

_FORMATS = {"json": "json", "yaml": "yaml", "yml": "yaml", "pkl": "pickle", "pickle": "pickle"}


def _format(path: str | os.PathLike[str], file_format: str | None) -> str:
    name = file_format if file_format is not None else os.fspath(path).rsplit(".", 1)[-1]
    if name not in _FORMATS:
        raise ValueError(
            f"unsupported file format {name!r} for {os.fspath(path)!r}; use one of {sorted(_FORMATS)} "
            "(by extension, or file_format=)"
        )
    return _FORMATS[name]


def _yaml() -> Any:
    try:
        return importlib.import_module("yaml")
    except ImportError as error:
        raise ImportError("reading and writing YAML needs PyYAML: `pip install pyyaml`") from error


def load(file: str | os.PathLike[str], file_format: str | None = None) -> Any:
    """The object stored in a JSON or YAML ``file``.

    Args:
        file: a ``.json`` or ``.yaml``/``.yml`` file.
        file_format: the format, when the extension does not say it.

    Raises:
        ValueError: an unsupported format, or a pickle file (which could run code when loaded).
    """
    kind = _format(file, file_format)
    if kind == "pickle":
        raise ValueError(
            f"fengine.fileio.load does not unpickle {os.fspath(file)!r}: loading a pickle can run any "
            "code; if you trust the file, read it with pickle.load yourself"
        )
    with open(file, encoding="utf-8") as handle:
        return json.load(handle) if kind == "json" else _yaml().safe_load(handle)


def dump(obj: Any, file: str | os.PathLike[str], file_format: str | None = None) -> None:
    """Write ``obj`` to ``file`` atomically, in the format its extension (or ``file_format``) names.

    Raises:
        ValueError: an unsupported format.
    """
    kind = _format(file, file_format)
    if kind == "pickle":
        data = pickle.dumps(obj)
    elif kind == "json":
        data = json.dumps(obj, indent=2).encode()
    else:
        data = _yaml().safe_dump(obj).encode()
    atomic_write(file, data)
