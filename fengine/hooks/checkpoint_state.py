"""What the CheckpointHook remembers between events, and its mirror in the message hub.

:class:`CheckpointState` is the hook's own state (checkpointed with the other hook states); the
hook also publishes it in the message hub under MMEngine's runtime-info names, which
:func:`info_names` gives, and :func:`from_runtime_info` reads back, so a run resumes from a
checkpoint written by MMEngine (no hook states) too; :func:`confine` drops what a restored state
names outside the hook's own folder. Kept apart from the save decisions
(:mod:`fengine.hooks.checkpoint_plan`) because it is the part a checkpoint stores.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs

from fengine.core import plain
from fengine.core.effects import Effect, LogText, UpdateInfo

_WARNING = 30  # logging.WARNING


@plain.register("hooks.CheckpointState")
@attrs.frozen
class CheckpointState:
    """What the hook remembers between events (checkpointed, so it survives a resume).

    Attributes:
        keep_ckpt_ids: steps of the kept interval checkpoints, oldest first.
        last_ckpt: path of the newest regular checkpoint.
        last_step: its step number.
        auto_key: the metric that ``save_best='auto'`` resolved to.
        best_scores: best score per ``save_best`` entry (``None``: none yet).
        best_ckpts: best checkpoint path per ``save_best`` entry.
    """

    keep_ckpt_ids: tuple[int, ...] = ()
    last_ckpt: str | None = None
    last_step: int | None = None
    auto_key: str | None = None
    best_scores: tuple[float | None, ...] = ()
    best_ckpts: tuple[str | None, ...] = ()


def at(values: tuple[Any, ...], index: int) -> Any:
    """``values[index]``, or ``None`` past the end (entries not yet recorded).

    Args:
        values: a per-``save_best``-entry tuple of the state.
        index: the entry's position in ``save_best``.

    Returns:
        The entry, or ``None``.
    """
    return values[index] if index < len(values) else None


def put(values: tuple[Any, ...], index: int, value: Any, size: int) -> tuple[Any, ...]:
    """``values`` with ``value`` at ``index``, cut or padded with ``None`` to ``size`` entries.

    Args:
        values: a per-``save_best``-entry tuple of the state.
        index: the entry's position in ``save_best``.
        value: the new entry.
        size: the number of ``save_best`` entries.

    Returns:
        A new tuple of ``size`` entries.
    """
    padded = list(values[:size]) + [None] * (size - len(values))
    padded[index] = value
    return tuple(padded)


def info_names(save_best: Sequence[str], key: str) -> tuple[str, str]:
    """The message-hub names of ``key``'s best score and path, as MMEngine writes them.

    Args:
        save_best: the hook's ``save_best`` entries.
        key: one of them (or the metric ``'auto'`` resolved to).

    Returns:
        ``('best_score', 'best_ckpt')`` for a single entry, else
        ``('best_score_<key>', 'best_ckpt_<key>')``.
    """
    if len(save_best) == 1:
        return "best_score", "best_ckpt"
    return f"best_score_{key}", f"best_ckpt_{key}"


def from_runtime_info(
    state: CheckpointState, runtime: Mapping[str, Any], save_best: Sequence[str]
) -> CheckpointState:
    """``state`` with the kept steps, last and best checkpoints a saved message hub records.

    Args:
        state: the state before loading.
        runtime: the saved hub's ``runtime_info``.
        save_best: the hook's ``save_best`` entries (which best scores and paths to read).

    Returns:
        The state with every entry found in ``runtime`` replaced; the others kept.
    """
    changes: dict[str, Any] = {}
    ids = runtime.get("keep_ckpt_ids")
    if isinstance(ids, (list, tuple)):  # taken as saved: CheckpointPlan.confine drops what is no step
        changes["keep_ckpt_ids"] = tuple(ids)
    if "last_ckpt" in runtime:
        changes["last_ckpt"] = runtime["last_ckpt"]
    size = len(save_best)
    scores, paths = state.best_scores, state.best_ckpts
    for index, key in enumerate(save_best):
        score_name, path_name = info_names(save_best, key)
        score = runtime.get(score_name)
        if isinstance(score, (int, float)) and not isinstance(score, bool):
            scores = put(scores, index, float(score), size)
        if path_name in runtime:
            paths = put(paths, index, runtime[path_name], size)
    changes.update(best_scores=scores, best_ckpts=paths)
    return attrs.evolve(state, **changes)


def confine(
    state: CheckpointState,
    folder: str,
    names: re.Pattern[str],
    save_best: Sequence[str],
    source: str,
    resolve: Callable[[str], str],
) -> tuple[CheckpointState, tuple[Effect, ...]]:
    """``state`` without the restored paths that are not checkpoints of ``folder``.

    A path is kept when it resolves (``resolve``: the shell's ``os.path.realpath``, so ``..``
    and symbolic links are followed) to a file directly in ``folder`` whose name ``names``
    matches. A dropped best path drops its score too, so the run saves its own best checkpoint
    at the next validation; a dropped last path drops its step; entries past ``save_best`` go.
    Kept steps that are not non-negative ints go; when ``source`` (the checkpoint resumed from)
    lies in another folder, the kept steps name that folder's files and go as well.

    Args:
        state: the restored state.
        folder: the real path of the folder the hook writes checkpoints to.
        names: the checkpoint file names the hook writes.
        save_best: the hook's ``save_best`` entries.
        source: the checkpoint file the state came from.
        resolve: maps a path to its real path.

    Returns:
        The confined state, and the effects that report it: one warning naming every dropped
        path, and the message hub's mirror updated (none when nothing is dropped).
    """

    def foreign(path: object) -> bool:
        if not isinstance(path, str):
            return True
        real = resolve(path)
        return os.path.dirname(real) != folder or names.fullmatch(os.path.basename(real)) is None

    dropped: list[str] = []
    pop: list[str] = []
    values: dict[str, Any] = {}
    changes: dict[str, Any] = {}
    if state.last_ckpt is not None and foreign(state.last_ckpt):
        dropped.append(repr(state.last_ckpt))
        changes.update(last_ckpt=None, last_step=None)
        pop.append("last_ckpt")
    ids = state.keep_ckpt_ids
    steps = tuple(s for s in ids if type(s) is int and s >= 0)
    if steps != ids:
        dropped.append(f"the kept steps {[s for s in ids if s not in steps]!r} (not step numbers)")
    if steps and os.path.dirname(resolve(source)) != folder:
        dropped.append(f"the kept steps {list(steps)} of {os.path.dirname(source)!r}")
        steps = ()
    if steps != ids:
        changes["keep_ckpt_ids"] = steps
        values["keep_ckpt_ids"] = list(steps)
    size = len(save_best)
    scores, paths = state.best_scores[:size], state.best_ckpts[:size]
    dropped += [repr(p) for p in state.best_ckpts[size:] if p is not None]
    for index, path in enumerate(paths):
        if path is None or not foreign(path):
            continue
        dropped.append(repr(path))
        scores, paths = put(scores, index, None, size), put(paths, index, None, size)
        key = state.auto_key if tuple(save_best) == ("auto",) and state.auto_key else save_best[index]
        pop += info_names(save_best, key)
    if not dropped:
        return state, ()
    if paths != state.best_ckpts or scores != state.best_scores:
        changes.update(best_scores=scores, best_ckpts=paths)
    warning = LogText(
        f"{source!r} names files that are not checkpoints of this run's folder {folder!r}; "
        f"they are dropped from the CheckpointHook's records and will never be deleted or "
        f"overwritten: {', '.join(dropped)}",
        _WARNING,
    )
    return attrs.evolve(state, **changes), (warning, UpdateInfo(values, pop=tuple(pop)))
