"""ParamSchedulerHook: step the parameter schedulers at the points their kind asks for.

Pure part: three handlers emitting ``StepSchedulers`` effects, which the runner carries out on
the schedulers it built (none: nothing happens):

* after each train iteration: the iteration-based ones (``by_epoch=False``);
* after each train epoch: the epoch-based ones (in an iteration-based loop this is once, at the
  very end, as in MMEngine; convert them with ``convert_to_iter_based=True`` to act earlier);
* after each validation epoch with metrics: the metric-driven epoch-based ones
  (``ReduceOnPlateau``), given the metrics.

Since it runs after RuntimeInfoHook's ``before_train_iter``, the logged ``train/lr`` is the rate
the iteration used. Façade: :class:`ParamSchedulerHook`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from fengine.core.cadence import Ask
from fengine.core.effects import StepSchedulers
from fengine.core.events import Event
from fengine.core.pipeline import FnHook
from fengine.core.priority import Priority, PriorityLike
from fengine.core.run import EventInfo, RunState
from fengine.hooks.builtin import BuiltinHook
from fengine.registry import HOOKS


def after_train_iter(run: RunState, state: None, info: EventInfo) -> tuple[RunState, None]:
    """Step the iteration-based schedulers (when the shell has any)."""
    if not _steps_by_iteration(run, state, info.batch_idx):
        return run, state
    return run.emit(StepSchedulers(by_epoch=False)), state


def after_train_epoch(run: RunState, state: None, info: EventInfo) -> tuple[RunState, None]:
    """Step the epoch-based schedulers."""
    return run.emit(StepSchedulers(by_epoch=True)), state


def after_val_epoch(run: RunState, state: None, info: EventInfo) -> tuple[RunState, None]:
    """Step the metric-driven schedulers with the validation metrics (none: nothing)."""
    if info.metrics is None:
        return run, state
    return run.emit(StepSchedulers(by_epoch=True, metrics=info.metrics)), state


def _steps_by_iteration(run: RunState, state: None, batch_idx: int | None) -> bool:
    return bool(run.meta.get(ITERATION_SCHEDULERS, True))


#: The ``RunState.meta`` key where the shell says whether any of its schedulers steps by
#: iteration (absent: assume one does).
ITERATION_SCHEDULERS = "iteration_schedulers"


def param_scheduler_fn_hook(name: str, priority: PriorityLike = Priority.LOW) -> FnHook[None]:
    """The hook as a pipeline member.

    ``after_train_iter`` is due only while ``run.meta[ITERATION_SCHEDULERS]`` (set by the shell
    when it builds the schedulers) is true, so a run whose schedulers all step by epoch pays
    nothing per iteration.

    Args:
        name: the hook's unique name in the pipeline.
        priority: where it runs; MMEngine's ``LOW`` by default.

    Returns:
        The :class:`~fengine.core.pipeline.FnHook` (stateless).
    """
    on = {
        Event.AFTER_TRAIN_ITER: after_train_iter,
        Event.AFTER_TRAIN_EPOCH: after_train_epoch,
        Event.AFTER_VAL_EPOCH: after_val_epoch,
    }
    when = {Event.AFTER_TRAIN_ITER: Ask(_steps_by_iteration)}
    return FnHook(name=name, priority=priority, init=None, on=on, when=when)


@HOOKS.register_module()
class ParamSchedulerHook(BuiltinHook):
    """Steps the runner's parameter schedulers (see the module docstring)."""

    handles: ClassVar[Mapping[Event, str]] = {
        Event.AFTER_TRAIN_ITER: "Step the iteration-based schedulers.",
        Event.AFTER_TRAIN_EPOCH: "Step the epoch-based schedulers.",
        Event.AFTER_VAL_EPOCH: "Step the metric-driven schedulers.",
    }

    priority: PriorityLike = "LOW"
    owns: ClassVar[frozenset[str]] = frozenset(
        {"the stepping of the runner's parameter schedulers (a second hook steps each twice)"}
    )

    def pure_fn_hook(self, name: str) -> FnHook[None]:
        """This hook's pure handlers as a pipeline member named ``name``."""
        return param_scheduler_fn_hook(name, self.priority)
