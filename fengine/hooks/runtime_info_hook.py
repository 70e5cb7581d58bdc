"""RuntimeInfoHook: the run's counters, learning rates, losses and metrics into the message hub.

Pure part: :class:`RuntimeInfoState` and :class:`RuntimeInfoHandlers`, whose handlers emit
``UpdateInfo``/``UpdateScalars``/``RecordOptimizerScalars`` (and ``WriteTensorboard``) effects with
MMEngine's key names. Façade: :class:`RuntimeInfoHook`.

What is written, and when:

* ``before_run``: infos ``cfg``, ``seed``, ``experiment_name``, ``mmengine_version``;
* ``before_train``: ``loop_stage='train'``, ``epoch``, ``iter``, ``max_epochs``, ``max_iters``,
  ``dataset_meta`` (when known); ``after_train`` pops ``loop_stage``;
* ``before_train_epoch``: ``epoch``; ``before_train_iter``: ``iter`` and ``train/<lr key>``
  scalars from the optimizer wrapper; ``after_train_iter``: each output as ``train/<key>``;
* ``before_val``/``before_test``: ``loop_stage``; ``after_val`` puts ``'train'`` back when the
  validation ran inside training, else pops it; ``after_test`` pops it;
* ``after_val_epoch``/``after_test_epoch``: scalar metrics as ``val/<key>`` (``test/<key>``)
  scalars, anything else as infos under the same names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
import numpy as np
import torch

import fengine
from fengine.core import plain
from fengine.core.effects import (
    Effect,
    RecordOptimizerScalars,
    UpdateInfo,
    UpdateScalars,
    WriteTensorboard,
)
from fengine.core.events import Event
from fengine.core.pipeline import FnHook
from fengine.core.priority import Priority, PriorityLike
from fengine.core.run import EventInfo, RunState
from fengine.hooks.builtin import BuiltinHook
from fengine.registry import HOOKS


def is_scalar(value: object) -> bool:
    """Whether the message hub stores ``value`` as a scalar (else as an info).

    Args:
        value: a metric or output value.

    Returns:
        ``True`` for Python ints and floats, numpy numbers, and one-element numpy arrays or tensors.
    """
    if isinstance(value, np.ndarray):
        return bool(value.size == 1)
    if isinstance(value, torch.Tensor):
        return value.numel() == 1
    return isinstance(value, (int, float, np.number))


@plain.register("hooks.RuntimeInfoState")
@attrs.frozen
class RuntimeInfoState:
    """Which loop the message hub's ``loop_stage`` names, and the one validation interrupted."""

    loop_stage: str | None = None
    outer_stage: str | None = None


def _with(run: RunState, *effects: Effect) -> RunState:
    return run.emit(*effects) if effects else run


def _metric_effects(
    prefix: str, metrics: Mapping[str, Any] | None, step: int, tensorboard: bool
) -> tuple[Effect, ...]:
    if not metrics:
        return ()
    scalars = {f"{prefix}/{k}": v for k, v in metrics.items() if is_scalar(v)}
    infos = {f"{prefix}/{k}": v for k, v in metrics.items() if not is_scalar(v)}
    effects: list[Effect] = []
    if scalars:
        effects.append(UpdateScalars(scalars))
        if tensorboard:
            # `.item()`: one-element arrays and tensors count as scalars, and float() refuses arrays
            effects.append(WriteTensorboard({k: float(v.item() if hasattr(v, "item") else v) for k, v in scalars.items()}, step))
    if infos:
        effects.append(UpdateInfo(infos))
    return tuple(effects)


@attrs.frozen
class RuntimeInfoHandlers:
    """The pure handlers of :class:`RuntimeInfoHook`.

    Args:
        enable_tensorboard: also emit ``WriteTensorboard`` for train outputs (step ``iter + 1``) and
            val/test scalar metrics (step ``epoch`` in epoch-based runs, ``iter`` otherwise).
    """

    enable_tensorboard: bool = True

    def before_run(
        self, run: RunState, state: RuntimeInfoState, info: EventInfo
    ) -> tuple[RunState, RuntimeInfoState]:
        """Record the run's facts; forget any stage left by an earlier run."""
        meta = run.meta
        values = {
            "cfg": meta.get("cfg", ""),
            "seed": meta.get("seed"),
            "experiment_name": meta.get("experiment_name"),
            "mmengine_version": fengine.__version__,
        }
        return run.emit(UpdateInfo(values)), RuntimeInfoState()

    def before_train(
        self, run: RunState, state: RuntimeInfoState, info: EventInfo
    ) -> tuple[RunState, RuntimeInfoState]:
        """Record the resumed counters and enter the ``train`` stage."""
        values: dict[str, Any] = {
            "loop_stage": "train",
            "epoch": run.epoch,
            "iter": run.iter,
            "max_epochs": run.max_epochs,
            "max_iters": run.max_iters,
        }
        if run.meta.get("dataset_meta") is not None:
            values["dataset_meta"] = run.meta["dataset_meta"]
        return run.emit(UpdateInfo(values)), attrs.evolve(state, loop_stage="train")

    def after_train(
        self, run: RunState, state: RuntimeInfoState, info: EventInfo
    ) -> tuple[RunState, RuntimeInfoState]:
        """Leave the ``train`` stage."""
        return run.emit(UpdateInfo(pop=("loop_stage",))), RuntimeInfoState()

    def before_train_epoch(
        self, run: RunState, state: RuntimeInfoState, info: EventInfo
    ) -> tuple[RunState, RuntimeInfoState]:
        """Record the 0-based epoch about to run."""
        return run.emit(UpdateInfo({"epoch": run.epoch})), state

    def before_train_iter(
        self, run: RunState, state: RuntimeInfoState, info: EventInfo
    ) -> tuple[RunState, RuntimeInfoState]:
        """Record the 0-based iteration and the learning rates it will use."""
        return run.emit(UpdateInfo({"iter": run.iter}), RecordOptimizerScalars()), state

    def after_train_iter(
        self, run: RunState, state: RuntimeInfoState, info: EventInfo
    ) -> tuple[RunState, RuntimeInfoState]:
        """Record every value of the step's outputs (``log_vars``) as ``train/<key>``."""
        if not info.outputs:
            return run, state
        values = {f"train/{k}": v for k, v in info.outputs.items()}
        effects: list[Effect] = [UpdateScalars(values)]
        if self.enable_tensorboard:
            scalars = {k: v for k, v in values.items() if is_scalar(v)}
            effects.append(WriteTensorboard(scalars, run.iter + 1))
        return run.emit(*effects), state

    def before_val(
        self, run: RunState, state: RuntimeInfoState, info: EventInfo
    ) -> tuple[RunState, RuntimeInfoState]:
        """Enter the ``val`` stage, remembering the stage it interrupts."""
        new = RuntimeInfoState(loop_stage="val", outer_stage=state.loop_stage)
        return run.emit(UpdateInfo({"loop_stage": "val"})), new

    def after_val(
        self, run: RunState, state: RuntimeInfoState, info: EventInfo
    ) -> tuple[RunState, RuntimeInfoState]:
        """Go back to ``train`` when validating inside training, else leave the stage."""
        if state.outer_stage == "train":
            return run.emit(UpdateInfo({"loop_stage": "train"})), RuntimeInfoState("train")
        return run.emit(UpdateInfo(pop=("loop_stage",))), RuntimeInfoState()

    def before_test(
        self, run: RunState, state: RuntimeInfoState, info: EventInfo
    ) -> tuple[RunState, RuntimeInfoState]:
        """Enter the ``test`` stage."""
        return run.emit(UpdateInfo({"loop_stage": "test"})), RuntimeInfoState("test")

    def after_test(
        self, run: RunState, state: RuntimeInfoState, info: EventInfo
    ) -> tuple[RunState, RuntimeInfoState]:
        """Leave the ``test`` stage."""
        return run.emit(UpdateInfo(pop=("loop_stage",))), RuntimeInfoState()

    def after_val_epoch(
        self, run: RunState, state: RuntimeInfoState, info: EventInfo
    ) -> tuple[RunState, RuntimeInfoState]:
        """Record the validation metrics under ``val/``."""
        step = run.epoch if run.train_by_epoch else run.iter
        effects = _metric_effects("val", info.metrics, step, self.enable_tensorboard)
        return _with(run, *effects), state

    def after_test_epoch(
        self, run: RunState, state: RuntimeInfoState, info: EventInfo
    ) -> tuple[RunState, RuntimeInfoState]:
        """Record the test metrics under ``test/``."""
        step = run.epoch if run.train_by_epoch else run.iter
        effects = _metric_effects("test", info.metrics, step, self.enable_tensorboard)
        return _with(run, *effects), state

    def fn_hook(
        self, name: str, priority: PriorityLike = Priority.VERY_HIGH
    ) -> FnHook[RuntimeInfoState]:
        """These handlers as a pipeline member.

        Args:
            name: the hook's unique name in the pipeline.
            priority: where it runs; MMEngine's ``VERY_HIGH`` by default.

        Returns:
            The :class:`~fengine.core.pipeline.FnHook`.
        """
        on = {event: getattr(self, event.value) for event in _EVENTS}
        return FnHook(name=name, priority=priority, init=RuntimeInfoState(), on=on)


_EVENTS = (
    Event.BEFORE_RUN,
    Event.BEFORE_TRAIN,
    Event.AFTER_TRAIN,
    Event.BEFORE_TRAIN_EPOCH,
    Event.BEFORE_TRAIN_ITER,
    Event.AFTER_TRAIN_ITER,
    Event.BEFORE_VAL,
    Event.AFTER_VAL,
    Event.BEFORE_TEST,
    Event.AFTER_TEST,
    Event.AFTER_VAL_EPOCH,
    Event.AFTER_TEST_EPOCH,
)


@HOOKS.register_module()
class RuntimeInfoHook(BuiltinHook):
    """Keeps the message hub's runtime information current (see the module docstring).

    Args:
        enable_tensorboard: also write the train outputs and val/test metrics as TensorBoard
            event files under the log dir (needs the optional ``tensorboard`` package; the runner
            warns once when it is missing).

    Raises:
        TypeError: ``enable_tensorboard`` is not a bool.
    """

    handles: ClassVar[Mapping[Event, str]] = {
        Event.BEFORE_RUN: "Record the run's facts.",
        Event.BEFORE_TRAIN: "Record the counters and enter the train stage.",
        Event.AFTER_TRAIN: "Leave the train stage.",
        Event.BEFORE_TRAIN_EPOCH: "Record the epoch.",
        Event.BEFORE_TRAIN_ITER: "Record the iteration and learning rates.",
        Event.AFTER_TRAIN_ITER: "Record the step's outputs.",
        Event.BEFORE_VAL: "Enter the val stage.",
        Event.AFTER_VAL: "Leave the val stage.",
        Event.BEFORE_TEST: "Enter the test stage.",
        Event.AFTER_TEST: "Leave the test stage.",
        Event.AFTER_VAL_EPOCH: "Record the validation metrics.",
        Event.AFTER_TEST_EPOCH: "Record the test metrics.",
    }

    priority: PriorityLike = "VERY_HIGH"
    owns: ClassVar[frozenset[str]] = frozenset(
        {"the message hub's runtime info and train/val/test scalars (a second hook records each value twice)"}
    )


    def __init__(self, enable_tensorboard: bool = True) -> None:
        if not isinstance(enable_tensorboard, bool):
            raise TypeError(
                f"RuntimeInfoHook: enable_tensorboard must be a bool, got {enable_tensorboard!r}"
            )
        self.enable_tensorboard = enable_tensorboard
        self.handlers = RuntimeInfoHandlers(enable_tensorboard)

    def pure_fn_hook(self, name: str) -> FnHook[RuntimeInfoState]:
        """This hook's pure handlers as a pipeline member named ``name``."""
        return self.handlers.fn_hook(name, self.priority)
