"""Deletions the runner carries out: only checkpoints of this run, inside this run's folders.

Hooks ask for deletions with ``RemoveFile`` (the oldest kept checkpoint, the previous best), and
the paths they name may come from a checkpoint being resumed, which is data from outside. A
deletion is therefore carried out only for

* a regular file (not a symbolic link) whose real path (after ``os.path.realpath``, so ``..``
  and links cannot escape) lies inside one of the run's checkpoint folders (the work dir, and a
  ``CheckpointHook``'s ``out_dir`` folder), and whose name is that of a checkpoint this run saved
  or a checkpoint name of a registered ``CheckpointHook``;
* or a folder inside those folders (a checkpoint saved as several files) holding a regular
  :data:`CHECKPOINT_MARKER` file whose content is :func:`marker_content` of the work dir: such a
  folder is removed with everything in it.

Anything else is left in place with a warning naming it and why.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
from collections.abc import Callable, Collection, Iterable

#: The file a checkpoint folder carries to say that it belongs to a run (see :func:`marker_content`).
CHECKPOINT_MARKER = ".fengine-checkpoint"


def marker_content(work_dir: str) -> bytes:
    """What :data:`CHECKPOINT_MARKER` holds in a checkpoint folder of the run in ``work_dir``."""
    return f"fengine checkpoint of {os.path.realpath(work_dir)}\n".encode()


def _inside(real: str, roots: Iterable[str]) -> bool:
    return any(real != root and os.path.commonpath((real, root)) == root for root in roots)


def _marked(folder: str, marker: bytes) -> bool:
    flag = os.path.join(folder, CHECKPOINT_MARKER)
    try:
        if not stat.S_ISREG(os.lstat(flag).st_mode):
            return False
        with open(flag, "rb") as handle:
            return handle.read(len(marker) + 1) == marker
    except OSError:
        return False


def removal_refusal(
    path: str,
    roots: Collection[str],
    saved: Collection[str],
    names: Iterable[re.Pattern[str]],
    marker: bytes,
) -> str | None:
    """Why ``path`` must not be deleted (``''``: it does not exist), or ``None`` when it may be.

    Args:
        path: the path a hook asked to delete.
        roots: real paths of the run's checkpoint folders.
        saved: real paths of the files this run saved.
        names: the checkpoint names of the registered ``CheckpointHook``\\ s.
        marker: the content a checkpoint folder's :data:`CHECKPOINT_MARKER` must have.

    Returns:
        ``None`` to delete, ``''`` when there is nothing to delete, else the reason to keep it.
    """
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return ""
    real = os.path.realpath(path)
    if not _inside(real, roots):
        return f"it lies outside the run's checkpoint folders {sorted(roots)}"
    if stat.S_ISDIR(mode):
        return None if _marked(path, marker) else f"it is a folder without this run's {CHECKPOINT_MARKER} file"
    if not stat.S_ISREG(mode):
        return "it is not a regular file (a symbolic link or a special file)"
    if real in saved or any(n.fullmatch(os.path.basename(real)) for n in names):
        return None
    return "its name is not that of a checkpoint this run saved or writes"


class FileRemoval:
    """A deletion deferred to the end of an event (a callable task that knows its path).

    Args:
        path: what to delete.
        refusal: :func:`removal_refusal` bound to the run's folders and files.
        warn: receives the reason when the deletion is refused.
    """

    def __init__(self, path: str, refusal: Callable[[str], str | None], warn: Callable[[str], None]) -> None:
        self.path, self._refusal, self._warn = path, refusal, warn

    def __call__(self) -> None:
        why = self._refusal(self.path)
        if why:
            self._warn(f"not deleting {self.path!r}: {why}")
        elif why is None:
            if os.path.isdir(self.path) and not os.path.islink(self.path):
                shutil.rmtree(self.path)
            else:
                os.remove(self.path)


__all__ = ["CHECKPOINT_MARKER", "FileRemoval", "marker_content", "removal_refusal"]
