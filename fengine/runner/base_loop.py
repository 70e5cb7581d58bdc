"""``BaseLoop``: what every loop shares, and the validation schedule of the train loops."""

from __future__ import annotations

import abc
import bisect
import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch


class NonFiniteLossError(ValueError):
    """A training step produced a NaN or infinite loss."""


class BaseLoop(abc.ABC):
    """A loop over a dataloader, driven by a runner (MMEngine's ``BaseLoop``).

    A config dict for ``dataloader`` is built by the runner with its seed. A loop takes from its
    runner, once, what it drives: :attr:`fire` (an event to the hooks) and the run's record (the
    runner's :attr:`~fengine.runner.Runner.hook_host`); the counters ``_epoch``/``_iter`` and
    ``stop_training`` are views of that record, so loops written for MMEngine that assign them
    keep working (as does their ``runner.call_hook(...)``).

    Args:
        runner: the runner.
        dataloader: a dataloader or its config.
    """

    def __init__(self, runner: Any, dataloader: Any) -> None:
        self._runner = runner
        self._host = runner.hook_host
        #: ``fire(event, batch_idx=None, data_batch=None, outputs=None, metrics=None)``: run the
        #: hooks due at ``event`` and carry out what they ask for.
        self.fire = self._host.fire
        if isinstance(dataloader, Mapping):
            diff_rank_seed = runner._randomness_cfg.get("diff_rank_seed", False)
            dataloader = runner.build_dataloader(dataloader, seed=runner.seed, diff_rank_seed=diff_rank_seed)
        self.dataloader = dataloader

    @property
    def runner(self) -> Any:
        """The runner driving this loop."""
        return self._runner

    @abc.abstractmethod
    def run(self) -> Any:
        """Run the loop."""

    def _set_run(self, **changes: Any) -> None:
        self._host.run = self._host.run.replace(**changes)

    @property
    def _epoch(self) -> int:
        return int(self._host.run.epoch)

    @_epoch.setter
    def _epoch(self, value: int) -> None:
        self._set_run(epoch=value)

    @property
    def _iter(self) -> int:
        return int(self._host.run.iter)

    @_iter.setter
    def _iter(self, value: int) -> None:
        self._set_run(iter=value)

    @property
    def stop_training(self) -> bool:
        """Whether training stops at the next check (``EarlyStoppingHook`` sets it)."""
        return bool(self._host.run.stop_training)

    @stop_training.setter
    def stop_training(self, value: bool) -> None:
        self._set_run(stop_training=bool(value))

    @property
    def epoch(self) -> int:
        """Completed training epochs."""
        return self._epoch

    @property
    def iter(self) -> int:
        """Completed training iterations."""
        return self._iter

    @property
    def max_epochs(self) -> int:
        """Total training epochs."""
        return int(self._host.run.max_epochs)

    @property
    def max_iters(self) -> int:
        """Total training iterations."""
        return int(self._host.run.max_iters)


def epoch_sampler(dataloader: Any) -> Any:
    """The dataloader's sampler (or its batch sampler's sampler) that has ``set_epoch``, or ``None``."""
    for sampler in (
        getattr(dataloader, "sampler", None),
        getattr(getattr(dataloader, "batch_sampler", None), "sampler", None),
    ):
        if callable(getattr(sampler, "set_epoch", None)):
            return sampler
    return None


def check_schedule(
    limit_name: str,
    limit: Any,
    val_begin: Any,
    val_interval: Any,
    dynamic_intervals: Any,
    check_finite: Any,
) -> None:
    """Validate a train loop's arguments, naming the offending one.

    Args:
        limit_name: ``'max_epochs'`` or ``'max_iters'``.
        limit: its value (an integer value >= 1: a loop of 0 would train nothing).
        val_begin: the first epoch/iteration that may validate (an int).
        val_interval: validate every this many epochs/iterations (an int > 0).
        dynamic_intervals: ``None`` or a list of ``(milestone, interval)`` pairs of ints, with
            increasing milestones and positive intervals.
        check_finite: a bool, ``'eager'`` or ``'skip'``.

    Raises:
        TypeError: a value of the wrong type.
        ValueError: a value out of range.
    """
    if isinstance(limit, bool) or not isinstance(limit, (int, float)) or int(limit) != limit:
        raise TypeError(f"train_cfg: `{limit_name}` should be an integer number, got {limit!r}")
    if limit < 1:
        raise ValueError(f"train_cfg: `{limit_name}` must be >= 1 (0 would train nothing), got {limit!r}")
    for name, value in (("val_begin", val_begin), ("val_interval", val_interval)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"train_cfg: `{name}` must be an int, got {value!r}")
    if val_interval <= 0:
        raise ValueError(f"train_cfg: `val_interval` must be > 0, got {val_interval!r}")
    if not isinstance(check_finite, bool) and check_finite not in ("skip", "eager"):
        raise TypeError(
            f"train_cfg: `check_finite` must be a bool, 'eager' or 'skip' (True: stop on a NaN/Inf "
            f"loss at the next log line or checkpoint, 'eager': at the step, 'skip': leave that "
            f"step out, False: train on), got {check_finite!r}"
        )
    if dynamic_intervals is None:
        return
    pairs = dynamic_intervals if isinstance(dynamic_intervals, Sequence) else None
    if pairs is None or not all(
        isinstance(p, Sequence) and len(p) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in p)
        for p in pairs
    ):
        raise TypeError(
            f"train_cfg: `dynamic_intervals` must be a list of (milestone, interval) int pairs, got {dynamic_intervals!r}"
        )
    milestones = [p[0] for p in pairs]
    if milestones != sorted(set(milestones)) or any(p[1] <= 0 for p in pairs):
        raise ValueError(
            "train_cfg: `dynamic_intervals` needs strictly increasing milestones and intervals > 0, "
            f"got {dynamic_intervals!r}"
        )


class ValSchedule:
    """When a train loop validates: MMEngine's rule, with ``val_begin=0`` validating first.

    After ``count`` epochs (iterations) validation runs when a val loop exists,
    ``count >= val_begin`` and ``count % interval == 0`` or ``count`` is the last; the interval
    follows ``dynamic_intervals`` (``(milestone, interval)``: from ``milestone`` on). The same rule
    at ``count = 0`` validates before training exactly when ``val_begin <= 0``.
    """

    def __init__(self, val_begin: int, val_interval: int, dynamic_intervals: Sequence[Sequence[int]] | None) -> None:
        self.val_begin = val_begin
        self.val_interval = val_interval
        pairs = list(dynamic_intervals or ())
        self.dynamic_milestones = [0, *(p[0] for p in pairs)]
        self.dynamic_intervals = [val_interval, *(p[1] for p in pairs)]

    def due(self, count: int, last: int) -> bool:
        """Whether to validate after ``count`` epochs/iterations (``last`` = the total)."""
        self.val_interval = self.dynamic_intervals[bisect.bisect(self.dynamic_milestones, count + 1) - 1]
        return count >= self.val_begin and (count % self.val_interval == 0 or count == last)


def _finite(loss: torch.Tensor) -> bool:
    return math.isfinite(loss.item()) if loss.numel() == 1 else bool(torch.isfinite(loss).all())


def check_finite_loss(outputs: Any, run: Any, logger: Any, batch_idx: int, skipped: bool = False) -> None:
    """Raise if the step's total loss (``outputs['loss']``) is NaN or infinite.

    Only the total is read (one scalar, the value the logger reads anyway); the terms are
    inspected only to word the error.

    Args:
        outputs: the step's outputs (parsed losses).
        run: the run's record before the step's counters move (its ``iter`` and ``epoch``).
        logger: where the warning of a skipped step goes.
        batch_idx: the batch's index.
        skipped: the step's update was left out (``check_finite='skip'``): warn instead.

    Raises:
        NonFiniteLossError: naming the iteration, the epoch, the batch and the offending terms.
    """
    loss = outputs.get("loss") if isinstance(outputs, Mapping) else None
    if not skipped and (not isinstance(loss, torch.Tensor) or _finite(loss)):
        return
    terms = [
        f"{key}={value.detach().cpu().tolist()}"
        for key, value in (outputs.items() if isinstance(outputs, Mapping) else ())
        if isinstance(value, torch.Tensor) and not bool(torch.isfinite(value).all())
    ]
    where = f"non-finite loss at iteration {run.iter + 1} (epoch {run.epoch + 1}, batch {batch_idx}): {', '.join(terms)}"
    if skipped:
        logger.warning(f"{where}; the update of this step was skipped (check_finite='skip')")
        return
    raise NonFiniteLossError(
        f"{where}; the parameters may already hold NaN/Inf. Lower the learning rate, clip "
        "gradients or check the data, or pass train_cfg=dict(..., check_finite='skip') to leave such "
        "steps out or check_finite=False to train on"
    )


class NonFiniteGuard:
    """The optimizer wrapper as a model's ``train_step`` sees it with ``check_finite='skip'``.

    ``update_params`` with a NaN/Inf loss does nothing (no backward, no step, and the batch does
    not count towards gradient accumulation); everything else is the wrapper's.

    Args:
        wrapper: the runner's optimizer wrapper.
    """

    def __init__(self, wrapper: Any) -> None:
        self._wrapper = wrapper
        self.skipped = False

    def update_params(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        """The wrapper's ``update_params``, unless ``loss`` is not finite."""
        if isinstance(loss, torch.Tensor) and not _finite(loss):
            self.skipped = True
            return
        self._wrapper.update_params(loss, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapper, name)
