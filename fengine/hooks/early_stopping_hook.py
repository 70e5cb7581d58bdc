"""EarlyStoppingHook: stop training when a validation metric stops improving.

Pure part: :class:`EarlyStoppingState` (best score, wait count, when the best was seen, and the
best weights when they are kept) and the handlers of :func:`early_stopping_fn_hook`. After each
validation epoch, with ``value = metrics[monitor]``:

1. ``check_finite`` and ``value`` is NaN or ±inf → stop (the best is unchanged);
2. ``stopping_threshold`` is set and ``value`` is strictly better than it → best = value, stop;
3. ``value`` improves on the best — strictly better, and by at least ``min_delta``
   (``value >= best + min_delta`` for ``'greater'``, ``value <= best - min_delta`` for
   ``'less'``) → best = value, wait = 0;
4. otherwise wait += 1, and stop once ``wait >= patience``.

The best starts at ``baseline`` when given (so it must be beaten), else at ``∓inf``. A NaN never
improves on anything, so with ``check_finite=False`` it only counts as a non-improving evaluation.
Stopping emits ``StopTraining`` (the loop finishes the current epoch and its validation) and logs
the reason. With ``restore_best_weights`` the model's weights are cloned at each new best and put
back (``LoadWeights``) after training. Façade: :class:`EarlyStoppingHook`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import ClassVar

import attrs
import torch
from torch import Tensor

from fengine.core import plain
from fengine.core.effects import LoadWeights, LogText, StopTraining
from fengine.core.events import Event
from fengine.core.pipeline import FnHook, Handler
from fengine.core.priority import Priority, PriorityLike
from fengine.core.run import EventInfo, RunState
from fengine.hooks.builtin import BuiltinHook
from fengine.hooks.rules import RULES, Rule, infer_rule, is_better, worst_score
from fengine.registry import HOOKS

_WARNING = 30  # logging.WARNING


class MissingMonitorError(KeyError, RuntimeError):
    """The monitored metric is missing with ``strict=True`` (MMEngine raises ``RuntimeError``)."""

    def __str__(self) -> str:
        return str(self.args[0])


@plain.register("hooks.EarlyStoppingState")
@attrs.frozen(eq=False)
class EarlyStoppingState:
    """EarlyStoppingHook's own state (checkpointed with the run).

    Args:
        best_score: the best value so far (the baseline, or ``∓inf``, before any).
        wait_count: evaluations since the last improvement.
        best_epoch: ``run.epoch`` when the best was seen (``None`` before any).
        best_iter: ``run.iter`` when the best was seen.
        best_weights: clones of the model's tensors at the best (``restore_best_weights``).
    """

    best_score: float
    wait_count: int = 0
    best_epoch: int | None = None
    best_iter: int | None = None
    best_weights: Mapping[str, Tensor] | None = None


def early_stopping_fn_hook(
    name: str,
    monitor: str,
    rule: Rule,
    *,
    min_delta: float = 0.0,
    patience: int = 5,
    baseline: float | None = None,
    restore_best_weights: bool = False,
    strict: bool = False,
    check_finite: bool = True,
    stopping_threshold: float | None = None,
    verbose: bool = False,
    priority: PriorityLike = Priority.LOWEST,
) -> FnHook[EarlyStoppingState]:
    """EarlyStoppingHook's pure handlers as a pipeline member (see the module docstring).

    Args:
        name: the hook's unique name.
        monitor: the metric's key in the validation metrics.
        rule: ``'greater'`` or ``'less'``: which direction is better.
        min_delta: the smallest change that counts as an improvement (``>= 0``).
        patience: non-improving evaluations tolerated before stopping.
        baseline: a value the metric must beat; the starting best.
        restore_best_weights: keep the best weights and load them after training.
        strict: a missing ``monitor`` is an error (else a logged warning and no decision).
        check_finite: stop at a NaN or infinite value.
        stopping_threshold: stop as soon as the value is strictly better than this.
        verbose: log every decision, not only the stop.
        priority: where it runs (``LOWEST``: after checkpointing the same validation).

    Returns:
        The :class:`~fengine.core.pipeline.FnHook`.
    """
    signed_delta = min_delta if rule == "greater" else -min_delta
    start = worst_score(rule) if baseline is None else float(baseline)

    def improves(value: float, best: float) -> bool:
        return is_better(rule, value, best) and not is_better(rule, best + signed_delta, value)

    def after_val_epoch(
        run: RunState, state: EarlyStoppingState, info: EventInfo
    ) -> tuple[RunState, EarlyStoppingState]:
        metrics = info.metrics or {}
        if monitor not in metrics:
            available = sorted(metrics)
            if strict:
                raise MissingMonitorError(
                    f"early stopping monitors {monitor!r}, which the evaluation did not return "
                    f"(metrics: {available}); check `monitor` or pass strict=False"
                )
            message = (
                f"Skip early stopping process since the evaluation results ({available}) do not "
                f"include `monitor` ({monitor})."
            )
            return run.emit(LogText(message, level=_WARNING)), state
        value = float(metrics[monitor])
        best = state.best_score
        stop_reason = ""
        if check_finite and not math.isfinite(value):
            stop_reason = f"Monitored metric {monitor} = {value} is infinite. Previous best value was {best:.3f}."
        elif stopping_threshold is not None and is_better(rule, value, stopping_threshold):
            state = new_best(run, state, value)
            stop_reason = f"Stopping threshold reached: `{monitor}` = {value} is {rule} than {stopping_threshold}."
        elif improves(value, best):
            state = new_best(run, state, value)
        else:
            state = attrs.evolve(state, wait_count=state.wait_count + 1)
            if state.wait_count >= patience:
                stop_reason = (
                    f"the monitored metric did not improve in the last {state.wait_count} records. "
                    f"best score: {state.best_score:.3f}. "
                )
        if stop_reason:
            run = run.emit(StopTraining(stop_reason), LogText(stop_reason))
        elif verbose:
            run = run.emit(
                LogText(
                    f"EarlyStopping: {monitor} = {value}, best {state.best_score} "
                    f"(wait {state.wait_count}/{patience})"
                )
            )
        return run, state

    def new_best(run: RunState, state: EarlyStoppingState, value: float) -> EarlyStoppingState:
        weights = None
        if restore_best_weights:
            with torch.no_grad():
                weights = {n: t.detach().clone() for n, t in {**run.params, **run.buffers}.items()}
        return EarlyStoppingState(value, 0, run.epoch, run.iter, weights)

    def after_train(
        run: RunState, state: EarlyStoppingState, info: EventInfo
    ) -> tuple[RunState, EarlyStoppingState]:
        if state.best_weights is None:
            return run, state
        run = run.emit(LoadWeights(state.best_weights))
        if verbose:
            run = run.emit(
                LogText(
                    f"Restoring the weights of epoch {state.best_epoch} (iter {state.best_iter})"
                )
            )
        return run, state

    on: dict[Event, Handler[EarlyStoppingState]] = {Event.AFTER_VAL_EPOCH: after_val_epoch}
    if restore_best_weights:
        on[Event.AFTER_TRAIN] = after_train
    return FnHook(name=name, priority=priority, init=EarlyStoppingState(start), on=on)


class _SeedDefault(str):
    """The seed's default ``mode='min'``, told apart from an explicit ``'min'`` by identity."""

    __slots__ = ()


_MODE_DEFAULT = _SeedDefault("min")
_MODES: Mapping[str, Rule | None] = {"min": "less", "max": "greater", "auto": None}


def resolve_rule(monitor: str, mode: str, rule: str | None) -> Rule:
    """The comparison rule from MMEngine's ``rule``, the seed's ``mode`` or the metric's name.

    Args:
        monitor: the metric's name.
        mode: ``'min'``, ``'max'`` or ``'auto'``; the seed's default object means "not given".
        rule: ``'greater'``, ``'less'`` or ``None``.

    Returns:
        ``rule`` if given; else ``mode`` if given (``'auto'`` infers); else the rule inferred
        from ``monitor`` (MMEngine's key lists), falling back to the seed's ``'min'`` with a
        ``UserWarning``.

    Raises:
        ValueError: an unknown ``rule`` or ``mode``, or ``rule`` and ``mode`` that disagree.
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be 'min', 'max' or 'auto', got {mode!r}")
    if rule is not None and rule not in RULES:
        raise ValueError(f'`rule` should be either "greater" or "less", but got {rule!r}')
    from_mode = None if mode is _MODE_DEFAULT else _MODES[mode]
    if rule is not None:
        if from_mode is not None and from_mode != rule:
            raise ValueError(f"mode={mode!r} and rule={rule!r} disagree; pass one of them")
        return "greater" if rule == "greater" else "less"
    if from_mode is not None:
        return from_mode
    try:
        return infer_rule(monitor)
    except ValueError:
        if mode is not _MODE_DEFAULT:
            raise
        warnings.warn(
            f"cannot infer whether a higher or lower {monitor!r} is better; using the default "
            "mode='min'. Pass mode='max' or rule='greater' if higher is better",
            UserWarning,
            stacklevel=3,
        )
        return "less"


@HOOKS.register_module()
class EarlyStoppingHook(BuiltinHook):
    """Stops training when ``monitor`` has not improved for ``patience`` validations.

    Args:
        monitor: the metric's key in the validation metrics, e.g. ``'acc'`` or ``'loss'``.
        min_delta: the smallest change that counts as an improvement.
        patience: non-improving validations tolerated before stopping.
        verbose: log every decision (the stop is always logged).
        mode: ``'min'`` or ``'max'`` (``'auto'``: infer). When neither ``mode`` nor ``rule`` is
            given, the direction is inferred from ``monitor`` as MMEngine does (``acc``, ``mAP``
            … greater; ``loss`` … less), and is ``'min'`` for names it cannot infer.
        baseline: a value the metric must beat to count as an improvement.
        restore_best_weights: put the best-scoring weights back after training.
        rule: MMEngine's ``'greater'``/``'less'``.
        strict: a missing ``monitor`` is an error instead of a logged warning.
        check_finite: stop when the metric is NaN or infinite.
        stopping_threshold: stop as soon as the metric is strictly better than this.

    Raises:
        ValueError: bad ``mode``/``rule``, negative ``min_delta`` or ``patience``.
        TypeError: ``monitor`` is not a string.
    """

    handles: ClassVar[Mapping[Event, str]] = {
        Event.AFTER_VAL_EPOCH: "Decide whether to stop.",
        Event.AFTER_TRAIN: "Put the best weights back (with ``restore_best_weights``).",
    }

    priority: PriorityLike = "LOWEST"


    def __init__(
        self,
        monitor: str,
        min_delta: float = 0,
        patience: int = 5,
        verbose: bool = False,
        mode: str = _MODE_DEFAULT,
        baseline: float | None = None,
        restore_best_weights: bool = False,
        *,
        rule: str | None = None,
        strict: bool = False,
        check_finite: bool = True,
        stopping_threshold: float | None = None,
    ) -> None:
        if not isinstance(monitor, str) or not monitor:
            raise TypeError(f"monitor must be a metric name (non-empty str), got {monitor!r}")
        if (
            isinstance(min_delta, bool)
            or not isinstance(min_delta, (int, float))
            or not min_delta >= 0
        ):
            raise ValueError(f"min_delta must be a number >= 0, got {min_delta!r}")
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f"patience must be an int >= 0, got {patience!r}")
        self.monitor = monitor
        self.rule: Rule = resolve_rule(monitor, mode, rule)
        self.min_delta = float(min_delta)
        self.patience = patience
        self.verbose = verbose
        self.baseline = baseline
        self.restore_best_weights = restore_best_weights
        self.strict = strict
        self.check_finite = check_finite
        self.stopping_threshold = stopping_threshold

    def pure_fn_hook(self, name: str) -> FnHook[EarlyStoppingState]:
        """This hook's pure handlers as a pipeline member named ``name``."""
        return early_stopping_fn_hook(
            name,
            self.monitor,
            self.rule,
            min_delta=self.min_delta,
            patience=self.patience,
            baseline=self.baseline,
            restore_best_weights=self.restore_best_weights,
            strict=self.strict,
            check_finite=self.check_finite,
            stopping_threshold=self.stopping_threshold,
            verbose=self.verbose,
            priority=self.priority,
        )
