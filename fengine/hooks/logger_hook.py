"""LoggerHook: when to write a log line and a scalar record.

Pure part: :class:`LoggerRules`, whose handlers emit ``LogStep`` (the runner formats the line from
the message hub with its log processor and writes the tag to the scalar backends) and ``LogText``
effects. The rules, per event:

* after a train iteration with ``batch_idx`` (in-epoch index; global in an iteration loop):
  ``Exp name: <experiment>`` every ``interval_exp_name`` iterations and at the end of the epoch;
  a line with scalars at step ``iter + 1`` when ``(batch_idx + 1) % interval == 0`` (with
  ``by_epoch=False``: ``(iter + 1) % interval == 0``), or at the last batch of the epoch when
  ``ignore_last`` is off or the epoch has at most ``interval`` batches;
* after a val/test iteration: a line (no scalars) every ``interval`` batches;
* after a val epoch: the summary with scalars at step ``epoch`` (epoch-based runs) or ``iter``
  (iteration-based runs, or ``by_epoch=False``); an explicit ``log_metric_by_epoch`` decides
  instead, as in MMEngine, where an iteration-based run records every validation at step 0;
* after the test epoch: the summary (the runner also dumps it as JSON);
* after the run, with ``out_dir``: ``ExportLogs`` copies the log files there.

Façade: :class:`LoggerHook`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs

from fengine.core.cadence import AnyOf, Cadence, Every, Last
from fengine.core.effects import Effect, ExportLogs, LogStep, LogText
from fengine.core.events import Event
from fengine.core.pipeline import FnHook, Handler
from fengine.core.priority import Priority, PriorityLike
from fengine.core.run import EventInfo, RunState
from fengine.file_client import run_folder, storage_of
from fengine.hooks.builtin import BuiltinHook
from fengine.logging.logger import print_log
from fengine.registry import HOOKS


@attrs.frozen
class LoggerRules:
    """The LoggerHook's decisions as pure handlers (stateless).

    Args:
        interval: log every ``interval`` iterations.
        ignore_last: skip the last iterations of an epoch that do not fill an interval.
        by_epoch: count the train interval within the epoch (``True``) or over the run.
        interval_exp_name: log the experiment's name every this many train iterations.
        log_metric_by_epoch: record validation scalars at step ``epoch`` (``True``) or ``iter``
            (``False``); ``None`` follows the train loop's kind (and ``by_epoch``).
        out_dir: copy the log files to ``<out_dir>/<basename of work_dir>`` after the run.
        out_suffix: the endings of the files to copy.
        keep_local: keep the local log files after copying them.
    """

    interval: int = 10
    ignore_last: bool = True
    by_epoch: bool = True
    interval_exp_name: int = 1000
    log_metric_by_epoch: bool | None = None
    out_dir: str | None = None
    out_suffix: tuple[str, ...] = (".json", ".log", ".py", "yaml")
    keep_local: bool = True

    def export_dir(self, run: RunState) -> str | None:
        """Where the log files go after the run: ``out_dir/<basename of work_dir>``."""
        if self.out_dir is None:
            return None
        return run_folder(self.out_dir, run.work_dir)

    def before_run(self, run: RunState, state: None, info: EventInfo) -> tuple[RunState, None]:
        """Say where the logs will be copied."""
        target = self.export_dir(run)
        if target is None:
            return run, state
        return run.emit(LogText(f"Text logs will be saved to {target} after the training process.")), state

    def after_train_iter(self, run: RunState, state: None, info: EventInfo) -> tuple[RunState, None]:
        """Log the experiment's name and a train line when the rules say so."""
        batch_idx = info.batch_idx or 0
        end_of_epoch = batch_idx + 1 == run.dataloader_len.get("train", -1)
        effects: list[Effect] = []
        if (run.iter + 1) % self.interval_exp_name == 0 or end_of_epoch:
            effects.append(LogText(f"Exp name: {run.meta.get('experiment_name')}"))
        if self.emits_train_line(run.iter, batch_idx, run.dataloader_len.get("train", -1)):
            effects.append(LogStep("train", "iter", batch_idx, step=run.iter + 1, scalars=True))
        return (run.emit(*effects) if effects else run), state

    def emits_train_line(self, iteration: int, batch_idx: int, epoch_len: int) -> bool:
        """Whether the train iteration ``iteration`` (0-based) at ``batch_idx`` gets a line.

        Args:
            iteration: completed iterations before this one (``RunState.iter``).
            batch_idx: the batch index the loop passed.
            epoch_len: batches per epoch.

        Returns:
            ``True`` on interval boundaries, and at the epoch's last batch unless ``ignore_last``
            holds and the epoch has more than ``interval`` batches.
        """
        counted = batch_idx if self.by_epoch else iteration
        if (counted + 1) % self.interval == 0:
            return True
        last = batch_idx + 1 == epoch_len
        return last and (not self.ignore_last or epoch_len <= self.interval)

    def _eval_iter(self, mode: str) -> Handler[None]:
        def handler(run: RunState, state: None, info: EventInfo) -> tuple[RunState, None]:
            batch_idx = info.batch_idx or 0
            if (batch_idx + 1) % self.interval != 0:
                return run, state
            return run.emit(LogStep(mode, "iter", batch_idx, scalars=False)), state

        return handler

    def metric_step(self, run: RunState) -> int:
        """The step validation scalars are recorded at (see the class docstring)."""
        by_epoch = self.log_metric_by_epoch
        if by_epoch is None:
            by_epoch = self.by_epoch and run.train_by_epoch
        return run.epoch if by_epoch else run.iter

    def after_val_epoch(self, run: RunState, state: None, info: EventInfo) -> tuple[RunState, None]:
        """Log the validation summary and record its scalars."""
        last = run.dataloader_len.get("val", 0) - 1
        return run.emit(LogStep("val", "epoch", last, step=self.metric_step(run), scalars=True)), state

    def after_test_epoch(self, run: RunState, state: None, info: EventInfo) -> tuple[RunState, None]:
        """Log the test summary."""
        last = run.dataloader_len.get("test", 0) - 1
        return run.emit(LogStep("test", "epoch", last, step=0, scalars=True)), state

    def after_run(self, run: RunState, state: None, info: EventInfo) -> tuple[RunState, None]:
        """Copy the log files to ``out_dir``."""
        target = self.export_dir(run)
        if target is None:
            return run, state
        return run.emit(ExportLogs(run.log_dir, target, self.out_suffix, self.keep_local)), state

    def fn_hook(self, name: str, priority: PriorityLike = Priority.BELOW_NORMAL) -> FnHook[None]:
        """These rules as a pipeline member.

        Args:
            name: the hook's unique name in the pipeline.
            priority: where it runs; MMEngine's ``BELOW_NORMAL`` by default.

        Returns:
            The stateless :class:`~fengine.core.pipeline.FnHook`.
        """
        on: dict[Event, Handler[None]] = {
            Event.BEFORE_RUN: self.before_run,
            Event.AFTER_TRAIN_ITER: self.after_train_iter,
            Event.AFTER_VAL_ITER: self._eval_iter("val"),
            Event.AFTER_TEST_ITER: self._eval_iter("test"),
            Event.AFTER_VAL_EPOCH: self.after_val_epoch,
            Event.AFTER_TEST_EPOCH: self.after_test_epoch,
            Event.AFTER_RUN: self.after_run,
        }
        train_lines = Every(self.interval, "batch" if self.by_epoch else "iter")
        when: dict[Event, Cadence] = {
            # The experiment's name, a line at an interval, or the epoch's last batch.
            Event.AFTER_TRAIN_ITER: AnyOf((Every(self.interval_exp_name), train_lines, Last("batch"))),
            Event.AFTER_VAL_ITER: Every(self.interval, "batch"),
            Event.AFTER_TEST_ITER: Every(self.interval, "batch"),
        }
        return FnHook(name=name, priority=priority, init=None, on=on, when=when)


def _check(name: str, value: object, kind: type | tuple[type, ...], accepted: str) -> None:
    if (isinstance(value, bool) and kind is int) or not isinstance(value, kind):
        raise TypeError(f"LoggerHook: {name} must be {accepted}, got {value!r}")


def _suffixes(out_suffix: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(out_suffix, str):
        return (out_suffix,)
    if isinstance(out_suffix, Sequence) and all(isinstance(s, str) for s in out_suffix):
        return tuple(out_suffix)
    raise TypeError(f"LoggerHook: out_suffix must be a str or a sequence of str, got {out_suffix!r}")


@HOOKS.register_module()
class LoggerHook(BuiltinHook):
    """Writes log lines and scalar records at the points the module docstring lists.

    Args:
        interval: log every ``interval`` iterations (> 0).
        ignore_last: skip an epoch's last iterations that do not fill an interval.
        reset_flag: accepted for compatibility; the log processor's window averages take the
            place of a log buffer that would need resetting, so it changes nothing.
        by_epoch: count the train interval within each epoch (``False``: over the run, and
            validation scalars at step ``iter``).
        interval_exp_name: log ``Exp name: ...`` every this many iterations (> 0).
        out_dir: copy log files to ``<out_dir>/<basename of work_dir>`` after the run.
        out_suffix: endings of the files to copy.
        keep_local: keep the local log files after copying.
        file_client_args: MMEngine's storage arguments (deprecated there, with a warning);
            local disk only; needs ``out_dir``.
        log_metric_by_epoch: step of validation scalars: ``epoch`` (``True``) or ``iter``
            (``False``); default: ``epoch`` in epoch-based runs, ``iter`` in iteration-based ones.
        backend_args: MMEngine's storage arguments; local disk only. With ``out_dir``, the
            hook has MMEngine's ``file_client`` and ``file_backend`` built from these.

    Raises:
        TypeError: an argument of the wrong type (named in the message).
        ValueError: ``interval`` or ``interval_exp_name`` not positive, ``file_client_args``
            without ``out_dir``, both ``file_client_args`` and ``backend_args``, or a remote
            storage backend.
    """

    handles: ClassVar[Mapping[Event, str]] = {
        Event.BEFORE_RUN: "Announce the log export directory.",
        Event.AFTER_TRAIN_ITER: "Log a train line when due.",
        Event.AFTER_VAL_ITER: "Log a validation line when due.",
        Event.AFTER_TEST_ITER: "Log a test line when due.",
        Event.AFTER_VAL_EPOCH: "Log and record the validation summary.",
        Event.AFTER_TEST_EPOCH: "Log the test summary.",
        Event.AFTER_RUN: "Copy the logs to ``out_dir``.",
    }

    priority: PriorityLike = "BELOW_NORMAL"


    def __init__(
        self,
        interval: int = 10,
        ignore_last: bool = True,
        reset_flag: bool = False,
        by_epoch: bool = True,
        *,
        interval_exp_name: int = 1000,
        out_dir: str | os.PathLike[str] | None = None,
        out_suffix: str | Sequence[str] = (".json", ".log", ".py", "yaml"),
        keep_local: bool = True,
        file_client_args: dict[str, Any] | None = None,
        log_metric_by_epoch: bool | None = None,
        backend_args: dict[str, Any] | None = None,
    ) -> None:
        _check("interval", interval, int, "a positive int")
        _check("interval_exp_name", interval_exp_name, int, "a positive int")
        if interval <= 0:
            raise ValueError(f"LoggerHook: interval must be greater than 0, got {interval}")
        if interval_exp_name <= 0:
            raise ValueError(
                f"LoggerHook: interval_exp_name must be greater than 0, got {interval_exp_name}"
            )
        for name, value in (
            ("ignore_last", ignore_last),
            ("reset_flag", reset_flag),
            ("by_epoch", by_epoch),
            ("keep_local", keep_local),
        ):
            _check(name, value, bool, "a bool")
        if log_metric_by_epoch is not None:
            _check("log_metric_by_epoch", log_metric_by_epoch, bool, "a bool or None")
        if out_dir is not None:
            _check("out_dir", out_dir, (str, os.PathLike), "None, a str or a path")
        if file_client_args is not None and out_dir is None:
            raise ValueError(
                "LoggerHook: file_client_args needs out_dir, got out_dir=None; drop it or set out_dir"
            )
        if file_client_args is not None:
            print_log(
                'LoggerHook: "file_client_args" will be deprecated in future. Please use "backend_args" instead',
                logger="current",
                level=logging.WARNING,
            )
        if file_client_args is not None and backend_args is not None:
            raise ValueError(
                'LoggerHook: "file_client_args" and "backend_args" cannot be set at the same time; '
                "use backend_args"
            )
        self.interval = interval
        self.ignore_last = ignore_last
        self.reset_flag = reset_flag
        self.by_epoch = by_epoch
        self.interval_exp_name = interval_exp_name
        self.out_dir = None if out_dir is None else os.fspath(out_dir)
        self.out_suffix = _suffixes(out_suffix)
        self.keep_local = keep_local
        self.file_client_args = file_client_args
        self.backend_args = backend_args
        if self.out_dir is not None:
            #: MMEngine's storage objects for ``out_dir`` (local disk only).
            self.file_client, self.file_backend = storage_of(self.out_dir, file_client_args, backend_args)
        self.log_metric_by_epoch = log_metric_by_epoch
        self.rules = LoggerRules(
            interval=interval,
            ignore_last=ignore_last,
            by_epoch=by_epoch,
            interval_exp_name=interval_exp_name,
            log_metric_by_epoch=log_metric_by_epoch,
            out_dir=self.out_dir,
            out_suffix=self.out_suffix,
            keep_local=keep_local,
        )

    def pure_fn_hook(self, name: str) -> FnHook[None]:
        """This hook's pure handlers as a pipeline member named ``name``."""
        return self.rules.fn_hook(name, self.priority)
