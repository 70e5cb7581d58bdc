"""SyncBuffersHook: average the model's buffers across ranks before they are used for validation.

Pure part: :class:`SyncBuffersState` and two handlers emitting ``SyncBuffers`` (the shell
all-reduces, with mean, every buffer of the model), and nothing at all when
``run.world_size == 1``:

* after each train epoch, recording that it did;
* before each validation epoch, unless the train epoch just before it synchronised already (in
  an iteration-based loop validation runs between iterations, where no epoch ended); the record
  is cleared either way.

Façade: :class:`SyncBuffersHook`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import attrs

from fengine.core import plain
from fengine.core.effects import SyncBuffers
from fengine.core.events import Event
from fengine.core.pipeline import FnHook
from fengine.core.priority import Priority, PriorityLike
from fengine.core.run import EventInfo, RunState
from fengine.hooks.builtin import BuiltinHook
from fengine.registry import HOOKS


@plain.register("hooks.SyncBuffersState")
@attrs.frozen
class SyncBuffersState:
    """Whether the last train epoch's end synchronised the buffers (MMEngine's ``called_in_train``)."""

    called_in_train: bool = False


_SYNCED = SyncBuffersState(True)
_CLEAR = SyncBuffersState(False)


def after_train_epoch(
    run: RunState, state: SyncBuffersState, info: EventInfo
) -> tuple[RunState, SyncBuffersState]:
    """Synchronise after the epoch (distributed runs only) and remember it."""
    if run.world_size <= 1:
        return run, state
    return run.emit(SyncBuffers()), _SYNCED


def before_val_epoch(
    run: RunState, state: SyncBuffersState, info: EventInfo
) -> tuple[RunState, SyncBuffersState]:
    """Synchronise before validation unless the train epoch's end just did."""
    if run.world_size <= 1:
        return run, state
    if state.called_in_train:
        return run, _CLEAR
    return run.emit(SyncBuffers()), state


def sync_buffers_fn_hook(
    name: str, priority: PriorityLike = Priority.NORMAL
) -> FnHook[SyncBuffersState]:
    """The hook as a pipeline member.

    Args:
        name: the hook's unique name.
        priority: where it runs.

    Returns:
        The :class:`~fengine.core.pipeline.FnHook`.
    """
    on = {Event.AFTER_TRAIN_EPOCH: after_train_epoch, Event.BEFORE_VAL_EPOCH: before_val_epoch}
    return FnHook(name=name, priority=priority, init=_CLEAR, on=on)


@HOOKS.register_module()
class SyncBuffersHook(BuiltinHook):
    """Averages the model's buffers (BatchNorm statistics) across ranks in distributed training."""

    handles: ClassVar[Mapping[Event, str]] = {
        Event.AFTER_TRAIN_EPOCH: "Synchronise the buffers after a train epoch.",
        Event.BEFORE_VAL_EPOCH: "Synchronise before validation when the train epoch did not.",
    }

    priority: PriorityLike = "NORMAL"

    def pure_fn_hook(self, name: str) -> FnHook[SyncBuffersState]:
        """This hook's pure handlers as a pipeline member named ``name``."""
        return sync_buffers_fn_hook(name, self.priority)
