"""MMEngine's averaged models (EMA, annealed EMA, SWA) as ``nn.Module`` façades over ``fc.ema``.

Each class keeps a frozen copy of the source model in ``module`` and a ``steps`` buffer, so its
``state_dict`` has MMEngine's keys (``steps``, ``module.<name>``). ``update_parameters(model)``
runs the pure averager of :mod:`fengine.core.ema` donated, i.e. in place on ``module``'s tensors.
A subclass that only overrides ``avg_func`` (MMEngine's extension point) works too: its
``avg_func`` becomes a :class:`~fengine.core.ema.CustomAverage`.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import Tensor, nn

from fengine.core import ema
from fengine.logging.logger import print_log
from fengine.registry import MODELS

__all__ = [
    "BaseAveragedModel",
    "ExponentialMovingAverage",
    "MomentumAnnealingEMA",
    "StochasticWeightAverage",
]


class BaseAveragedModel(nn.Module):
    """A frozen copy of ``model`` whose weights are a running average of ``model``'s.

    The first ``update_parameters`` call copies the source; later calls average every
    ``interval``-th time with :meth:`avg_func`; buffers not averaged follow the source
    (see :mod:`fengine.core.ema` for the exact rule).

    Args:
        model: the module to average (deep-copied, ``requires_grad_(False)``).
        interval: average every ``interval``-th update call.
        device: where the copy lives (the source's device if ``None``).
        update_buffers: average floating-point buffers too instead of copying them.
    """

    steps: Tensor

    def __init__(
        self,
        model: nn.Module,
        interval: int = 1,
        device: torch.device | str | None = None,
        update_buffers: bool = False,
    ) -> None:
        super().__init__()
        self.module = copy.deepcopy(model).requires_grad_(False)
        if device is not None:
            self.module = self.module.to(device)
        self.interval = interval
        self.device = device
        self.update_buffers = update_buffers
        self.register_buffer("steps", torch.tensor(0, dtype=torch.long, device=device))
        self.averager()  # validates the hyper-parameters now rather than at the first update

    @property
    def avg_parameters(self) -> dict[str, Tensor]:
        """The averaged tensors by name: the state dict with ``update_buffers``, else the parameters."""
        if self.update_buffers:
            return dict(self.module.state_dict())
        return dict(self.module.named_parameters())

    def avg_func(self, averaged_param: Tensor, source_param: Tensor, steps: int) -> None:
        """Write the new average into ``averaged_param`` (subclasses implement it).

        Args:
            averaged_param: the average, updated in place.
            source_param: the source value, on the average's device.
            steps: the update counter before this update (a Python int).
        """
        raise NotImplementedError(
            f"{type(self).__name__} must implement avg_func(averaged_param, source_param, steps)"
        )

    def averager(self) -> ema.Averager:
        """The pure averager with this module's current hyper-parameters.

        Returns:
            A :class:`~fengine.core.ema.CustomAverage` over :meth:`avg_func` here; the built-in
            subclasses return their :mod:`fengine.core.ema` counterpart.
        """
        return ema.CustomAverage(
            avg_fn=self.avg_func, interval=self.interval, update_buffers=self.update_buffers
        )

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """Run the averaged module."""
        return self.module(*args, **kwargs)

    def update_parameters(self, model: nn.Module) -> None:
        """Fold ``model``'s current weights into the average (in place).

        Args:
            model: the source; its parameter and buffer names must match ``module``'s.

        Raises:
            KeyError: ``model`` lacks a name the average holds.
        """
        state = ema.EMAState(
            params=dict(self.module.named_parameters()),
            buffers=dict(self.module.named_buffers()),
            steps=int(self.steps),
        )
        new = self.averager().update(
            state, dict(model.named_parameters()), dict(model.named_buffers()), donate=True
        )
        self.steps.fill_(new.steps)


@MODELS.register_module()
class ExponentialMovingAverage(BaseAveragedModel):
    """Exponential moving average: ``avg ← (1 − momentum)·avg + momentum·src``.

    Args:
        model: the module to average.
        momentum: weight of the new value, in ``(0, 1)``; usually small (a warning above 0.5,
            since it is ``1 − decay`` in other libraries' terms).
        interval: average every ``interval``-th update call.
        device: where the copy lives.
        update_buffers: average floating-point buffers too.

    Raises:
        ValueError: ``momentum`` outside ``(0, 1)`` (MMEngine raises ``AssertionError``).
    """

    def __init__(
        self,
        model: nn.Module,
        momentum: float = 0.0002,
        interval: int = 1,
        device: torch.device | str | None = None,
        update_buffers: bool = False,
    ) -> None:
        self.momentum = momentum
        super().__init__(model, interval, device, update_buffers)
        if momentum > 0.5:  # logged, as MMEngine does
            print_log(
                f"EMA momentum is the weight of the new value and is usually small, got "
                f"{momentum}; if you meant a decay, pass momentum={1 - momentum:g}",
                logger="current",
                level=logging.WARNING,
            )

    def averager(self) -> ema.Averager:
        """:class:`fengine.core.ema.ExponentialMovingAverage` with this module's settings."""
        return ema.ExponentialMovingAverage(
            momentum=self.momentum, interval=self.interval, update_buffers=self.update_buffers
        )

    def avg_func(self, averaged_param: Tensor, source_param: Tensor, steps: int) -> None:
        """``averaged_param.lerp_(source_param, momentum)``."""
        averaged_param.lerp_(source_param, self.momentum)


@MODELS.register_module()
class MomentumAnnealingEMA(ExponentialMovingAverage):
    """EMA with momentum ``max(momentum, gamma / (gamma + steps))``: fast at first, then ``momentum``.

    Args:
        model: the module to average.
        momentum: the floor of the momentum, in ``(0, 1)``.
        gamma: the annealing scale, ``> 0``.
        interval: average every ``interval``-th update call.
        device: where the copy lives.
        update_buffers: average floating-point buffers too.

    Raises:
        ValueError: ``momentum`` outside ``(0, 1)`` or ``gamma <= 0``.
    """

    def __init__(
        self,
        model: nn.Module,
        momentum: float = 0.0002,
        gamma: int = 100,
        interval: int = 1,
        device: torch.device | str | None = None,
        update_buffers: bool = False,
    ) -> None:
        self.gamma = gamma
        super().__init__(model, momentum, interval, device, update_buffers)

    def averager(self) -> ema.Averager:
        """:class:`fengine.core.ema.MomentumAnnealingEMA` with this module's settings."""
        return ema.MomentumAnnealingEMA(
            momentum=self.momentum,
            gamma=self.gamma,
            interval=self.interval,
            update_buffers=self.update_buffers,
        )

    def avg_func(self, averaged_param: Tensor, source_param: Tensor, steps: int) -> None:
        """``lerp_`` with the annealed momentum at ``steps``."""
        averaged_param.lerp_(source_param, max(self.momentum, self.gamma / (self.gamma + steps)))


@MODELS.register_module()
class StochasticWeightAverage(BaseAveragedModel):
    """Stochastic weight averaging: the running mean of the weights sampled every ``interval`` calls.

    Args:
        model: the module to average.
        interval: sample every ``interval``-th update call.
        device: where the copy lives.
        update_buffers: average floating-point buffers too.
    """

    def averager(self) -> ema.Averager:
        """:class:`fengine.core.ema.StochasticWeightAverage` with this module's settings."""
        return ema.StochasticWeightAverage(
            interval=self.interval, update_buffers=self.update_buffers
        )

    def avg_func(self, averaged_param: Tensor, source_param: Tensor, steps: int) -> None:
        """``avg += (src − avg) / (steps // interval + 1)``."""
        averaged_param.add_(
            source_param - averaged_param, alpha=1 / float(steps // self.interval + 1)
        )
