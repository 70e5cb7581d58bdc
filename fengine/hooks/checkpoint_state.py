"""What the CheckpointHook remembers between events, and its mirror in the message hub.

:class:`CheckpointState` is the hook's own state (checkpointed with the other hook states); the
hook also publishes it in the message hub under MMEngine's runtime-info names, which
:func:`info_names` gives, and :func:`from_runtime_info` reads back, so a run resumes from a
checkpoint written by MMEngine (no hook states) too. Kept apart from the save decisions
(:mod:`fengine.hooks.checkpoint_plan`) because it is the part a checkpoint stores.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from fengine.core import plain


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
