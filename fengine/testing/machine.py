"""``HookMachine``: drive a hook through a run event by event and check an invariant after each.

Subclass it, set ``hook`` (or override :meth:`make_hook`) and override :meth:`check`::

    class KeepsAtMostTwo(HookMachine):
        def make_hook(self):
            return CheckpointHook(interval=1, max_keep_ckpts=2)

        def check(self, sim):
            assert len(sim.files) <= 2

    TestKeepsAtMostTwo = KeepsAtMostTwo.TestCase

Hypothesis chooses the order of train iterations, epoch ends, validations with drawn metrics, and
checkpoint round trips of the hook's state (a resume), and shrinks a failing run to a short one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from fengine.core.events import Event
from fengine.core.pipeline import FnHook
from fengine.core.run import EventInfo, RunState
from fengine.hooks.hook import Hook
from fengine.testing.contracts import through_checkpoint
from fengine.testing.simulation import EventStep, Simulation, as_fn_hook
from fengine.testing.strategies import losses, metrics


class HookMachine(RuleBasedStateMachine):
    """A state machine over an epoch-based run of one hook.

    Class attributes to override: ``hook`` (or :meth:`make_hook`), ``metric_names``,
    ``iters_per_epoch``, ``max_epochs``, and :meth:`check`.
    """

    hook: ClassVar[FnHook[Any] | Hook | None] = None
    metric_names: ClassVar[Sequence[str]] = ("accuracy",)
    iters_per_epoch: ClassVar[int] = 3
    max_epochs: ClassVar[int] = 6

    def make_hook(self) -> FnHook[Any] | Hook:
        """A fresh hook for each run (defaults to the ``hook`` class attribute)."""
        if self.hook is None:
            raise TypeError(f"{type(self).__name__}: set `hook` or override make_hook()")
        return self.hook

    def check(self, sim: Simulation) -> None:
        """Assert what must hold after every step (override; the default checks nothing)."""

    # -- the run -------------------------------------------------------------------------------
    @initialize()
    def start(self) -> None:
        self.fn = as_fn_hook(self.make_hook())
        run = RunState(
            max_epochs=self.max_epochs,
            max_iters=self.max_epochs * self.iters_per_epoch,
            dataloader_len={"train": self.iters_per_epoch, "val": 1},
            work_dir="work_dir",
            meta={"experiment_name": "machine", "seed": 0},
        )
        self.sim = Simulation(self.fn, run)
        self.batch = 0
        self.clock = 0.0
        self._fire(Event.BEFORE_RUN)
        self._fire(Event.BEFORE_TRAIN)
        self._fire(Event.BEFORE_TRAIN_EPOCH)

    def _fire(self, event: Event, **info: Any) -> None:
        self.clock += 1.0
        run = self.sim.run_state
        self.sim.step(EventStep(event, run.epoch, run.iter, EventInfo(time=self.clock, **info)))

    def _running(self) -> bool:
        return not self.sim.stopped and self.sim.run_state.epoch < self.max_epochs

    @precondition(lambda self: self._running() and self.batch < self.iters_per_epoch)
    @rule(outputs=losses())
    def train_iter(self, outputs: dict[str, torch.Tensor]) -> None:
        """One training iteration."""
        self._fire(Event.BEFORE_TRAIN_ITER, batch_idx=self.batch)
        self._fire(Event.AFTER_TRAIN_ITER, batch_idx=self.batch, outputs=outputs)
        self.sim.run_state = self.sim.run_state.replace(iter=self.sim.run_state.iter + 1)
        self.batch += 1

    @precondition(lambda self: self._running() and self.batch == self.iters_per_epoch)
    @rule(data=st.data())
    def end_epoch(self, data: st.DataObject) -> None:
        """Finish the epoch, validate with drawn metrics, start the next epoch."""
        self._fire(Event.AFTER_TRAIN_EPOCH)
        self.sim.run_state = self.sim.run_state.replace(epoch=self.sim.run_state.epoch + 1)
        self._fire(Event.BEFORE_VAL)
        self._fire(Event.BEFORE_VAL_EPOCH)
        self._fire(Event.AFTER_VAL_EPOCH, metrics=data.draw(metrics(self.metric_names)))
        self._fire(Event.AFTER_VAL)
        self.batch = 0
        if self._running():
            self._fire(Event.BEFORE_TRAIN_EPOCH)

    @rule()
    def resume(self) -> None:
        """Save the hook's state as a checkpoint would and carry on from the restored copy."""
        state = self.sim.run_state.hook_states.get(self.fn.name, self.fn.init)
        restored = through_checkpoint(state)
        states = {**self.sim.run_state.hook_states, self.fn.name: restored}
        self.sim.run_state = self.sim.run_state.replace(hook_states=states)

    @invariant()
    def holds(self) -> None:
        if hasattr(self, "sim"):
            self.check(self.sim)
