"""Which checkpoint ``Runner(resume=True)`` continues from.

The file named by ``work_dir/last_checkpoint`` wins when it is complete and resumable and lies in
the run's checkpoint folders (the work dir, or a ``CheckpointHook``'s ``out_dir`` folder; symbolic
links and ``..`` are resolved first). When that record is missing, names a file that is gone or
lies elsewhere, or names a damaged one (truncated, failing its checksum, unreadable), every
``*.pth`` under the work dir (whose real path stays inside it) is considered instead, newest first by
the counters in its ``meta`` (``iter``, then ``epoch``), then by modification time; the first that
reads back intact is used. Every file passed over is reported through ``warn`` with the reason.
Temporary files of interrupted writes (``.<name>.<random>.tmp``) are never candidates.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fengine.core import plain
from fengine.runner.checkpoint import CheckpointError, find_latest_checkpoint, read_checkpoint


def resume_problem(checkpoint: Mapping[str, Any]) -> str | None:
    """Why ``checkpoint`` cannot be resumed from, or ``None`` when it can.

    A resumable checkpoint has ``meta`` with integer ``epoch`` and ``iter`` counters, a
    ``state_dict`` and a ``message_hub`` (published copies, which keep only some keys, lack it).

    Args:
        checkpoint: a loaded checkpoint dict.

    Returns:
        A short reason, or ``None``.
    """
    meta = checkpoint.get("meta")
    if not isinstance(meta, Mapping) or not all(isinstance(meta.get(k), int) for k in ("epoch", "iter")):
        return "its `meta` has no `epoch`/`iter` counters"
    missing = [k for k in ("state_dict", "message_hub") if k not in checkpoint]
    if missing:
        return f"it has no {' or '.join(f'`{k}`' for k in missing)} (a published or weights-only file)"
    return None


def _order_key(path: str) -> tuple[int, int, float] | None:
    try:  # the plain data only: the records are rebuilt when the file is read whole
        checkpoint = plain.load(path, mmap=True, decode=False)
    except Exception:
        return None
    meta = checkpoint.get("meta") if isinstance(checkpoint, Mapping) else None
    if not isinstance(meta, Mapping):
        return None
    counters = meta.get("iter"), meta.get("epoch")
    if not all(isinstance(c, int) for c in counters):
        return None
    return int(counters[0]), int(counters[1]), os.path.getmtime(path)  # type: ignore[arg-type]


def _try(path: str, map_location: Any) -> tuple[dict[str, Any] | None, str]:
    try:
        checkpoint = read_checkpoint(path, map_location=map_location)
    except CheckpointError as error:
        return None, str(error)
    problem = resume_problem(checkpoint)
    if problem is not None:
        return None, f"{path!r} cannot be resumed from: {problem}"
    return checkpoint, ""


def _inside(path: str, folders: Sequence[str]) -> bool:
    real = os.path.realpath(path)
    return any(real != f and os.path.commonpath((real, f)) == f for f in folders)


def select_resume_checkpoint(
    work_dir: str,
    warn: Callable[[str], None],
    map_location: Any = "cpu",
    folders: Sequence[str] = (),
) -> tuple[str, dict[str, Any]] | None:
    """The newest intact, resumable checkpoint of ``work_dir``, loaded and verified.

    Args:
        work_dir: the run's work dir (holding ``last_checkpoint`` and, by default, the files).
        warn: receives one message per file passed over (and for a missing record when files
            exist).
        map_location: as ``torch.load``'s.
        folders: further folders ``last_checkpoint`` may point into (checkpoint hooks'
            ``out_dir`` folders), besides ``work_dir``.

    Returns:
        ``(path, checkpoint)``, or ``None`` when the work dir holds no usable checkpoint.

    Raises:
        UntrustedCheckpointError: a candidate names a type that is not registered: a crafted
            file in the work dir stops the run instead of being passed over.
    """
    named = recorded = find_latest_checkpoint(work_dir)
    inside = [os.path.realpath(work_dir), *(os.path.realpath(f) for f in folders)]
    if named is not None and not _inside(named, inside):
        warn(
            f"`last_checkpoint` names {named!r}, which lies outside the run's checkpoint folders "
            f"{inside}; ignored, looking for the newest intact checkpoint in {work_dir!r}"
        )
        named = None
    if named is not None:
        checkpoint, why = _try(named, map_location)
        if checkpoint is not None:
            return named, checkpoint
        warn(f"`last_checkpoint` names a checkpoint that cannot be used ({why}); looking for the newest intact one in {work_dir!r}")
    pattern = os.path.join(glob.escape(work_dir), "**", "*.pth")
    found = [
        p for p in glob.glob(pattern, recursive=True)
        if os.path.isfile(p) and p != named and _inside(p, inside[:1])
    ]
    if recorded is None and found:
        warn(f"{os.path.join(work_dir, 'last_checkpoint')!r} is missing; looking for the newest intact checkpoint in {work_dir!r}")
    keyed: list[tuple[tuple[int, int, float], str, dict[str, Any] | None]] = []
    for path in found:
        key = _order_key(path)
        if key is not None:
            keyed.append((key, path, None))
            continue
        # Its metadata cannot be peeked at: read it whole (a damaged file is reported now, a
        # valid one in torch's legacy format is ordered like the others).
        checkpoint, why = _try(path, map_location)
        if checkpoint is None:
            warn(f"skipped {why}")
            continue
        meta = checkpoint["meta"]
        keyed.append(((int(meta["iter"]), int(meta["epoch"]), os.path.getmtime(path)), path, checkpoint))
    keyed.sort(key=lambda entry: entry[0], reverse=True)
    for _, path, loaded in keyed:
        checkpoint, why = (loaded, "") if loaded is not None else _try(path, map_location)
        if checkpoint is not None:
            return path, checkpoint
        warn(f"skipped {why}")
    return None


__all__ = ["resume_problem", "select_resume_checkpoint"]
