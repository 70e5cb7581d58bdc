"""One run per work dir: an exclusive OS lock held while ``train``/``val``/``test`` runs.

Two runs in one work dir would overwrite each other's checkpoints and ``last_checkpoint``
(MMEngine lets them). The lock is ``fcntl.flock(LOCK_EX | LOCK_NB)`` on the file
``<work_dir>/.fengine.lock``, which holds the PID, host and start time of the run holding it so
the refused run can name them. The operating system drops a ``flock`` when its process ends, so a
killed run (even by ``SIGKILL``) never leaves a stale lock: the file may remain, the lock does not.

Lifetime: taken when ``train()``, ``val()`` or ``test()`` starts, before any hook runs or file is
loaded, and released when it returns or raises; building a ``Runner`` takes no lock. So runs one
after another in one work dir (resuming in the same process included) work, and a second run
started while the first trains fails at once. A call nested in a running one (a hook calling
``runner.val()``) reuses the held lock. Under ``torchrun`` only rank 0 locks, and every rank
learns the outcome, so all of them stop together. Without ``fcntl`` (Windows) nothing is
locked, with one warning per process.

The file is written in place, not with :func:`~fengine.utils.fileio.atomic_write`: the lock
belongs to the file's inode, and replacing the file would hand a second run a fresh, unlocked one.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
import warnings
from collections.abc import Iterator
from typing import Any

from fengine import dist

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

#: The lock file's name inside the work dir.
LOCK_FILE = ".fengine.lock"

_WARNED: list[bool] = []


class WorkDirLockedError(RuntimeError):
    """Another run holds the work dir's lock."""


class WorkDirLock:
    """The exclusive lock of one work dir (see the module docstring).

    Args:
        work_dir: the run's work dir (it must exist).
        rank: the process's rank; only rank 0 takes the lock.
    """

    def __init__(self, work_dir: str, rank: int = 0) -> None:
        self.path = os.path.join(work_dir, LOCK_FILE)
        self.rank = rank
        self._fd: int | None = None
        self._depth = 0

    @property
    def held(self) -> bool:
        """Whether this process holds the lock through this object."""
        return self._fd is not None

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the lock for the body (re-entrant: a nested ``hold`` keeps the outer one).

        Raises:
            WorkDirLockedError: another run holds it (naming its PID and host).
        """
        if self._depth == 0:
            self._acquire()
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._release()

    def _acquire(self) -> None:
        refusal = self._try_lock() if self.rank == 0 else None
        if dist.get_world_size() > 1:
            shared: list[Any] = [refusal]
            dist.broadcast_object_list(shared)
            refusal = shared[0]
        if refusal is not None:
            raise WorkDirLockedError(refusal)

    def _try_lock(self) -> str | None:
        """Take the lock; return why not (the message of the error) if another run holds it."""
        if fcntl is None:
            if not _WARNED:
                _WARNED.append(True)
                warnings.warn(
                    "fcntl is not available on this system, so the work dir is not locked: "
                    "make sure no two runs use the same work_dir",
                    stacklevel=4,
                )
            return None
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip()
            os.close(fd)
            return (
                f"work_dir {os.path.dirname(self.path)!r} is in use by another run "
                f"({holder or 'its PID and host are not written yet'}; lock file {self.path}): two "
                "runs in one work dir overwrite each other's checkpoints and last_checkpoint. "
                "Wait for that run to end or stop it, or give this one another work_dir"
            )
        except BaseException:
            os.close(fd)
            raise
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()}, since {stamp}\n".encode())
        self._fd = fd
        return None

    def _release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None or fcntl is None:
            return
        try:
            os.ftruncate(fd, 0)  # no stale PID for a reader; the file itself stays (see above)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
