"""A small in-memory shell that drives hooks through a run and carries out their effects.

It plays the runner's part for property tests: it advances the counters of a
:class:`~fengine.core.run.RunState` as a real loop would, dispatches each event, and interprets
effects over an in-memory world (a set of file names, a log, scalars, a stop flag), so a test can
state properties such as "never more than ``k`` checkpoints are kept" without a disk or a model.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, overload

import attrs

from fengine.core import effects as fx
from fengine.core.events import Event
from fengine.core.pipeline import FnHook, Pipeline, dispatch
from fengine.core.run import EventInfo, RunState
from fengine.hooks.hook import Hook


@attrs.frozen(eq=False)
class EventStep:
    """One event of a scripted run: the counters the shell shows and the event's arguments."""

    event: Event
    epoch: int
    iter: int
    info: EventInfo = attrs.field(factory=EventInfo)


@attrs.frozen(eq=False)
class RunScript(Sequence[EventStep]):
    """A legal event sequence of a whole run plus the facts the shell would know up front.

    The script is a sequence of its :class:`EventStep` s: ``for step in script``, ``script[0]``,
    ``script[-3:]`` (a tuple of steps), ``len(script)``, ``step in script``.
    """

    steps: tuple[EventStep, ...]
    max_epochs: int
    max_iters: int
    train_by_epoch: bool
    dataloader_len: Mapping[str, int]

    def initial_state(self, **changes: Any) -> RunState:
        """The :class:`RunState` a shell would start this run with (``changes`` override fields)."""
        base = RunState(
            max_epochs=self.max_epochs,
            max_iters=self.max_iters,
            train_by_epoch=self.train_by_epoch,
            dataloader_len=dict(self.dataloader_len),
            work_dir="work_dir",
            log_dir="work_dir/log",
            meta={"experiment_name": "simulated", "seed": 0},
        )
        return attrs.evolve(base, **changes)

    def __len__(self) -> int:
        return len(self.steps)

    @overload
    def __getitem__(self, index: int) -> EventStep: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[EventStep, ...]: ...

    def __getitem__(self, index: int | slice) -> EventStep | tuple[EventStep, ...]:
        return self.steps[index]

    def __iter__(self) -> Iterator[EventStep]:
        return iter(self.steps)


def as_fn_hook(hook: FnHook[Any] | Hook, name: str | None = None) -> FnHook[Any]:
    """A pipeline member for ``hook``: an :class:`FnHook` as is, a ``Hook`` object adapted."""
    if isinstance(hook, FnHook):
        return hook
    if isinstance(hook, Hook):
        return hook.to_fn_hook(name or type(hook).__name__)
    raise TypeError(f"expected an FnHook or a Hook instance, got {type(hook).__name__}: {hook!r}")


class _Scalars:
    """The message hub as far as simulated hooks read it: ``get_scalar(key).current``."""

    def __init__(self) -> None:
        self.history: dict[str, list[float]] = {}
        self.info: dict[str, Any] = {}

    def update_scalar(self, key: str, value: Any) -> None:
        self.history.setdefault(key, []).append(float(value))

    def get_scalar(self, key: str) -> _History:
        if key not in self.history:
            raise KeyError(f"{key!r} is not in the simulated message hub; present: {sorted(self.history)}")
        return _History(self.history[key])

    def get_info(self, key: str, default: Any = None) -> Any:
        return self.info.get(key, default)

    def update_info(self, key: str, value: Any) -> None:
        self.info[key] = value


class _Current(float):
    """A float that can also be called, so both ``.current`` and ``.current()`` read it."""

    def __call__(self) -> float:
        return float(self)


class _History:
    def __init__(self, values: list[float]) -> None:
        self.data = list(values)

    @property
    def current(self) -> _Current:
        return _Current(self.data[-1])

    def mean(self, window: int | None = None) -> float:
        values = self.data[-window:] if window else self.data
        return sum(values) / len(values)


class Simulation:
    """Drive a pipeline through :class:`EventStep` s, carrying out effects in memory.

    It is also the ``runner`` that MMEngine-style class hooks receive: it has ``run_state``,
    ``epoch``, ``iter``, ``max_epochs``, ``max_iters``, ``message_hub``, ``logger``, ``work_dir``
    and ``val()`` / ``test()`` that record the request.

    Attributes:
        files: checkpoint (and published) files that currently exist.
        checkpoints: every checkpoint written, by path: what ``before_save_checkpoint`` made of it.
        last_checkpoint: the path ``last_checkpoint`` would name.
        effects: every effect carried out, in order.
        logs: log lines (LogText messages and LogStep descriptions).
        stopped: whether a hook asked training to stop.
        val_requests: how many times a hook called ``runner.val()``.
    """

    def __init__(self, hooks: FnHook[Any] | Hook | list[FnHook[Any] | Hook] | Pipeline, run: RunState) -> None:
        if isinstance(hooks, Pipeline):
            self.pipeline = hooks
        else:
            members = hooks if isinstance(hooks, list) else [hooks]
            self.pipeline = Pipeline.of(as_fn_hook(h) for h in members)
        self.run_state = run.replace(hook_states={**self.pipeline.init_states(), **run.hook_states})
        self.files: set[str] = set()
        self.checkpoints: dict[str, dict[str, Any]] = {}
        self.last_checkpoint: str | None = None
        self.effects: list[fx.Effect] = []
        self.logs: list[str] = []
        self.stopped = False
        self.val_requests = 0
        self.message_hub = _Scalars()
        self.logger = logging.getLogger("fengine.testing")
        self._checkpoint: dict[str, Any] | None = None

    # -- the runner surface class hooks use ---------------------------------------------------
    @property
    def epoch(self) -> int:
        return self.run_state.epoch

    @property
    def iter(self) -> int:
        return self.run_state.iter

    @property
    def max_epochs(self) -> int:
        return self.run_state.max_epochs

    @property
    def max_iters(self) -> int:
        return self.run_state.max_iters

    @property
    def work_dir(self) -> str:
        return self.run_state.work_dir

    def val(self) -> dict[str, Any]:
        """Record a validation request (the simulation runs no model)."""
        self.val_requests += 1
        return {}

    def test(self) -> dict[str, Any]:
        """Record a test request."""
        return {}

    def run_hook(self, hook: Hook, event: Event, info: EventInfo) -> None:
        """Run one hook's handler for ``event`` (what built-in façade methods call)."""
        single = Pipeline.of([hook.to_fn_hook(type(hook).__name__)])
        self.run_state = dispatch(single, event, self.run_state, info)
        self._carry_out()

    # -- driving ---------------------------------------------------------------------------------
    def step(self, step: EventStep) -> None:
        """Set the counters of ``step``, dispatch its event and carry out the effects."""
        run = self.run_state
        if run.epoch != step.epoch or run.iter != step.iter:
            run = run.replace(epoch=step.epoch, iter=step.iter)
        info = attrs.evolve(step.info, runner=self)
        self.run_state = dispatch(self.pipeline, step.event, run, info)
        self._carry_out()

    def play(self, script: RunScript) -> Simulation:
        """Play every step, honouring a stop request at the next train-epoch (or iteration) boundary."""
        # Epoch loops check the stop flag before each epoch, iteration loops before each iteration.
        start = Event.BEFORE_TRAIN_EPOCH if script.train_by_epoch else Event.BEFORE_TRAIN_ITER
        resume = Event.AFTER_TRAIN if script.train_by_epoch else Event.AFTER_TRAIN_EPOCH
        skipping = False
        for step in script.steps:
            if self.stopped and step.event is start:
                skipping = True
            if skipping and step.event is resume:
                skipping = False
            if not skipping:
                self.step(step)
        return self

    def _carry_out(self) -> None:
        pending, self.run_state = self.run_state.effects, attrs.evolve(self.run_state, effects=())
        for effect in pending:
            self.effects.append(effect)
            self._apply(effect)

    def _apply(self, effect: fx.Effect) -> None:
        if isinstance(effect, fx.SaveCheckpoint):
            checkpoint: dict[str, Any] = {"meta": dict(effect.meta), "hook_states": dict(self.run_state.hook_states)}
            outer, self._checkpoint = self._checkpoint, checkpoint
            self.run_state = dispatch(
                self.pipeline, Event.BEFORE_SAVE_CHECKPOINT, self.run_state, EventInfo(checkpoint=checkpoint, runner=self)
            )
            self._carry_out()
            self._checkpoint = outer
            self.files.add(effect.path)
            self.checkpoints[effect.path] = checkpoint
            if effect.update_last:
                self.last_checkpoint = effect.path
        elif isinstance(effect, fx.PublishCheckpoint):
            self.files.add(effect.src.removesuffix(".pth") + "-published.pth")
        elif isinstance(effect, fx.RemoveFile):
            self.files.discard(effect.path)
        elif isinstance(effect, fx.AddToCheckpoint):
            if self._checkpoint is not None:
                self._checkpoint[effect.key] = effect.value
        elif isinstance(effect, fx.LogText):
            self.logs.append(effect.message)
        elif isinstance(effect, fx.LogStep):
            self.logs.append(f"{effect.mode} {effect.kind} {effect.batch_idx}")
        elif isinstance(effect, fx.UpdateScalars):
            for key, value in effect.values.items():
                self.message_hub.update_scalar(key, value)
        elif isinstance(effect, fx.UpdateInfo):
            for key, value in effect.values.items():
                self.message_hub.update_info(key, value)
            for key in effect.pop:
                self.message_hub.info.pop(key, None)
        elif isinstance(effect, fx.StopTraining):
            self.stopped = True
            self.run_state = attrs.evolve(self.run_state, stop_training=True)
