"""MMEngine's generic ``*ParamScheduler`` classes: any ``param_groups`` key, one family each.

Each class builds the matching :mod:`fengine.core.schedule` record from MMEngine's constructor
arguments; the formulas are documented there. All take, besides their own arguments,
``begin=0, end=INF, last_step=-1, by_epoch=True, verbose=False`` and the keyword-only
``convert_to_iter_based=False, epoch_length=None`` (what MMEngine's registry passes on).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import attrs

from fengine.core import schedule as fs
from fengine.optim.scheduler.base import INF, ParamGroupsOwner, _ParamScheduler, check_optimizer
from fengine.optim.scheduler.plateau import ReduceOnPlateauParamScheduler
from fengine.registry import PARAM_SCHEDULERS


@PARAM_SCHEDULERS.register_module()
class StepParamScheduler(_ParamScheduler):
    """Multiply by ``gamma`` every ``step_size`` steps (:class:`fengine.core.schedule.Step`)."""

    def __init__(
        self,
        optimizer: ParamGroupsOwner,
        param_name: str,
        step_size: int,
        gamma: float = 0.1,
        begin: int = 0,
        end: int = INF,
        last_step: int = -1,
        by_epoch: bool = True,
        verbose: bool = False,
        *,
        convert_to_iter_based: bool = False,
        epoch_length: int | None = None,
    ) -> None:
        schedule = fs.Step(
            step_size=step_size, gamma=gamma, begin=begin, end=end, by_epoch=by_epoch
        )
        super().__init__(
            optimizer, param_name, schedule, last_step=last_step, verbose=verbose,
            convert_to_iter_based=convert_to_iter_based, epoch_length=epoch_length,
        )  # fmt: skip


@PARAM_SCHEDULERS.register_module()
class MultiStepParamScheduler(_ParamScheduler):
    """Multiply by ``gamma`` at each milestone (:class:`fengine.core.schedule.MultiStep`)."""

    def __init__(
        self,
        optimizer: ParamGroupsOwner,
        param_name: str,
        milestones: Sequence[int],
        gamma: float = 0.1,
        last_step: int = -1,
        begin: int = 0,
        end: int = INF,
        by_epoch: bool = True,
        verbose: bool = False,
        *,
        convert_to_iter_based: bool = False,
        epoch_length: int | None = None,
    ) -> None:
        schedule = fs.MultiStep(
            milestones=milestones, gamma=gamma, begin=begin, end=end, by_epoch=by_epoch
        )
        super().__init__(
            optimizer, param_name, schedule, last_step=last_step, verbose=verbose,
            convert_to_iter_based=convert_to_iter_based, epoch_length=epoch_length,
        )  # fmt: skip


@PARAM_SCHEDULERS.register_module()
class ConstantParamScheduler(_ParamScheduler):
    """Multiply by ``factor`` until the window's last step (:class:`fengine.core.schedule.Constant`)."""

    def __init__(
        self,
        optimizer: ParamGroupsOwner,
        param_name: str,
        factor: float = 1.0 / 3,
        begin: int = 0,
        end: int = INF,
        last_step: int = -1,
        by_epoch: bool = True,
        verbose: bool = False,
        *,
        convert_to_iter_based: bool = False,
        epoch_length: int | None = None,
    ) -> None:
        schedule = fs.Constant(factor=factor, begin=begin, end=end, by_epoch=by_epoch)
        super().__init__(
            optimizer, param_name, schedule, last_step=last_step, verbose=verbose,
            convert_to_iter_based=convert_to_iter_based, epoch_length=epoch_length,
        )  # fmt: skip


@PARAM_SCHEDULERS.register_module()
class ExponentialParamScheduler(_ParamScheduler):
    """Multiply by ``gamma`` every step (:class:`fengine.core.schedule.Exponential`)."""

    def __init__(
        self,
        optimizer: ParamGroupsOwner,
        param_name: str,
        gamma: float,
        begin: int = 0,
        end: int = INF,
        last_step: int = -1,
        by_epoch: bool = True,
        verbose: bool = False,
        *,
        convert_to_iter_based: bool = False,
        epoch_length: int | None = None,
    ) -> None:
        schedule = fs.Exponential(gamma=gamma, begin=begin, end=end, by_epoch=by_epoch)
        super().__init__(
            optimizer, param_name, schedule, last_step=last_step, verbose=verbose,
            convert_to_iter_based=convert_to_iter_based, epoch_length=epoch_length,
        )  # fmt: skip


@PARAM_SCHEDULERS.register_module()
class CosineAnnealingParamScheduler(_ParamScheduler):
    """Cosine annealing to ``eta_min`` (or ``base·eta_min_ratio``) over ``T_max`` steps
    (:class:`fengine.core.schedule.Cosine`)."""

    def __init__(
        self,
        optimizer: ParamGroupsOwner,
        param_name: str,
        T_max: int | None = None,
        eta_min: float | None = None,
        begin: int = 0,
        end: int = INF,
        last_step: int = -1,
        by_epoch: bool = True,
        verbose: bool = False,
        eta_min_ratio: float | None = None,
        *,
        convert_to_iter_based: bool = False,
        epoch_length: int | None = None,
    ) -> None:
        schedule = fs.Cosine(
            T_max=T_max, eta_min=eta_min, eta_min_ratio=eta_min_ratio,
            begin=begin, end=end, by_epoch=by_epoch,
        )  # fmt: skip
        super().__init__(
            optimizer, param_name, schedule, last_step=last_step, verbose=verbose,
            convert_to_iter_based=convert_to_iter_based, epoch_length=epoch_length,
        )  # fmt: skip

    @property
    def T_max(self) -> int:
        """Steps of the half cosine: the given ``T_max``, else the window's length."""
        schedule = self.schedules[0]
        assert isinstance(schedule, fs.Cosine)
        return schedule.T_max or (schedule.end - schedule.begin)


@PARAM_SCHEDULERS.register_module()
class LinearParamScheduler(_ParamScheduler):
    """Scale linearly from ``start_factor`` to ``end_factor`` over the window
    (:class:`fengine.core.schedule.Linear`)."""

    def __init__(
        self,
        optimizer: ParamGroupsOwner,
        param_name: str,
        start_factor: float = 1.0 / 3,
        end_factor: float = 1.0,
        begin: int = 0,
        end: int = INF,
        last_step: int = -1,
        by_epoch: bool = True,
        verbose: bool = False,
        *,
        convert_to_iter_based: bool = False,
        epoch_length: int | None = None,
    ) -> None:
        schedule = fs.Linear(
            start_factor=start_factor, end_factor=end_factor,
            begin=begin, end=end, by_epoch=by_epoch,
        )  # fmt: skip
        super().__init__(
            optimizer, param_name, schedule, last_step=last_step, verbose=verbose,
            convert_to_iter_based=convert_to_iter_based, epoch_length=epoch_length,
        )  # fmt: skip


@PARAM_SCHEDULERS.register_module()
class PolyParamScheduler(_ParamScheduler):
    """Polynomial decay to ``eta_min`` at the window's last step
    (:class:`fengine.core.schedule.Poly`)."""

    def __init__(
        self,
        optimizer: ParamGroupsOwner,
        param_name: str,
        eta_min: float = 0.0,
        power: float = 1.0,
        begin: int = 0,
        end: int = INF,
        last_step: int = -1,
        by_epoch: bool = True,
        verbose: bool = False,
        *,
        convert_to_iter_based: bool = False,
        epoch_length: int | None = None,
    ) -> None:
        schedule = fs.Poly(eta_min=eta_min, power=power, begin=begin, end=end, by_epoch=by_epoch)
        super().__init__(
            optimizer, param_name, schedule, last_step=last_step, verbose=verbose,
            convert_to_iter_based=convert_to_iter_based, epoch_length=epoch_length,
        )  # fmt: skip


@PARAM_SCHEDULERS.register_module()
class CosineRestartParamScheduler(_ParamScheduler):
    """Cosine annealing restarted every period, the peak scaled by ``restart_weights``
    (:class:`fengine.core.schedule.CosineRestart`)."""

    def __init__(
        self,
        optimizer: ParamGroupsOwner,
        param_name: str,
        periods: Sequence[int],
        restart_weights: Sequence[float] = (1,),
        eta_min: float | None = None,
        eta_min_ratio: float | None = None,
        begin: int = 0,
        end: int = INF,
        last_step: int = -1,
        by_epoch: bool = True,
        verbose: bool = False,
        *,
        convert_to_iter_based: bool = False,
        epoch_length: int | None = None,
    ) -> None:
        schedule = fs.CosineRestart(
            periods=periods, restart_weights=restart_weights, eta_min=eta_min,
            eta_min_ratio=eta_min_ratio, begin=begin, end=end, by_epoch=by_epoch,
        )  # fmt: skip
        super().__init__(
            optimizer, param_name, schedule, last_step=last_step, verbose=verbose,
            convert_to_iter_based=convert_to_iter_based, epoch_length=epoch_length,
        )  # fmt: skip


@PARAM_SCHEDULERS.register_module()
class OneCycleParamScheduler(_ParamScheduler):
    """The 1cycle learning-rate policy (:class:`fengine.core.schedule.OneCycle`); ``eta_max`` may
    be one value per parameter group. Only ``param_name='lr'`` is accepted, as in MMEngine.

    Raises:
        ValueError: another ``param_name``, or a list ``eta_max`` of the wrong length.
    """

    def __init__(
        self,
        optimizer: ParamGroupsOwner,
        param_name: str,
        eta_max: float | Sequence[float] = 0,
        total_steps: int | None = None,
        pct_start: float = 0.3,
        anneal_strategy: str = "cos",
        div_factor: float = 25.0,
        final_div_factor: float = 1e4,
        three_phase: bool = False,
        begin: int = 0,
        end: int = INF,
        last_step: int = -1,
        by_epoch: bool = True,
        verbose: bool = False,
        *,
        convert_to_iter_based: bool = False,
        epoch_length: int | None = None,
    ) -> None:
        if param_name != "lr":
            raise fs.ScheduleError(f"OneCycle schedules only 'lr', got param_name={param_name!r}")
        groups = check_optimizer(optimizer)
        peaks = _per_group(eta_max, len(groups))
        if len(peaks) != len(groups):
            raise fs.ScheduleError(f"expected {len(groups)} values for eta_max, got {len(peaks)}")
        schedules = [
            fs.OneCycle(
                eta_max=peak, total_steps=total_steps, pct_start=pct_start,
                anneal_strategy=anneal_strategy, div_factor=div_factor,
                final_div_factor=final_div_factor, three_phase=three_phase,
                begin=begin, end=end, by_epoch=by_epoch,
            )
            for peak in peaks
        ]  # fmt: skip
        if last_step == -1:  # MMEngine's bookkeeping keys; initial_lr becomes the cycle's start
            for group, peak in zip(groups, peaks):
                group["initial_lr"] = peak / div_factor
                group["max_lr"] = peak
                group["min_lr"] = group["initial_lr"] / final_div_factor
        super().__init__(
            optimizer, param_name, schedules, last_step=last_step, verbose=verbose,
            convert_to_iter_based=convert_to_iter_based, epoch_length=epoch_length,
        )  # fmt: skip

    def _hyper_params(self) -> dict[str, Any]:
        params = super()._hyper_params()
        peaks = [s.eta_max for s in self.schedules if isinstance(s, fs.OneCycle)]
        params["eta_max"] = peaks if len(set(peaks)) > 1 else peaks[0]
        return params

    def _load_hyper_params(self, state_dict: Any) -> None:
        eta_max = state_dict.get("eta_max")
        rest = {k: v for k, v in state_dict.items() if k != "eta_max"}
        super()._load_hyper_params(rest)
        if eta_max is not None:
            peaks = _per_group(eta_max, len(self.schedules))
            self._schedules = tuple(
                attrs.evolve(cast(fs.OneCycle, s), eta_max=p) for s, p in zip(self.schedules, peaks)
            )


def _per_group(value: float | Sequence[float], groups: int) -> list[float]:
    """One value per param group from a scalar or a per-group list."""
    return list(value) if isinstance(value, Sequence) else [value] * groups


__all__ = [
    "ConstantParamScheduler",
    "CosineAnnealingParamScheduler",
    "CosineRestartParamScheduler",
    "ExponentialParamScheduler",
    "LinearParamScheduler",
    "MultiStepParamScheduler",
    "OneCycleParamScheduler",
    "PolyParamScheduler",
    "ReduceOnPlateauParamScheduler",
    "StepParamScheduler",
]
