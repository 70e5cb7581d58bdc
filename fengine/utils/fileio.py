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
import re
import stat
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import BinaryIO

try:  # POSIX: a writer holds a lock on its temporary file, so a cleaner can tell it is in use
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

#: Files appended to since the last :func:`sync_appended`.
_unsynced: set[str] = set()
_APPEND_FLAGS = (
    os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0)
)


def _read_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


#: The process umask, read once at import (reading it means setting it, which is not thread-safe).
_UMASK = _read_umask()
#: Mode of the files :func:`atomic_write` creates: what ``open(path, "w")`` would give.
FILE_MODE = 0o666 & ~_UMASK
_TEMP_PREFIX, _TEMP_SUFFIX = ".", ".tmp"
#: Names of :func:`atomic_write`'s temporary files: ``.<target name>.<8 random characters>.tmp``
#: (:func:`tempfile.mkstemp`'s random part).
TEMP_NAME = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp")
#: With no file locks (Windows), a temporary file is stale once untouched for this long (seconds).
_STALE_AFTER = 3600.0


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
    fd, tmp = tempfile.mkstemp(prefix=f"{_TEMP_PREFIX}{os.path.basename(target)}.", suffix=_TEMP_SUFFIX, dir=directory)
    try:
        _claim(fd)
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


def _claim(fd: int) -> None:
    # mkstemp creates 0600; the file gets the mode `open` would give it (umask honoured), and a
    # lock that tells remove_stale_temporaries the write is in progress (released on any exit,
    # SIGKILL included).
    with contextlib.suppress(AttributeError, OSError):
        os.fchmod(fd, FILE_MODE)
    if fcntl is not None:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _in_use(path: str) -> bool:
    if fcntl is None:  # pragma: no cover - Windows: judge by age
        return os.stat(path).st_mtime > time.time() - _STALE_AFTER
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def remove_stale_temporaries(directory: str | os.PathLike[str], depth: int = 2) -> list[str]:
    """Delete the temporary files that interrupted :func:`atomic_write` calls left behind.

    A write killed before its rename (SIGKILL, power loss) leaves ``.<name>.<random>.tmp`` next to
    its target. Only regular files matching that name (:data:`TEMP_NAME`) are removed, and only
    when no writer holds them: every write keeps a lock on its temporary file while it runs, so
    a concurrent run's write in progress is left alone. Symbolic links are not followed.

    Args:
        directory: the folder to clean (a run's work dir).
        depth: how many folder levels below ``directory`` to look into as well (log folders).

    Returns:
        The paths removed.
    """
    removed: list[str] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False):
                if depth > 0:
                    removed += remove_stale_temporaries(entry.path, depth - 1)
            elif (
                TEMP_NAME.fullmatch(entry.name)
                and stat.S_ISREG(entry.stat(follow_symlinks=False).st_mode)
                and not _in_use(entry.path)
            ):
                os.unlink(entry.path)
                removed.append(entry.path)
        except OSError:  # vanished meanwhile, or not ours to remove
            continue
    return removed


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


def mkdir_or_exist(dir_name: str | os.PathLike[str], mode: int = 0o777) -> None:
    """Create ``dir_name`` and its parents unless it exists (``~`` expanded; ``''`` does nothing)."""
    if os.fspath(dir_name) == "":
        return
    os.makedirs(os.path.expanduser(os.fspath(dir_name)), mode=mode, exist_ok=True)


def scandir(
    dir_path: str | os.PathLike[str],
    suffix: str | tuple[str, ...] | None = None,
    recursive: bool = False,
    case_sensitive: bool = True,
) -> Iterator[str]:
    """The files in ``dir_path`` (paths relative to it), lazily; names starting with ``.`` are skipped.

    Args:
        dir_path: the folder to scan.
        suffix: only files ending with it (or with one of a tuple of them).
        recursive: also scan subfolders (hidden ones included, as MMEngine does).
        case_sensitive: compare ``suffix`` exactly; else ignoring case.

    Raises:
        TypeError: ``dir_path`` is not a str or path, or ``suffix`` is not a str, a tuple or None.
    """
    if not isinstance(dir_path, (str, os.PathLike)):
        raise TypeError(f'scandir: "dir_path" must be a string or Path object, got {dir_path!r}')
    if suffix is not None and not isinstance(suffix, (str, tuple)):
        raise TypeError(f'scandir: "suffix" must be a string or tuple of strings, got {suffix!r}')
    root = os.fspath(dir_path)
    wanted = suffix
    if wanted is not None and not case_sensitive:
        wanted = wanted.lower() if isinstance(wanted, str) else tuple(s.lower() for s in wanted)

    def scan(folder: str) -> Iterator[str]:
        for entry in os.scandir(folder):
            if not entry.name.startswith(".") and entry.is_file():
                relative = os.path.relpath(entry.path, root)
                compared = relative if case_sensitive else relative.lower()
                if wanted is None or compared.endswith(wanted):
                    yield relative
            elif recursive and os.path.isdir(entry.path):
                yield from scan(entry.path)

    return scan(root)
