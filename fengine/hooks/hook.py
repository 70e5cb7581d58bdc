"""MMEngine's ``Hook`` class as a façade over the functional pipeline.

A user's ``Hook`` subclass joins a :class:`~fengine.core.pipeline.Pipeline` through
:func:`adapt_class_hook`: each method the subclass overrides becomes a handler that calls it with
the runner, so class hooks and :class:`~fengine.core.pipeline.FnHook` s run in one priority order.
Built-in hooks (:class:`~fengine.hooks.builtin.BuiltinHook`) hand the pipeline their pure
handlers instead; their MMEngine-named methods run those handlers through the runner
(:class:`HookHost`).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar, Protocol

from fengine.core.events import STAGES, Event
from fengine.core.pipeline import FnHook, Handler
from fengine.core.priority import PriorityLike
from fengine.core.run import EventInfo, RunState


class HookHost(Protocol):
    """What a hook needs from the shell (the Runner implements it)."""

    @property
    def run_state(self) -> RunState: ...

    @run_state.setter
    def run_state(self, value: RunState) -> None: ...

    def run_hook(self, hook: Hook, event: Event, info: EventInfo) -> None:
        """Run ``hook``'s pure handler for ``event`` on the current state and carry out its effects."""


DATA_BATCH = dict[str, Any] | tuple[Any, ...] | list[Any] | None

# Private MMEngine methods that stand for an event in every mode.
_PRIVATE: Mapping[str, tuple[Event, ...]] = {
    "_before_epoch": (Event.BEFORE_TRAIN_EPOCH, Event.BEFORE_VAL_EPOCH, Event.BEFORE_TEST_EPOCH),
    "_after_epoch": (Event.AFTER_TRAIN_EPOCH, Event.AFTER_VAL_EPOCH, Event.AFTER_TEST_EPOCH),
    "_before_iter": (Event.BEFORE_TRAIN_ITER, Event.BEFORE_VAL_ITER, Event.BEFORE_TEST_ITER),
    "_after_iter": (Event.AFTER_TRAIN_ITER, Event.AFTER_VAL_ITER, Event.AFTER_TEST_ITER),
}


def event_arg_names(event: Event) -> tuple[str, ...]:
    """The keyword arguments MMEngine passes to the ``Hook`` method of ``event``, in order."""
    name = event.value
    if name.endswith("_iter"):
        return ("batch_idx", "data_batch", "outputs") if name.startswith("after") else ("batch_idx", "data_batch")
    if event in (Event.AFTER_VAL_EPOCH, Event.AFTER_TEST_EPOCH):
        return ("metrics",)
    if event in (Event.BEFORE_SAVE_CHECKPOINT, Event.AFTER_LOAD_CHECKPOINT):
        return ("checkpoint",)
    return ()


def event_kwargs(event: Event, info: EventInfo) -> dict[str, Any]:
    """Those keyword arguments (:func:`event_arg_names`) with their values from ``info``."""
    return {name: getattr(info, name) for name in event_arg_names(event)}


class Hook:
    """Base class of MMEngine-style hooks: every method is a no-op until a subclass overrides it.

    ``priority`` (class or instance attribute) is a name, an int in ``0..100`` or a
    :class:`~fengine.core.priority.Priority`; it is kept as given and converted only to sort.
    ``owns`` names, in words, state outside the hook that it takes over for the whole run (see
    :attr:`fengine.core.pipeline.FnHook.owns`): a runner refuses two hooks that own the same
    thing, while any number of hooks of one class that own nothing may be registered.
    """

    priority: PriorityLike = "NORMAL"
    owns: ClassVar[frozenset[str]] = frozenset()
    stages: ClassVar[tuple[str, ...]] = tuple(e.value for e in STAGES)

    # -- run-level ---------------------------------------------------------------------------
    def before_run(self, runner: Any) -> None:
        """Called once before anything else in ``train``/``val``/``test``."""

    def after_run(self, runner: Any) -> None:
        """Called once at the very end of ``train``/``val``/``test``."""

    def before_train(self, runner: Any) -> None:
        """Called before the train loop starts."""

    def after_train(self, runner: Any) -> None:
        """Called after the train loop ends."""

    def before_val(self, runner: Any) -> None:
        """Called before a validation loop."""

    def after_val(self, runner: Any) -> None:
        """Called after a validation loop."""

    def before_test(self, runner: Any) -> None:
        """Called before the test loop."""

    def after_test(self, runner: Any) -> None:
        """Called after the test loop."""

    def before_save_checkpoint(self, runner: Any, checkpoint: dict[str, Any]) -> None:
        """Called with the checkpoint dict before it is written; may add or change keys."""

    def after_load_checkpoint(self, runner: Any, checkpoint: dict[str, Any]) -> None:
        """Called with a loaded checkpoint dict before its weights are applied."""

    # -- epochs --------------------------------------------------------------------------------
    def before_train_epoch(self, runner: Any) -> None:
        """Called before each train epoch."""
        self._before_epoch(runner, mode="train")

    def before_val_epoch(self, runner: Any) -> None:
        """Called before each validation epoch."""
        self._before_epoch(runner, mode="val")

    def before_test_epoch(self, runner: Any) -> None:
        """Called before the test epoch."""
        self._before_epoch(runner, mode="test")

    def after_train_epoch(self, runner: Any) -> None:
        """Called after each train epoch."""
        self._after_epoch(runner, mode="train")

    def after_val_epoch(self, runner: Any, metrics: dict[str, float] | None = None) -> None:
        """Called after each validation epoch with the evaluator's metrics."""
        self._after_epoch(runner, mode="val")

    def after_test_epoch(self, runner: Any, metrics: dict[str, float] | None = None) -> None:
        """Called after the test epoch with the evaluator's metrics."""
        self._after_epoch(runner, mode="test")

    # -- iterations ----------------------------------------------------------------------------
    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: DATA_BATCH = None) -> None:
        """Called before each train iteration."""
        self._before_iter(runner, batch_idx=batch_idx, data_batch=data_batch, mode="train")

    def before_val_iter(self, runner: Any, batch_idx: int, data_batch: DATA_BATCH = None) -> None:
        """Called before each validation iteration."""
        self._before_iter(runner, batch_idx=batch_idx, data_batch=data_batch, mode="val")

    def before_test_iter(self, runner: Any, batch_idx: int, data_batch: DATA_BATCH = None) -> None:
        """Called before each test iteration."""
        self._before_iter(runner, batch_idx=batch_idx, data_batch=data_batch, mode="test")

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: DATA_BATCH = None, outputs: Any = None
    ) -> None:
        """Called after each train iteration with the step's outputs (``log_vars``)."""
        self._after_iter(runner, batch_idx=batch_idx, data_batch=data_batch, outputs=outputs, mode="train")

    def after_val_iter(
        self, runner: Any, batch_idx: int, data_batch: DATA_BATCH = None, outputs: Any = None
    ) -> None:
        """Called after each validation iteration with ``val_step``'s outputs."""
        self._after_iter(runner, batch_idx=batch_idx, data_batch=data_batch, outputs=outputs, mode="val")

    def after_test_iter(
        self, runner: Any, batch_idx: int, data_batch: DATA_BATCH = None, outputs: Any = None
    ) -> None:
        """Called after each test iteration with ``test_step``'s outputs."""
        self._after_iter(runner, batch_idx=batch_idx, data_batch=data_batch, outputs=outputs, mode="test")

    # -- the mode-generic methods MMEngine subclasses may override -----------------------------
    def _before_epoch(self, runner: Any, mode: str = "train") -> None:
        """Before an epoch of any mode."""

    def _after_epoch(self, runner: Any, mode: str = "train") -> None:
        """After an epoch of any mode."""

    def _before_iter(
        self, runner: Any, batch_idx: int, data_batch: DATA_BATCH = None, mode: str = "train"
    ) -> None:
        """Before an iteration of any mode."""

    def _after_iter(
        self,
        runner: Any,
        batch_idx: int,
        data_batch: DATA_BATCH = None,
        outputs: Any = None,
        mode: str = "train",
    ) -> None:
        """After an iteration of any mode."""

    # -- MMEngine's helpers ------------------------------------------------------------------
    def every_n_epochs(self, runner: Any, n: int, start: int = 0) -> bool:
        """Whether the epoch just finished (``runner.epoch + 1``) is ``start + k*n``, k ≥ 0."""
        dividend = runner.epoch + 1 - start
        return dividend >= 0 and n > 0 and dividend % n == 0

    def every_n_train_iters(self, runner: Any, n: int, start: int = 0) -> bool:
        """Whether the iteration just finished (``runner.iter + 1``) is ``start + k*n``, k ≥ 0."""
        dividend = runner.iter + 1 - start
        return dividend >= 0 and n > 0 and dividend % n == 0

    def every_n_inner_iters(self, batch_idx: int, n: int) -> bool:
        """Whether ``batch_idx + 1`` is a multiple of ``n``."""
        return n > 0 and (batch_idx + 1) % n == 0

    def end_of_epoch(self, dataloader: Any, batch_idx: int) -> bool:
        """Whether ``batch_idx`` is the last batch of ``dataloader``."""
        return batch_idx + 1 == len(dataloader)

    def is_last_train_epoch(self, runner: Any) -> bool:
        """Whether the current epoch is the last one."""
        return bool(runner.epoch + 1 == runner.max_epochs)

    def is_last_train_iter(self, runner: Any) -> bool:
        """Whether the current iteration is the last one."""
        return bool(runner.iter + 1 == runner.max_iters)

    def get_triggered_stages(self) -> list[str]:
        """Names of the stages this hook acts on (public or mode-generic methods overridden)."""
        return [e.value for e in STAGES if e in triggered_events(type(self))]

    # -- the pipeline ----------------------------------------------------------------------------
    def to_fn_hook(self, name: str) -> FnHook[Any]:
        """This hook as a pipeline member named ``name`` (built-in hooks return pure handlers)."""
        return adapt_class_hook(self, name)


def triggered_events(cls: type[Hook]) -> frozenset[Event]:
    """The events whose method ``cls`` overrides (directly or through a mode-generic method)."""
    events: set[Event] = set()
    for event in Event:
        if getattr(cls, event.value, None) is not getattr(Hook, event.value):
            events.add(event)
    for private, covered in _PRIVATE.items():
        if getattr(cls, private, None) is not getattr(Hook, private):
            events.update(covered)
    return frozenset(events)


def _accepted(method: Any) -> frozenset[str] | None:
    """The keyword names ``method`` accepts, or ``None`` when it takes ``**kwargs``."""
    try:
        parameters = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return frozenset(p.name for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL)


def make_class_handler(hook: Hook, event: Event) -> Handler[Any]:
    """The pipeline handler that calls ``hook``'s method for ``event`` with the runner."""
    method = getattr(hook, event.value)
    # The seed documents `before_train_iter(self, runner)` while MMEngine passes `batch_idx=`,
    # `data_batch=`, ... by keyword: hand each method only the arguments it declares.
    accepted = _accepted(method)
    names = tuple(n for n in event_arg_names(event) if accepted is None or n in accepted)

    def handler(run: RunState, own: Any, info: EventInfo) -> tuple[RunState, Any]:
        runner = info.runner
        if runner is not None:
            runner.run_state = run  # the hook sees what earlier hooks of this event decided
        try:
            method(runner, **{n: getattr(info, n) for n in names})
        except TypeError as error:  # MMEngine names the hook in signature errors
            raise TypeError(f"{error} in {hook!r}") from None
        return (runner.run_state if runner is not None else run), own

    return handler


def adapt_class_hook(hook: Hook, name: str) -> FnHook[None]:
    """Wrap an MMEngine-style hook object so it runs inside the pipeline.

    Only the methods its class overrides become handlers, so hooks that do nothing for an event
    cost nothing there. Each handler hands the runner the fold's current state before calling the
    method and takes the runner's state back afterwards, so a class hook that calls
    ``runner.val()`` (or mutates the runner) is seen by the hooks after it.
    """
    on = {event: make_class_handler(hook, event) for event in triggered_events(type(hook))}
    return FnHook(name=name, priority=hook.priority, init=None, on=on)
