"""MMEngine's training loops over the runner's run-state cell.

Counters follow MMEngine: ``iter`` grows after the ``after_train_iter`` hooks, ``epoch`` after
the ``after_train_epoch`` hooks and before validation. Each iteration evolves the run state once
(the ``iter`` increment); events nobody handles cost one lookup.

Resuming: the runner hands the loop the saved generators and data position. An epoch loop resumed
mid-epoch restores the generators the epoch's data iterator was created with, re-creates it,
passes over the batches already trained at the index level (:mod:`fengine.runner.skipping`: none
is loaded), then restores the generators of the save; at an epoch boundary it restores them at
once. A checkpoint without a data position (MMEngine's) saved mid-epoch continues after the
batches its counters say were trained, instead of repeating them. A validation that was due at
the saved position but had not run yet when the checkpoint was written runs first.

An interrupted run (``KeyboardInterrupt``) logs where it stopped and which complete checkpoint a
``resume=True`` run continues from; nothing half-written is kept.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from fengine.core.events import Event
from fengine.core.plain import to_plain
from fengine.core.state import RngState
from fengine.registry import LOOPS
from fengine.runner.base_loop import (
    BaseLoop,
    NonFiniteGuard,
    ValSchedule,
    check_finite_loss,
    check_schedule,
    epoch_sampler,
)
from fengine.runner.checkpoint import find_latest_checkpoint
from fengine.runner.finite_watch import FiniteWatch
from fengine.runner.skipping import iterate_from, restore_sampler_seed, seeded_sampler
from fengine.runner.train_step import RunnerStep, follow_module

_logger = logging.getLogger(__name__)


def _not_started(state: Any, data_batch: Any) -> Any:
    raise RuntimeError("the train loop's step is set when Runner.train() starts; run it through the runner")


class _TrainLoop(BaseLoop):
    """What both train loops share: the schedule, resume bookkeeping and the data position."""

    def __init__(
        self,
        runner: Any,
        dataloader: Any,
        limit_name: str,
        limit: int,
        val_begin: int,
        val_interval: int,
        dynamic_intervals: Any,
        check_finite: bool | str,
    ) -> None:
        check_schedule(limit_name, limit, val_begin, val_interval, dynamic_intervals, check_finite)
        super().__init__(runner, dataloader)
        self.schedule = ValSchedule(val_begin, val_interval, dynamic_intervals)
        self.check_finite = check_finite
        #: The losses not checked yet (``check_finite=True``: read at the check points only).
        self.finite_watch = FiniteWatch()
        # What the runner hands the loop when training starts (Runner.train):
        #: ``step(state, data_batch) -> (state, outputs)``
        #: (:func:`fengine.runner.train_step.runner_train_step`).
        self.train_step: RunnerStep = _not_started
        #: Runs the validation loop, or ``None`` without one.
        self.validate: Callable[[], Any] | None = None
        #: The generators' states and data position of a resumed checkpoint, taken once.
        self.resume_point: tuple[RngState | None, Mapping[str, Any] | None] = (None, None)
        self._validated_at: int | None = None
        self._epoch_start_rng: RngState | None = None
        metainfo = getattr(getattr(self.dataloader, "dataset", None), "metainfo", None)
        if metainfo is not None:
            runner.visualizer.dataset_meta = metainfo

    @property
    def val_begin(self) -> int:
        """The first epoch/iteration that may validate."""
        return self.schedule.val_begin

    @property
    def val_interval(self) -> int:
        """The current validation interval."""
        return self.schedule.val_interval

    def _position(self) -> int:
        raise NotImplementedError

    def _validate_if_due(self) -> bool:
        count = self._position()
        last = self.max_epochs if isinstance(self, EpochBasedTrainLoop) else self.max_iters
        if self.validate is None or not self.schedule.due(count, last):
            return False
        self._validated_at = count
        self.validate()
        return True

    def data_position(self, epoch: int, iteration: int) -> dict[str, Any]:
        """Where the data stream stands at a checkpoint whose counters are ``epoch``/``iteration``.

        Returns:
            ``by_epoch``; ``inner_iter`` (batches of the current epoch already trained);
            ``validated`` (whether the validation due at this position already ran);
            ``epoch_start_rng`` (the generators when the data iterator was created, needed to
            re-create it mid-epoch); ``sampler`` (its ``seed`` and ``epoch`` when it has them).
        """
        by_epoch = isinstance(self, EpochBasedTrainLoop)
        inner = self._inner_iter(epoch, iteration)
        sampler = seeded_sampler(self.dataloader) or getattr(self.dataloader, "sampler", None)
        return {
            "by_epoch": by_epoch,
            "inner_iter": inner,
            "validated": self._validated_at == (epoch if by_epoch else iteration),
            "epoch_start_rng": to_plain(self._epoch_start_rng) if self._epoch_start_rng is not None else None,
            "sampler": {"seed": getattr(sampler, "seed", None), "epoch": getattr(sampler, "epoch", None)},
        }

    def _inner_iter(self, epoch: int, iteration: int) -> int:
        return iteration

    def _restore_position(self, position: Mapping[str, Any] | None) -> None:
        if position and restore_sampler_seed(self.dataloader, position.get("sampler")):
            self._runner.logger.info("the train sampler takes the seed of the resumed checkpoint")

    def _skip_note(self, skipped: int, by_index: bool) -> None:
        if skipped:
            how = "at the index level, none loaded" if by_index else "by loading them (not a map-style DataLoader)"
            self._runner.logger.info(f"Resumed mid-pass: skipped {skipped} batches already trained ({how})")

    def _interrupted(self) -> None:
        runner = self._runner
        last = find_latest_checkpoint(str(runner.work_dir))
        where = f"{last} (Runner(resume=True) continues from it)" if last else "none"
        runner.logger.warning(
            f"training interrupted at iteration {self._iter} (epoch {self._epoch}); no partial file "
            f"was kept; newest complete checkpoint: {where}"
        )

    def _take_resume_point(self) -> tuple[RngState | None, Mapping[str, Any] | None]:
        point, self.resume_point = self.resume_point, (None, None)
        return point

    def _run_iter(self, batch_idx: int, data_batch: Any) -> None:
        host = self._host
        self.fire(Event.BEFORE_TRAIN_ITER, batch_idx, data_batch)
        if self.check_finite == "skip":
            runner = self._runner
            guard = NonFiniteGuard(runner.optim_wrapper)
            outputs = runner.model.train_step(data_batch, optim_wrapper=guard)
            host.run = run = host.run.replace(state=follow_module(host.run.state, runner.optim_wrapper))
            if guard.skipped:
                check_finite_loss(outputs, run, runner.logger, batch_idx, skipped=True)
        else:
            state, outputs = self.train_step(host.run.state, data_batch)
            host.run = run = host.run.replace(state=state)
            if self.check_finite == "eager":
                check_finite_loss(outputs, run, None, batch_idx)
            elif self.check_finite:
                self.finite_watch.add(outputs, run.iter, run.epoch, batch_idx)
        self.fire(Event.AFTER_TRAIN_ITER, batch_idx, data_batch, outputs)
        run = host.run
        host.run = run.replace(iter=run.iter + 1)


@LOOPS.register_module()
class EpochBasedTrainLoop(_TrainLoop):
    """Train by epochs (MMEngine's ``EpochBasedTrainLoop``).

    Args:
        runner: the runner.
        dataloader: a dataloader or its config.
        max_epochs: epochs to train.
        val_begin: the first epoch after which validation may run; ``0`` also validates before
            training (MMEngine ignores ``0``).
        val_interval: validate every this many epochs (and always after the last).
        dynamic_intervals: ``(milestone, interval)`` pairs: from epoch ``milestone`` on, use
            ``interval``.
        check_finite: ``True`` stops with :class:`~fengine.runner.base_loop.NonFiniteLossError`
            naming the first step whose loss was NaN/Inf, found at the next check (a log line,
            a checkpoint write, the end of an epoch: no host read per step, see
            :mod:`~fengine.runner.finite_watch`); ``'eager'`` stops at that step itself (one
            read per step); ``'skip'`` leaves out the update of such a step (no backward, no
            optimizer step) with a warning, reading each step's loss; ``False`` trains on.
    """

    def __init__(
        self,
        runner: Any,
        dataloader: Any,
        max_epochs: int,
        val_begin: int = 1,
        val_interval: int = 1,
        dynamic_intervals: list[tuple[int, int]] | None = None,
        check_finite: bool | str = True,
    ) -> None:
        super().__init__(runner, dataloader, "max_epochs", max_epochs, val_begin, val_interval, dynamic_intervals, check_finite)
        length = len(self.dataloader)
        self._set_run(
            max_epochs=int(max_epochs),
            max_iters=int(max_epochs) * length,
            train_by_epoch=True,
            dataloader_len={**self._host.run.dataloader_len, "train": length},
        )
        self._epoch_start_iter = self._iter
        self._skip = 0
        self._skip_rng: tuple[RngState | None, RngState | None] = (None, None)

    def _position(self) -> int:
        return self._epoch

    def _inner_iter(self, epoch: int, iteration: int) -> int:
        return max(iteration - self._epoch_start_iter, 0) if epoch == self._epoch else 0

    def _inner_from_counters(self) -> int:
        """Batches of the current epoch trained, by the counters alone (checkpoints without a position)."""
        inner = self._iter - self._epoch * len(self.dataloader)
        return inner if 0 < inner < len(self.dataloader) else 0

    def run(self) -> Any:
        """Train until ``max_epochs`` (or a stop request); returns the model."""
        self.fire(Event.BEFORE_TRAIN)
        rng, position = self._take_resume_point()
        self._restore_position(position)
        inner = int(position.get("inner_iter", 0)) if position else self._inner_from_counters()
        if inner:
            start = position.get("epoch_start_rng") if position else None
            self._skip, self._skip_rng = inner, (start, rng)
            self._epoch_start_iter = self._iter - inner
        else:
            if rng is not None:
                rng.restore()
            if not (position and position.get("validated")):
                self._validate_if_due()
        try:
            while self._epoch < self.max_epochs and not self.stop_training:
                self.run_epoch()
                self._validate_if_due()
        except KeyboardInterrupt:
            self._interrupted()
            raise
        self.fire(Event.AFTER_TRAIN)
        return self._runner.model

    def run_epoch(self) -> None:
        """One epoch: ``before_train_epoch``, the iterations, ``after_train_epoch``, ``epoch += 1``."""
        self.fire(Event.BEFORE_TRAIN_EPOCH)
        self._runner.model.train()
        skip, (start_rng, saved_rng) = self._skip, self._skip_rng
        self._skip, self._skip_rng = 0, (None, None)
        if start_rng is not None:
            start_rng.restore()
        self._epoch_start_rng = RngState.capture()
        batches, skipped, by_index = iterate_from(self.dataloader, skip)
        if skip:
            self._skip_note(skipped, by_index)
            if saved_rng is not None:
                saved_rng.restore()
        for batch_idx, data_batch in enumerate(batches, start=skip):
            self.run_iter(batch_idx, data_batch)
        self.finite_watch.check()
        self.fire(Event.AFTER_TRAIN_EPOCH)
        run = self._host.run
        self._host.run = run.replace(epoch=run.epoch + 1)
        self._epoch_start_iter = run.iter

    def run_iter(self, idx: int, data_batch: Any) -> None:
        """One iteration: hooks around ``model.train_step``, then ``iter += 1``."""
        self._run_iter(idx, data_batch)


class _InfiniteIterator:
    """Iterates a dataloader forever, restarting it (with ``set_epoch``) when it runs out.

    ``epoch`` counts the passes started; ``pass_start_iter`` is the training iteration the
    current pass began at. Each pass records the generators it was created with, so a resumed
    run can re-create the same pass (:meth:`start`).
    """

    def __init__(self, dataloader: Any, loop: IterBasedTrainLoop) -> None:
        self._dataloader = dataloader
        self._loop = loop
        self.start(0, None)

    def start(self, epoch: int, rng: RngState | None, skip: int = 0) -> tuple[int, bool]:
        """Begin pass ``epoch`` with the generators in state ``rng``, after its first ``skip`` batches.

        A skip longer than the pass continues into the next passes (as a run that trained
        through them). Returns how many batches were skipped and whether at the index level.
        """
        skipped, by_index = 0, True
        while True:
            self.epoch = epoch
            self.pass_start_iter = self._loop._iter - (skip - skipped)
            sampler = epoch_sampler(self._dataloader)
            if sampler is not None and epoch > 0:
                sampler.set_epoch(epoch)
            if rng is not None:
                rng.restore()
                rng = None
            self._loop._epoch_start_rng = RngState.capture()
            self._iterator, done, index_level = iterate_from(self._dataloader, skip - skipped)
            skipped, by_index = skipped + done, by_index and index_level
            if skipped >= skip or done == 0:
                return skipped, by_index
            epoch += 1

    def __iter__(self) -> _InfiniteIterator:
        return self

    def __next__(self) -> Any:
        try:
            return next(self._iterator)
        except StopIteration:
            _logger.warning(
                "Reach the end of the dataloader, it will be restarted and continue to iterate. It is "
                "recommended to use `fengine.dataset.InfiniteSampler` to enable the dataloader to "
                "iterate infinitely."
            )
            if getattr(self._dataloader, "num_workers", 0):
                time.sleep(2)  # lets worker processes of the last pass shut down (MMEngine's guard)
            self.start(self.epoch + 1, None)
            return next(self._iterator)


@LOOPS.register_module()
class IterBasedTrainLoop(_TrainLoop):
    """Train for a number of iterations (MMEngine's ``IterBasedTrainLoop``).

    The whole run is one epoch (``max_epochs == 1``, ``epoch`` stays 0); ``batch_idx`` is the
    global iteration index. Arguments as :class:`EpochBasedTrainLoop`, with ``max_iters`` and
    ``val_interval`` default 1000.
    """

    def __init__(
        self,
        runner: Any,
        dataloader: Any,
        max_iters: int,
        val_begin: int = 1,
        val_interval: int = 1000,
        dynamic_intervals: list[tuple[int, int]] | None = None,
        check_finite: bool | str = True,
    ) -> None:
        super().__init__(runner, dataloader, "max_iters", max_iters, val_begin, val_interval, dynamic_intervals, check_finite)
        self._set_run(
            max_epochs=1,
            max_iters=int(max_iters),
            train_by_epoch=False,
            dataloader_len={**self._host.run.dataloader_len, "train": len(self.dataloader)},
        )
        self.dataloader_iterator = _InfiniteIterator(self.dataloader, self)

    def _position(self) -> int:
        return self._iter

    def _inner_iter(self, epoch: int, iteration: int) -> int:
        return iteration - self.dataloader_iterator.pass_start_iter

    def data_position(self, epoch: int, iteration: int) -> dict[str, Any]:
        """As the epoch loop's, plus ``pass``: how many times the dataloader was restarted."""
        return {**super().data_position(epoch, iteration), "pass": self.dataloader_iterator.epoch}

    def run(self) -> Any:
        """Train until ``max_iters`` (or a stop request); returns the model."""
        self.fire(Event.BEFORE_TRAIN)
        self.fire(Event.BEFORE_TRAIN_EPOCH)
        rng, position = self._take_resume_point()
        self._restore_position(position)
        if isinstance(position, Mapping) and "pass" in position:
            # Re-create the saved pass of the dataloader, after its trained batches only.
            skipped, by_index = self.dataloader_iterator.start(
                int(position["pass"]), position.get("epoch_start_rng"), int(position["inner_iter"])
            )
            self._skip_note(skipped, by_index)
        elif self._iter > 0:  # no position (MMEngine's checkpoints): skip by the counter
            self._skip_note(*self.dataloader_iterator.start(0, None, self._iter))
        if rng is not None:
            rng.restore()
        if not (isinstance(position, Mapping) and position.get("validated")):
            self._validate_if_due()
        model = self._runner.model
        try:
            while self._iter < self.max_iters and not self.stop_training:
                if not model.training:  # validation (or a hook) left it in eval mode
                    model.train()
                data_batch = next(self.dataloader_iterator)
                self.run_iter(data_batch)
                self._validate_if_due()
        except KeyboardInterrupt:
            self._interrupted()
            raise
        self.finite_watch.check()
        self.fire(Event.AFTER_TRAIN_EPOCH)
        self.fire(Event.AFTER_TRAIN)
        return self._runner.model

    def run_iter(self, data_batch: Any) -> None:
        """One iteration with ``batch_idx = runner.iter``."""
        self._run_iter(self._iter, data_batch)


#: MMEngine's name for the iterator of an iteration-based loop.
_InfiniteDataloaderIterator = _InfiniteIterator
