"""The concrete averagers: EMA, momentum-annealed EMA, SWA and a user's in-place function.

Each is a frozen record of validated hyper-parameters implementing only
:meth:`~fengine.core.ema.base.Averager.average` (how one list of tensors is averaged); when to
average is the base's rule. Their argument validators live here because only they take these
arguments.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import torch
from torch import Tensor

from fengine.core import plain
from fengine.core.ema.base import Averager


class AveragerArgumentError(ValueError, AssertionError):
    """A bad averaging hyper-parameter (an ``AssertionError`` too, as MMEngine's ``assert``)."""


def _check_interval(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AveragerArgumentError(f"{attribute.name} must be an int >= 1, got {value!r}")


def _check_momentum(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{attribute.name} must be a float in (0, 1), got {value!r}")
    if not 0.0 < value < 1.0:
        raise AveragerArgumentError(
            f"{attribute.name} must be in range (0.0, 1.0) (open), got {value!r}; it is the "
            "weight of the new value (avg <- (1 - momentum) * avg + momentum * src)"
        )


def _check_bool(_: object, attribute: attrs.Attribute[bool], value: bool) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{attribute.name} must be a bool, got {value!r}")


def _lerp(avgs: list[Tensor], srcs: list[Tensor], weight: float, donate: bool) -> list[Tensor]:
    if donate:
        torch._foreach_lerp_(avgs, srcs, weight)
        return avgs
    return list(torch._foreach_lerp(avgs, srcs, weight))


@plain.register("ema.ExponentialMovingAverage")
@attrs.frozen
class ExponentialMovingAverage(Averager):
    """Exponential moving average: ``avg ← (1 − momentum)·avg + momentum·src``.

    After ``n ≥ 1`` updates with ``interval == 1`` and sources ``x_0 … x_{n-1}``,
    ``avg = (1 − m)^{n-1} x_0 + Σ_{k=1}^{n-1} m (1 − m)^{n-1-k} x_k``.

    Args:
        momentum: weight of the new value, in ``(0, 1)`` (MMEngine's convention; ``1 − decay``).
        interval: average every ``interval``-th update call (copies on the first).
        update_buffers: average floating-point buffers too instead of copying them.

    Raises:
        ValueError: ``momentum`` outside ``(0, 1)`` or ``interval < 1``.
        TypeError: a non-number ``momentum`` or a non-bool ``update_buffers``.
    """

    momentum: float = attrs.field(default=0.0002, validator=_check_momentum)
    interval: int = attrs.field(default=1, validator=_check_interval)
    update_buffers: bool = attrs.field(default=False, validator=_check_bool)

    def average(
        self, avgs: list[Tensor], srcs: list[Tensor], steps: int, donate: bool
    ) -> list[Tensor]:
        """``lerp(avg, src, momentum)`` for each pair (see :meth:`Averager.average`)."""
        return _lerp(avgs, srcs, self.momentum, donate)


def _check_gamma(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise AveragerArgumentError(f"{attribute.name} must be greater than 0 (a number), got {value!r}")


@plain.register("ema.MomentumAnnealingEMA")
@attrs.frozen
class MomentumAnnealingEMA(Averager):
    """EMA whose momentum starts high and anneals: ``m_t = max(momentum, gamma / (gamma + t))``.

    ``t`` is the update counter before the update (not divided by ``interval``), as MMEngine.

    Args:
        momentum: the floor of the momentum, in ``(0, 1)``.
        gamma: the annealing scale, ``> 0``.
        interval: average every ``interval``-th update call.
        update_buffers: average floating-point buffers too.

    Raises:
        ValueError: ``momentum`` outside ``(0, 1)``, ``gamma <= 0`` or ``interval < 1``.
    """

    momentum: float = attrs.field(default=0.0002, validator=_check_momentum)
    gamma: float = attrs.field(default=100.0, validator=_check_gamma)
    interval: int = attrs.field(default=1, validator=_check_interval)
    update_buffers: bool = attrs.field(default=False, validator=_check_bool)

    def momentum_at(self, steps: int) -> float:
        """The momentum used by the update made at counter value ``steps``."""
        return max(self.momentum, self.gamma / (self.gamma + steps))

    def average(
        self, avgs: list[Tensor], srcs: list[Tensor], steps: int, donate: bool
    ) -> list[Tensor]:
        """``lerp(avg, src, momentum_at(steps))`` for each pair."""
        return _lerp(avgs, srcs, self.momentum_at(steps), donate)


@plain.register("ema.StochasticWeightAverage")
@attrs.frozen
class StochasticWeightAverage(Averager):
    """Running mean of the sampled weights: ``avg ← avg + (src − avg) / (steps // interval + 1)``.

    Args:
        interval: sample every ``interval``-th update call.
        update_buffers: average floating-point buffers too.
    """

    interval: int = attrs.field(default=1, validator=_check_interval)
    update_buffers: bool = attrs.field(default=False, validator=_check_bool)

    def average(
        self, avgs: list[Tensor], srcs: list[Tensor], steps: int, donate: bool
    ) -> list[Tensor]:
        """``avg + (src − avg)·α`` with ``α = 1 / (steps // interval + 1)`` (add with alpha)."""
        alpha = 1 / float(steps // self.interval + 1)
        diffs = torch._foreach_sub(srcs, avgs)
        if donate:
            torch._foreach_add_(avgs, diffs, alpha=alpha)
            return avgs
        return list(torch._foreach_add(avgs, diffs, alpha=alpha))


AvgFn = Callable[[Tensor, Tensor, int], object]  # the result is ignored


@attrs.frozen
class CustomAverage(Averager):
    """An averager from an in-place function ``avg_fn(averaged, source, steps)`` (MMEngine's ``avg_func``).

    Pure updates call ``avg_fn`` on copies of the averages; donated ones on the averages.

    Args:
        avg_fn: writes the new average into its first argument.
        interval: average every ``interval``-th update call.
        update_buffers: average floating-point buffers too.
    """

    avg_fn: AvgFn = attrs.field()
    interval: int = attrs.field(default=1, validator=_check_interval)
    update_buffers: bool = attrs.field(default=False, validator=_check_bool)

    @avg_fn.validator
    def _check_avg_fn(self, attribute: attrs.Attribute[AvgFn], value: AvgFn) -> None:
        if not callable(value):
            raise TypeError(
                f"{attribute.name} must be callable (averaged, source, steps), got {value!r}"
            )

    def average(
        self, avgs: list[Tensor], srcs: list[Tensor], steps: int, donate: bool
    ) -> list[Tensor]:
        """``avg_fn(avg, src, steps)`` on each pair (on clones unless donated)."""
        targets = avgs if donate else [a.clone() for a in avgs]
        for avg, src in zip(targets, srcs):
            self.avg_fn(avg, src, steps)
        return targets

