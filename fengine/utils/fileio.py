"""Crash-safe file writes: whole files replaced atomically, lines appended without tearing.

Every file the shell writes (checkpoints, configs, scalar logs) goes through these helpers, so
an interrupted run leaves either the old or the new content of a file, never a torn one.

Appended lines are flushed to the operating system at once (a crashed or killed process loses
none of them, and appending never rewrites earlier bytes), but made durable against power loss
only in batches: :func:`sync_appended` fsyncs every file appended to since the last call, and it
runs before each :func:`atomic_write` (so a checkpoint on disk implies the log lines written
before it are on disk too) and at interpreter exit. An fsync per scalar line would cost
milliseconds every logging interval.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import tempfile
from collections.abc import Callable
from typing import BinaryIO

#: Files appended to since the last :func:`sync_appended`.
_unsynced: set[str] = set()
_APPEND_FLAGS = (
    os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
)


def _fsync_dir(directory: str) -> None:
    # A rename is only durable once the directory entry is on disk; not every platform lets a
    # directory be opened for that (Windows), hence the suppression.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(
    path: str | os.PathLike[str], data: bytes | bytearray | memoryview | Callable[[BinaryIO], object]
) -> None:
    """Replace the file at ``path`` with ``data`` so that readers see the old or the new content.

    The bytes go to a temporary file in the same directory, which is flushed and fsynced and then
    renamed over ``path`` with :func:`os.replace` (atomic on POSIX and Windows); the directory is
    fsynced afterwards so the rename survives a power loss. Missing parent directories are created.
    A large content can be streamed: pass a function that writes it to the binary handle it is
    given (``lambda f: torch.save(obj, f)``) instead of building the bytes in memory first.

    Args:
        path: destination file.
        data: the complete new content, or a function writing it to a binary file handle.

    Raises:
        TypeError: ``data`` is neither bytes-like nor callable.
        OSError: the directory cannot be written.
    """
    write: Callable[[BinaryIO], object]
    if isinstance(data, (bytes, bytearray, memoryview)):
        content = data

        def write(handle: BinaryIO) -> object:
            return handle.write(content)

    elif callable(data):
        write = data
    else:
        raise TypeError(f"atomic_write: `data` must be bytes or a function writing to a file, got {type(data).__name__}")
    sync_appended()
    target = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(target))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(target)}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(directory)


def append_text(path: str | os.PathLike[str], text: str) -> None:
    """Append ``text`` (normally one ``\\n``-terminated line) to ``path`` and flush it.

    The file is opened in append mode, so concurrent appenders never overwrite each other and
    earlier content is never rewritten. The write reaches the operating system before this
    returns; it reaches the disk at the next :func:`sync_appended` (see the module docstring).
    Missing parent directories are created.

    Args:
        path: the file to append to (created if absent).
        text: what to append, encoded as UTF-8.
    """
    target = os.path.abspath(os.fspath(path))
    # One descriptor-level open/write/close: the text layer of `open` (buffers, encoder lookup,
    # the seek to the end) and a folder check on every call cost ten times the write itself.
    # The newline translation of text mode is kept, so the bytes are those `open(.., "a")` writes.
    data = (text if os.linesep == "\n" else text.replace("\n", os.linesep)).encode("utf-8")
    try:
        fd = os.open(target, _APPEND_FLAGS, 0o666)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        fd = os.open(target, _APPEND_FLAGS, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)
    _unsynced.add(target)


def sync_appended() -> None:
    """Make every line appended by :func:`append_text` since the last call durable (fsync).

    Called before every :func:`atomic_write` and at interpreter exit; call it where the lines
    must be on disk (a backend's ``close``). A file removed meanwhile is skipped.
    """
    while _unsynced:
        path = _unsynced.pop()
        with contextlib.suppress(FileNotFoundError):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


atexit.register(sync_appended)
