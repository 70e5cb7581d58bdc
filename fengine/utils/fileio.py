"""Crash-safe file writes: whole files replaced atomically, lines appended durably.

Every file the shell writes (checkpoints, configs, scalar logs) goes through these two helpers, so
an interrupted run leaves either the old or the new content of a file, never a torn one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile


def _fsync_dir(directory: str) -> None:
    # A rename is only durable once the directory entry is on disk; not every platform lets a
    # directory be opened for that (Windows), hence the suppression.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace the file at ``path`` with ``data`` so that readers see the old or the new content.

    The bytes go to a temporary file in the same directory, which is flushed and fsynced and then
    renamed over ``path`` with :func:`os.replace` (atomic on POSIX and Windows); the directory is
    fsynced afterwards so the rename survives a power loss. Missing parent directories are created.

    Args:
        path: destination file.
        data: the complete new content.

    Raises:
        TypeError: ``data`` is not ``bytes``/``bytearray``/``memoryview``.
        OSError: the directory cannot be written.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"atomic_write: `data` must be bytes, got {type(data).__name__}")
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def append_text(path: str | os.PathLike[str], text: str) -> None:
    """Append ``text`` (normally one ``\\n``-terminated line) to ``path`` and make it durable.

    The file is opened in append mode, so concurrent appenders never overwrite each other, and the
    write is flushed and fsynced before returning. Missing parent directories are created.

    Args:
        path: the file to append to (created if absent).
        text: what to append, encoded as UTF-8.
    """
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    os.makedirs(directory, exist_ok=True)
    with open(target, "a", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
