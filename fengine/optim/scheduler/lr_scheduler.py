"""Learning-rate schedulers: the generic schedulers with ``param_name='lr'``.

``StepLR(optimizer, step_size, ...)`` is ``StepParamScheduler(optimizer, 'lr', step_size, ...)``,
and so on for every family; arguments and formulas are those of the generic class.
"""

from __future__ import annotations

import inspect
from typing import Any

from fengine.optim.scheduler import param_scheduler as ps
from fengine.optim.scheduler.base import _ParamScheduler
from fengine.registry import PARAM_SCHEDULERS


def signature_without_param_name(cls: type) -> inspect.Signature | None:
    """The constructor signature of ``cls``'s generic scheduler, less ``param_name``.

    Set as ``__signature__`` so that config errors and ``help()`` list the real arguments;
    ``None`` (inspect's own answer) for a subclass with its own ``__init__``.
    """
    if "__init__" in vars(cls):
        return None
    generic = next(
        k for k in cls.__mro__[1:] if issubclass(k, _ParamScheduler) and "__init__" in vars(k)
    )
    params = inspect.signature(generic).parameters.values()
    return inspect.Signature([p for p in params if p.name != "param_name"])


class LRSchedulerMixin:
    """Fixes ``param_name='lr'``; mixed in before a generic scheduler class."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__signature__ = signature_without_param_name(cls)  # type: ignore[attr-defined]

    def __init__(self, optimizer: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(optimizer, "lr", *args, **kwargs)  # type: ignore[call-arg]


@PARAM_SCHEDULERS.register_module()
class ConstantLR(LRSchedulerMixin, ps.ConstantParamScheduler):
    """Multiply the learning rate by ``factor`` until the window's last step."""


@PARAM_SCHEDULERS.register_module()
class CosineAnnealingLR(LRSchedulerMixin, ps.CosineAnnealingParamScheduler):
    """Cosine-anneal the learning rate to ``eta_min`` over ``T_max`` steps."""


@PARAM_SCHEDULERS.register_module()
class CosineRestartLR(LRSchedulerMixin, ps.CosineRestartParamScheduler):
    """Cosine-anneal the learning rate, restarting every period."""


@PARAM_SCHEDULERS.register_module()
class ExponentialLR(LRSchedulerMixin, ps.ExponentialParamScheduler):
    """Multiply the learning rate by ``gamma`` every step."""


@PARAM_SCHEDULERS.register_module()
class LinearLR(LRSchedulerMixin, ps.LinearParamScheduler):
    """Scale the learning rate linearly from ``start_factor`` to ``end_factor``."""


@PARAM_SCHEDULERS.register_module()
class MultiStepLR(LRSchedulerMixin, ps.MultiStepParamScheduler):
    """Multiply the learning rate by ``gamma`` at each milestone."""


@PARAM_SCHEDULERS.register_module()
class OneCycleLR(LRSchedulerMixin, ps.OneCycleParamScheduler):
    """The 1cycle learning-rate policy."""


@PARAM_SCHEDULERS.register_module()
class PolyLR(LRSchedulerMixin, ps.PolyParamScheduler):
    """Polynomial learning-rate decay to ``eta_min``."""


@PARAM_SCHEDULERS.register_module()
class ReduceOnPlateauLR(LRSchedulerMixin, ps.ReduceOnPlateauParamScheduler):
    """Reduce the learning rate when a validation metric stops improving."""


@PARAM_SCHEDULERS.register_module()
class StepLR(LRSchedulerMixin, ps.StepParamScheduler):
    """Multiply the learning rate by ``gamma`` every ``step_size`` steps."""


__all__ = [
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineRestartLR",
    "ExponentialLR",
    "LRSchedulerMixin",
    "LinearLR",
    "MultiStepLR",
    "OneCycleLR",
    "PolyLR",
    "ReduceOnPlateauLR",
    "StepLR",
]
