"""Local-disk storage under MMEngine's names: ``LocalBackend``, ``FileClient``, ``get_file_backend``.

fengine reads and writes local files only; these classes give code written against MMEngine's
storage interface the same calls over the local file system. Writes are atomic
(:func:`fengine.utils.fileio.atomic_write`). A remote backend or URI prefix (``s3://``,
``petrel``, ``http``) is refused with an error naming it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator, Mapping
from typing import Any

from fengine.utils.fileio import atomic_write

__all__ = ["FileClient", "LocalBackend", "get_file_backend", "storage_of"]

#: The backend names MMEngine gives the local disk.
_LOCAL_NAMES = ("local", "disk")


class LocalBackend:
    """The local file system through MMEngine's storage calls (``get``, ``put``, ``join_path`` ...)."""

    name = "local"

    def get(self, filepath: str | os.PathLike[str]) -> bytes:
        """The bytes of ``filepath``."""
        with open(filepath, "rb") as handle:
            return handle.read()

    def get_text(self, filepath: str | os.PathLike[str], encoding: str = "utf-8") -> str:
        """The text of ``filepath``."""
        with open(filepath, encoding=encoding) as handle:
            return handle.read()

    def put(self, obj: bytes, filepath: str | os.PathLike[str]) -> None:
        """Write ``obj`` to ``filepath`` atomically, creating its folder."""
        atomic_write(filepath, obj)

    def put_text(self, obj: str, filepath: str | os.PathLike[str], encoding: str = "utf-8") -> None:
        """Write the text ``obj`` to ``filepath`` atomically, creating its folder."""
        self.put(obj.encode(encoding), filepath)

    def exists(self, filepath: str | os.PathLike[str]) -> bool:
        """Whether ``filepath`` exists."""
        return os.path.exists(filepath)

    def isdir(self, filepath: str | os.PathLike[str]) -> bool:
        """Whether ``filepath`` is a folder."""
        return os.path.isdir(filepath)

    def isfile(self, filepath: str | os.PathLike[str]) -> bool:
        """Whether ``filepath`` is a file."""
        return os.path.isfile(filepath)

    def join_path(self, filepath: str | os.PathLike[str], *filepaths: str | os.PathLike[str]) -> str:
        """``filepath`` and ``filepaths`` joined with the system's separator."""
        return os.path.join(filepath, *filepaths)

    def remove(self, filepath: str | os.PathLike[str]) -> None:
        """Delete the file ``filepath``.

        Raises:
            IsADirectoryError: ``filepath`` is a folder (use :meth:`rmtree`).
        """
        if os.path.isdir(filepath):
            raise IsADirectoryError(f"remove: {os.fspath(filepath)!r} is a folder; use rmtree")
        os.remove(filepath)

    def rmtree(self, dir_path: str | os.PathLike[str]) -> None:
        """Delete the folder ``dir_path`` and everything in it."""
        shutil.rmtree(dir_path)

    @contextlib.contextmanager
    def get_local_path(self, filepath: str | os.PathLike[str]) -> Iterator[str]:
        """``filepath`` itself (it is local already), as MMEngine's context manager."""
        yield os.fspath(filepath)


def _backend_name(args: Mapping[str, Any] | None, uri: str | os.PathLike[str] | None) -> str:
    args = dict(args or {})
    name = args.pop("backend", None)
    prefix = args.pop("prefix", None)
    if uri is not None and "://" in os.fspath(uri):
        prefix = prefix or os.fspath(uri).split("://", 1)[0]
    if prefix is not None:
        raise ValueError(
            f"unsupported storage prefix {prefix!r}: fengine stores files on the local disk only "
            "(give a local path, or no prefix)"
        )
    if name is not None and name not in _LOCAL_NAMES:
        raise ValueError(
            f"unsupported storage backend {name!r}: fengine stores files on the local disk only; "
            f"accepted: {list(_LOCAL_NAMES)} or None"
        )
    return "disk" if name is None else str(name)


class FileClient(LocalBackend):
    """MMEngine's older storage front end, over the local disk (``backend='disk'`` or ``'local'``).

    Args:
        backend: ``'disk'``, ``'local'`` or ``None`` (the local disk).
        prefix: refused when given: it names a remote store.
        **kwargs: backend arguments, ignored by the local disk.

    Raises:
        ValueError: any other backend, or a prefix.
    """

    def __init__(self, backend: str | None = None, prefix: str | None = None, **kwargs: Any) -> None:
        self.name = _backend_name({"backend": backend, "prefix": prefix}, None)
        self.backend_args = kwargs
        self.client = self  # MMEngine's attribute: the object doing the work

    @classmethod
    def infer_client(
        cls, file_client_args: Mapping[str, Any] | None = None, uri: str | os.PathLike[str] | None = None
    ) -> FileClient:
        """A client for ``file_client_args`` (``backend``, ``prefix``), or for ``uri``'s prefix.

        Raises:
            ValueError: a remote backend or prefix.
        """
        args = dict(file_client_args or {})
        _backend_name(args, uri)
        return cls(**args)


def get_file_backend(
    uri: str | os.PathLike[str] | None = None, *, backend_args: Mapping[str, Any] | None = None
) -> LocalBackend:
    """The storage backend for ``uri`` and ``backend_args``: always the local disk.

    Raises:
        ValueError: a remote backend or URI prefix.
    """
    _backend_name(backend_args, uri)
    return LocalBackend()


def run_folder(out_dir: str, work_dir: str) -> str:
    """``<out_dir>/<basename of work_dir>``: where a hook with ``out_dir`` puts a run's files."""
    return os.path.join(out_dir, os.path.basename(work_dir.rstrip(os.sep)))


def storage_of(
    out_dir: str | None, file_client_args: Mapping[str, Any] | None, backend_args: Mapping[str, Any] | None
) -> tuple[FileClient, LocalBackend]:
    """A hook's MMEngine storage objects ``(file_client, file_backend)`` for ``out_dir``.

    The backend is the client itself when ``file_client_args`` is given (MMEngine's rule).

    Raises:
        ValueError: a remote backend or prefix.
    """
    client = FileClient.infer_client(file_client_args, out_dir)
    backend = get_file_backend(out_dir, backend_args=backend_args) if file_client_args is None else client
    return client, backend
