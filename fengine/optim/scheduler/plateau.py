"""ReduceOnPlateau: lower a parameter when a validation metric stops improving.

The decision is a pure function (:func:`plateau_step`) over a small record; the façade
(:class:`ReduceOnPlateauParamScheduler`) feeds it the monitored metric and applies the reduction
to ``param_groups`` as MMEngine does: ``max(value·factor, min_value)``, written only when it lowers
the value by more than ``eps``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import attrs

from fengine.core import schedule as fs
from fengine.optim.scheduler.base import (
    INF,
    ParamGroupsOwner,
    _ParamScheduler,
    check_optimizer,
    init_base_values,
)
from fengine.registry import PARAM_SCHEDULERS


def _one_of(*choices: str) -> Any:
    def check(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
        if value not in choices:
            raise fs.ScheduleError(f"{attribute.name} must be one of {choices}, got {value!r}")

    return check


def _non_negative(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise fs.ScheduleError(f"{attribute.name} must be >= 0, got {value!r}")


@attrs.frozen(kw_only=True)
class PlateauRule:
    """When a metric counts as improved, and how long to wait before reducing.

    ``rule='less'``: improved when ``metric < best·(1 - threshold)`` (``'rel'``) or
    ``metric < best - threshold`` (``'abs'``); ``'greater'`` mirrors it. A reduction happens once
    more than ``patience`` consecutive steps did not improve; the next ``cooldown`` steps ignore
    bad results.
    """

    rule: str = attrs.field(default="less", validator=_one_of("less", "greater"))
    threshold: float = attrs.field(default=1e-4, validator=_non_negative)
    threshold_rule: str = attrs.field(default="rel", validator=_one_of("rel", "abs"))
    patience: int = attrs.field(default=10, validator=_non_negative)
    cooldown: int = attrs.field(default=0, validator=_non_negative)

    def is_better(self, metric: float, best: float) -> bool:
        """Whether ``metric`` improves on ``best`` under this rule."""
        if self.rule == "less":
            bar = (
                best * (1.0 - self.threshold)
                if self.threshold_rule == "rel"
                else best - self.threshold
            )
            return metric < bar
        bar = (
            best * (self.threshold + 1.0) if self.threshold_rule == "rel" else best + self.threshold
        )
        return metric > bar

    def worst(self) -> float:
        """The starting ``best``: anything improves on it."""
        return math.inf if self.rule == "less" else -math.inf


@attrs.frozen
class PlateauState:
    """Best metric so far, consecutive bad steps, and cooldown steps left."""

    best: float
    num_bad_epochs: int = 0
    cooldown_counter: int = 0


def plateau_step(
    rule: PlateauRule, state: PlateauState, metric: float
) -> tuple[PlateauState, bool]:
    """Judge one metric: the new state and whether to reduce now (MMEngine's order of checks).

    Args:
        rule: the improvement rule, patience and cooldown.
        state: the state before this metric.
        metric: the monitored value.

    Returns:
        ``(state, reduce)``; after a reduction the bad count is reset and the cooldown starts.
    """
    improved = rule.is_better(metric, state.best)
    best = metric if improved else state.best
    bad = 0 if improved else state.num_bad_epochs + 1
    cooldown = state.cooldown_counter
    if cooldown > 0:
        cooldown, bad = cooldown - 1, 0
    if bad > rule.patience:
        return PlateauState(best, 0, rule.cooldown), True
    return PlateauState(best, bad, cooldown), False


@PARAM_SCHEDULERS.register_module()
class ReduceOnPlateauParamScheduler(_ParamScheduler):
    """Multiply ``param_name`` by ``factor`` when ``metrics[monitor]`` stops improving.

    Steps with validation metrics: the ParamSchedulerHook calls ``step(metrics)`` after each
    validation (``need_val_args``), and plain ``step()`` after each epoch, which only counts the
    epoch. The window ``[begin, end)`` is in those counted epochs. Epoch-based only.

    Args:
        optimizer: a ``torch.optim.Optimizer`` or an ``OptimWrapper``.
        param_name: the ``param_groups`` key to reduce.
        monitor: the metric's key in ``metrics``.
        rule: ``'less'`` (lower is better) or ``'greater'``.
        factor: multiplier of a reduction, in ``[0, 1)``.
        patience: bad validations tolerated before reducing.
        threshold: the margin of a significant improvement.
        threshold_rule: ``'rel'`` or ``'abs'`` margin.
        cooldown: validations to wait after a reduction.
        min_value: lower bound, one value or one per optimizer param group.
        eps: reductions smaller than this are skipped.
        begin, end, last_step, by_epoch, verbose: as every scheduler.
        convert_to_iter_based: must be ``False``; epoch_length: ignored.

    Raises:
        ValueError: ``factor`` outside ``[0, 1)``, a bad rule/threshold, ``by_epoch=False``,
            conversion to iterations, or a ``min_value`` list of the wrong length.
    """

    need_val_args: ClassVar[bool] = True

    def __init__(
        self,
        optimizer: ParamGroupsOwner,
        param_name: str,
        monitor: str = "loss",
        rule: str = "less",
        factor: float = 0.1,
        patience: int = 10,
        threshold: float = 1e-4,
        threshold_rule: str = "rel",
        cooldown: int = 0,
        min_value: float | Sequence[float] = 0.0,
        eps: float = 1e-8,
        begin: int = 0,
        end: int = INF,
        last_step: int = -1,
        by_epoch: bool = True,
        verbose: bool = False,
        *,
        convert_to_iter_based: bool = False,
        epoch_length: int | None = None,
    ) -> None:
        groups = check_optimizer(optimizer)
        if not by_epoch or convert_to_iter_based:
            raise fs.ScheduleError(
                f"{type(self).__name__} steps by epoch only, got by_epoch={by_epoch}, "
                f"convert_to_iter_based={convert_to_iter_based}"
            )
        if not 0.0 <= factor < 1.0:
            raise fs.ScheduleError(f"factor must lie in [0, 1), got {factor!r}")
        self.optimizer = optimizer
        self.param_name = param_name
        self._schedules = (fs.Schedule(begin=begin, end=end, by_epoch=True),) * len(groups)
        self._rule = PlateauRule(
            rule=rule, threshold=threshold, threshold_rule=threshold_rule,
            patience=patience, cooldown=cooldown,
        )  # fmt: skip
        init_base_values(optimizer, param_name, last_step)
        self.last_step = last_step
        self.verbose = verbose
        self._global_step = 0
        self.monitor = monitor
        self.factor = factor
        self.eps = eps
        self.min_values = _min_values(optimizer, min_value)
        self._state = PlateauState(self._rule.worst())
        self._last_value = [group[param_name] for group in groups]

    def __getattr__(self, name: str) -> Any:
        # MMEngine exposes the rule's and the state's fields as attributes.
        for part in ("_rule", "_state"):
            record = self.__dict__.get(part)
            if record is not None and name in attrs.fields_dict(type(record)):
                return getattr(record, name)
        return super().__getattr__(name)

    def step(self, metrics: Mapping[str, Any] | None = None) -> None:
        """Count an epoch (``metrics is None``) or judge ``metrics[monitor]`` and maybe reduce.

        Raises:
            TypeError: ``metrics`` is not a dict.
            KeyError: ``monitor`` is not among the metrics' keys.
        """
        if metrics is None:
            self._global_step += 1
            return
        if not isinstance(metrics, Mapping):
            raise TypeError(
                f"metrics must be a dict of metric values, got {type(metrics).__name__}"
            )
        groups = self.optimizer.param_groups
        if self.begin <= self._global_step < self.end:
            self.last_step += 1
            if self.monitor not in metrics:
                raise KeyError(
                    f"monitor {self.monitor!r} is not among the metrics {sorted(metrics)}"
                )
            self._state, reduce = plateau_step(
                self._rule, self._state, float(metrics[self.monitor])
            )
            if reduce:
                for i, (group, low) in enumerate(zip(groups, self.min_values)):
                    value = max(float(group[self.param_name]) * self.factor, low)
                    if group[self.param_name] - value > self.eps:
                        group[self.param_name] = value
                        self.print_value(self.verbose, i, value)
        self._last_value = [group[self.param_name] for group in groups]

    def state_dict(self) -> dict[str, Any]:
        """Counters, rule and plateau state, under MMEngine's attribute names."""
        return {
            **self._hyper_params(),
            "last_step": self.last_step,
            "_global_step": self._global_step,
            "_last_value": list(self._last_value),
            "verbose": self.verbose,
            **attrs.asdict(self._state),
        }

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved (an MMEngine state dict works too)."""
        for key in ("param_name", "verbose", "monitor", "factor", "eps"):
            if key in state_dict:
                setattr(self, key, state_dict[key])
        self._load_counters(state_dict)
        if "min_values" in state_dict:
            self.min_values = list(state_dict["min_values"])
        window = {k: state_dict[k] for k in ("begin", "end") if k in state_dict}
        self._schedules = tuple(attrs.evolve(s, **window) for s in self._schedules)
        self._rule = attrs.evolve(self._rule, **_pick(state_dict, PlateauRule))

    #: Besides the counters, the plateau record accumulates the best value and the bad epochs.
    _counter_keys: ClassVar[tuple[str, ...]] = ("last_step", "_global_step")

    def _load_counters(self, state_dict: Mapping[str, Any]) -> None:
        super()._load_counters(state_dict)
        self._state = attrs.evolve(self._state, **_pick(state_dict, PlateauState))

    def _catch_up(self) -> None:
        # Reductions follow metrics, which a checkpoint does not keep: nothing can be replayed.
        pass

    def _hyper_params(self) -> dict[str, Any]:
        return {
            "param_name": self.param_name,
            "begin": self.begin,
            "end": self.end,
            "by_epoch": self.by_epoch,
            "monitor": self.monitor,
            "factor": self.factor,
            "eps": self.eps,
            "min_values": list(self.min_values),
            **attrs.asdict(self._rule),
        }


def _pick(state_dict: Mapping[str, Any], record: type[Any]) -> dict[str, Any]:
    return {k: state_dict[k] for k in attrs.fields_dict(record) if k in state_dict}


def _min_values(optimizer: Any, min_value: float | Sequence[float]) -> list[float]:
    """One lower bound per ``param_groups`` entry, MMEngine's way.

    A list gives one bound per group of the wrapped optimizer; an OptimWrapper that appends a
    base-settings group to ``param_groups`` gets the last bound repeated for it.
    """
    groups = optimizer.param_groups
    if not isinstance(min_value, Sequence):
        return [float(min_value)] * len(groups)
    inner = getattr(getattr(optimizer, "optimizer", None), "param_groups", groups)
    if len(min_value) != len(inner):
        raise fs.ScheduleError(f"expected {len(inner)} values for min_value, got {len(min_value)}")
    values = [float(v) for v in min_value]
    return values + values[-1:] * (len(groups) - len(values))
