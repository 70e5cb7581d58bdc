"""Momentum schedulers: the generic schedulers on SGD's ``momentum`` or Adam's ``betas[0]``.

With an optimizer whose defaults have ``betas`` (the Adam family), each group gets a
``'momentum'`` entry equal to ``betas[0]``; after every step the scheduled value is written back
into ``betas`` (``betas[1]`` kept), as MMEngine does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fengine.core.schedule import ScheduleError
from fengine.optim.scheduler import param_scheduler as ps
from fengine.optim.scheduler.base import check_optimizer
from fengine.optim.scheduler.lr_scheduler import signature_without_param_name
from fengine.registry import PARAM_SCHEDULERS


class MomentumSchedulerMixin:
    """Schedules ``'momentum'`` (mirrored into ``betas[0]`` for Adam-style optimizers).

    Raises:
        ValueError: the optimizer has neither ``momentum`` nor ``betas`` in its defaults.
    """

    optimizer: Any
    use_betas: bool

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__signature__ = signature_without_param_name(cls)  # type: ignore[attr-defined]

    def __init__(self, optimizer: Any, *args: Any, **kwargs: Any) -> None:
        groups = check_optimizer(optimizer)
        defaults: Mapping[str, Any] = getattr(optimizer, "defaults", None) or (
            groups[0] if groups else {}
        )
        self.use_betas = "momentum" not in defaults and "betas" in defaults
        if "momentum" not in defaults and not self.use_betas:
            raise ScheduleError(
                "optimizer must support momentum when using momentum scheduler: its defaults "
                f"need 'momentum' or 'betas', got {type(optimizer).__name__} with {sorted(defaults)}"
            )
        if self.use_betas:
            for group in groups:
                group["momentum"] = group["betas"][0]
        super().__init__(optimizer, "momentum", *args, **kwargs)  # type: ignore[call-arg]

    def step(self, *args: Any, **kwargs: Any) -> None:
        """Step the schedule, then mirror ``momentum`` into ``betas[0]`` when needed."""
        super().step(*args, **kwargs)  # type: ignore[misc]
        if self.use_betas:
            for group in self.optimizer.param_groups:
                group["betas"] = (group["momentum"], group["betas"][1])


@PARAM_SCHEDULERS.register_module()
class ConstantMomentum(MomentumSchedulerMixin, ps.ConstantParamScheduler):
    """Multiply the momentum by ``factor`` until the window's last step."""


@PARAM_SCHEDULERS.register_module()
class CosineAnnealingMomentum(MomentumSchedulerMixin, ps.CosineAnnealingParamScheduler):
    """Cosine-anneal the momentum to ``eta_min`` over ``T_max`` steps."""


@PARAM_SCHEDULERS.register_module()
class CosineRestartMomentum(MomentumSchedulerMixin, ps.CosineRestartParamScheduler):
    """Cosine-anneal the momentum, restarting every period."""


@PARAM_SCHEDULERS.register_module()
class ExponentialMomentum(MomentumSchedulerMixin, ps.ExponentialParamScheduler):
    """Multiply the momentum by ``gamma`` every step."""


@PARAM_SCHEDULERS.register_module()
class LinearMomentum(MomentumSchedulerMixin, ps.LinearParamScheduler):
    """Scale the momentum linearly from ``start_factor`` to ``end_factor``."""


@PARAM_SCHEDULERS.register_module()
class MultiStepMomentum(MomentumSchedulerMixin, ps.MultiStepParamScheduler):
    """Multiply the momentum by ``gamma`` at each milestone."""


@PARAM_SCHEDULERS.register_module()
class PolyMomentum(MomentumSchedulerMixin, ps.PolyParamScheduler):
    """Polynomial momentum decay to ``eta_min``."""


@PARAM_SCHEDULERS.register_module()
class ReduceOnPlateauMomentum(MomentumSchedulerMixin, ps.ReduceOnPlateauParamScheduler):
    """Reduce the momentum when a validation metric stops improving."""


@PARAM_SCHEDULERS.register_module()
class StepMomentum(MomentumSchedulerMixin, ps.StepParamScheduler):
    """Multiply the momentum by ``gamma`` every ``step_size`` steps."""


__all__ = [
    "ConstantMomentum",
    "CosineAnnealingMomentum",
    "CosineRestartMomentum",
    "ExponentialMomentum",
    "LinearMomentum",
    "MomentumSchedulerMixin",
    "MultiStepMomentum",
    "PolyMomentum",
    "ReduceOnPlateauMomentum",
    "StepMomentum",
]
