"""IterTimerHook: per-iteration ``data_time`` and ``time``, and the run's ETA.

Pure part: :class:`IterTimerState` and the handlers of :func:`iter_timer_fn_hook`. The clock is the event's
``EventInfo.time`` (the shell reads it once per event), so the handlers are pure and the running
sums live in the state, which is checkpointed: the ETA after a resume keeps averaging over every
iteration timed so far. Façade: :class:`IterTimerHook`.

With ``t`` the time of the last tick (the epoch start or the previous iteration's end), in every
mode:

* before an iteration: scalar ``{mode}/data_time = now - t``;
* after an iteration: scalar ``{mode}/time = now - t``, then ``t = now``;
* train: ``eta = mean(train times) * (max_iters - iter - 1)``;
  val/test: ``eta = mean(this epoch's times) * (len(dataloader) - batch_idx - 1)``; both written to
  the info ``eta`` (seconds).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import attrs

from fengine.core import plain
from fengine.core.effects import UpdateInfo, UpdateScalars
from fengine.core.events import Event
from fengine.core.pipeline import FnHook, Handler
from fengine.core.priority import Priority, PriorityLike
from fengine.core.run import EventInfo, RunState
from fengine.hooks.builtin import MODES, BuiltinHook, in_every_mode
from fengine.registry import HOOKS


@plain.register("hooks.IterTimerState")
@attrs.frozen
class IterTimerState:
    """The timer's clock and running sums.

    Attributes:
        tick: time of the last epoch start or iteration end.
        train_time: total ``train/time`` over the timed train iterations.
        train_iters: how many train iterations were timed.
        eval_time: total ``val``/``test`` time in the current evaluation epoch.
    """

    tick: float = 0.0
    train_time: float = 0.0
    train_iters: int = 0
    eval_time: float = 0.0


def before_epoch(
    run: RunState, state: IterTimerState, info: EventInfo
) -> tuple[RunState, IterTimerState]:
    """Start the clock for an epoch of any mode."""
    return run, attrs.evolve(state, tick=info.time)


def after_epoch(
    run: RunState, state: IterTimerState, info: EventInfo
) -> tuple[RunState, IterTimerState]:
    """Forget the evaluation epoch's times (train sums persist for the ETA)."""
    return run, (attrs.evolve(state, eval_time=0.0) if state.eval_time else state)


def _before_iter(mode: str) -> Handler[IterTimerState]:
    key = f"{mode}/data_time"

    def handler(
        run: RunState, state: IterTimerState, info: EventInfo
    ) -> tuple[RunState, IterTimerState]:
        return run.emit(UpdateScalars({key: info.time - state.tick})), state

    return handler


def _after_iter(mode: str) -> Handler[IterTimerState]:
    key = f"{mode}/time"

    def handler(
        run: RunState, state: IterTimerState, info: EventInfo
    ) -> tuple[RunState, IterTimerState]:
        elapsed = info.time - state.tick
        if mode == "train":
            total, count = state.train_time + elapsed, state.train_iters + 1
            eta = total / count * (run.max_iters - run.iter - 1)
            new = IterTimerState(info.time, total, count, state.eval_time)
        else:
            batch_idx = info.batch_idx or 0
            total = state.eval_time + elapsed
            eta = total / (batch_idx + 1) * (run.dataloader_len.get(mode, 0) - batch_idx - 1)
            new = IterTimerState(info.time, state.train_time, state.train_iters, total)
        return run.emit(UpdateScalars({key: elapsed}), UpdateInfo({"eta": eta})), new

    return handler


def iter_timer_fn_hook(
    name: str, priority: PriorityLike = Priority.NORMAL
) -> FnHook[IterTimerState]:
    """The timer as a pipeline member.

    Args:
        name: the hook's unique name in the pipeline.
        priority: where it runs; MMEngine's ``NORMAL`` by default.

    Returns:
        The :class:`~fengine.core.pipeline.FnHook`, handling the epoch and iteration events of
        all three modes.
    """
    on: dict[Event, Handler[IterTimerState]] = {}
    for mode in MODES:
        on[Event(f"before_{mode}_epoch")] = before_epoch
        on[Event(f"after_{mode}_epoch")] = after_epoch
        on[Event(f"before_{mode}_iter")] = _before_iter(mode)
        on[Event(f"after_{mode}_iter")] = _after_iter(mode)
    return FnHook(name=name, priority=priority, init=IterTimerState(), on=on)


@HOOKS.register_module()
class IterTimerHook(BuiltinHook):
    """Times data loading and each iteration, and estimates the time left (module docstring).

    Called directly (``hook.before_train_iter(runner, 0)``), the façade reads the clock itself;
    inside a run the runner supplies one reading per event.
    """

    handles: ClassVar[Mapping[Event, str]] = in_every_mode(
        {
            "before_{}_epoch": "Start the clock.",
            "after_{}_epoch": "Reset the evaluation sums.",
            "before_{}_iter": "Record ``data_time``.",
            "after_{}_iter": "Record ``time`` and ``eta``.",
        }
    )

    priority: PriorityLike = "NORMAL"


    def pure_fn_hook(self, name: str) -> FnHook[IterTimerState]:
        """This hook's pure handlers as a pipeline member named ``name``."""
        return iter_timer_fn_hook(name, self.priority)
