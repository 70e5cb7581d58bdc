"""Functional weight initialisers: fill a module's ``weight`` and ``bias`` in place.

Each function touches only the ``weight`` and ``bias`` attributes of the module it is given (not
its children) and skips those that are missing or ``None``; the bias is always a constant. The
random ones draw from torch's global generator in the order ``weight`` first, so seeding torch
reproduces MMEngine's values.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

import torch
from torch import Tensor, nn

Distribution = Literal["normal", "uniform"]
_DISTRIBUTIONS = ("normal", "uniform")


def _weight(module: nn.Module) -> Tensor | None:
    weight = getattr(module, "weight", None)
    return weight if isinstance(weight, Tensor) else None


def _fill_bias(module: nn.Module, bias: float) -> None:
    value = getattr(module, "bias", None)
    if isinstance(value, Tensor):
        nn.init.constant_(value, bias)


def check_distribution(distribution: str) -> None:
    """Raise ``ValueError`` unless ``distribution`` is ``'normal'`` or ``'uniform'``."""
    if distribution not in _DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {_DISTRIBUTIONS}, got {distribution!r}")


def constant_init(module: nn.Module, val: float, bias: float = 0) -> None:
    """Fill ``module.weight`` with ``val`` and ``module.bias`` with ``bias``.

    Args:
        module: the module whose own ``weight``/``bias`` are filled.
        val: the weight value.
        bias: the bias value.
    """
    weight = _weight(module)
    if weight is not None:
        nn.init.constant_(weight, val)
    _fill_bias(module, bias)


def xavier_init(
    module: nn.Module, gain: float = 1, bias: float = 0, distribution: Distribution = "normal"
) -> None:
    """Glorot initialisation of ``module.weight``; constant bias.

    Normal: std ``gain * sqrt(2 / (fan_in + fan_out))``; uniform: bound ``sqrt(3)`` times that.

    Args:
        module: the module to initialise.
        gain: the scaling factor.
        bias: the bias value.
        distribution: ``'normal'`` or ``'uniform'``.

    Raises:
        ValueError: another ``distribution``.
    """
    check_distribution(distribution)
    weight = _weight(module)
    if weight is not None:
        if distribution == "uniform":
            nn.init.xavier_uniform_(weight, gain=gain)
        else:
            nn.init.xavier_normal_(weight, gain=gain)
    _fill_bias(module, bias)


def normal_init(module: nn.Module, mean: float = 0, std: float = 1, bias: float = 0) -> None:
    """Draw ``module.weight`` from N(mean, std²); constant bias.

    Args:
        module: the module to initialise.
        mean: the mean.
        std: the standard deviation.
        bias: the bias value.
    """
    weight = _weight(module)
    if weight is not None:
        nn.init.normal_(weight, mean, std)
    _fill_bias(module, bias)


def trunc_normal_(
    tensor: Tensor, mean: float = 0, std: float = 1, a: float = -2, b: float = 2
) -> Tensor:
    """Fill ``tensor`` in place from N(mean, std²) truncated to ``[a, b]``, by inverse CDF.

    With Φ the standard normal CDF, ``l = Φ((a-mean)/std)`` and ``u = Φ((b-mean)/std)``:
    draw ``x ~ U(2l-1, 2u-1)``, then ``mean + std·√2·erfinv(x)``, clamped to ``[a, b]``. This is
    MMEngine's algorithm (one uniform draw per element); ``torch.nn.init.trunc_normal_`` now
    samples differently, so it would not reproduce MMEngine's numbers.

    Args:
        tensor: filled in place.
        mean: the mean of the normal distribution.
        std: its standard deviation.
        a: the lower bound.
        b: the upper bound.

    Returns:
        ``tensor``.
    """

    def cdf(x: float) -> float:
        return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0

    if mean < a - 2 * std or mean > b + 2 * std:
        warnings.warn(
            f"trunc_normal_: mean {mean} is more than 2 std ({std}) from [a, b] = [{a}, {b}]; "
            "the distribution of values may be incorrect",
            stacklevel=2,
        )
    with torch.no_grad():
        low, high = cdf((a - mean) / std), cdf((b - mean) / std)
        tensor.uniform_(2 * low - 1, 2 * high - 1)
        tensor.erfinv_()
        tensor.mul_(std * math.sqrt(2.0))
        tensor.add_(mean)
        tensor.clamp_(min=a, max=b)
    return tensor


def trunc_normal_init(
    module: nn.Module, mean: float = 0, std: float = 1, a: float = -2, b: float = 2, bias: float = 0
) -> None:
    """Draw ``module.weight`` from a truncated normal (see :func:`trunc_normal_`); constant bias.

    Args:
        module: the module to initialise.
        mean: the mean.
        std: the standard deviation.
        a: the lower cut-off.
        b: the upper cut-off.
        bias: the bias value.
    """
    weight = _weight(module)
    if weight is not None:
        trunc_normal_(weight, mean, std, a, b)
    _fill_bias(module, bias)


def uniform_init(module: nn.Module, a: float = 0, b: float = 1, bias: float = 0) -> None:
    """Draw ``module.weight`` from U(a, b); constant bias.

    Args:
        module: the module to initialise.
        a: the lower bound.
        b: the upper bound.
        bias: the bias value.
    """
    weight = _weight(module)
    if weight is not None:
        nn.init.uniform_(weight, a, b)
    _fill_bias(module, bias)


def kaiming_init(
    module: nn.Module,
    a: float = 0,
    mode: Literal["fan_in", "fan_out"] = "fan_out",
    nonlinearity: str = "relu",
    bias: float = 0,
    distribution: Distribution = "normal",
) -> None:
    """He initialisation of ``module.weight``; constant bias.

    Normal: std ``gain / sqrt(fan)`` with ``gain`` from ``nonlinearity`` (and ``a`` for leaky
    ReLU) and ``fan`` chosen by ``mode``; uniform: bound ``sqrt(3)`` times that.

    Args:
        module: the module to initialise.
        a: the negative slope of the rectifier (``leaky_relu`` only).
        mode: ``'fan_in'`` or ``'fan_out'``.
        nonlinearity: a name accepted by ``torch.nn.init.calculate_gain``.
        bias: the bias value.
        distribution: ``'normal'`` or ``'uniform'``.

    Raises:
        ValueError: another ``distribution``.
    """
    check_distribution(distribution)
    weight = _weight(module)
    if weight is not None:
        if distribution == "uniform":
            nn.init.kaiming_uniform_(weight, a=a, mode=mode, nonlinearity=nonlinearity)  # type: ignore[arg-type]
        else:
            nn.init.kaiming_normal_(weight, a=a, mode=mode, nonlinearity=nonlinearity)  # type: ignore[arg-type]
    _fill_bias(module, bias)


def caffe2_xavier_init(module: nn.Module, bias: float = 0) -> None:
    """Caffe2's "Xavier": Kaiming uniform with ``a=1``, ``fan_in``, ``leaky_relu``; constant bias.

    Args:
        module: the module to initialise.
        bias: the bias value.
    """
    kaiming_init(
        module, a=1, mode="fan_in", nonlinearity="leaky_relu", bias=bias, distribution="uniform"
    )


def bias_init_with_prob(prior_prob: float) -> float:
    """The bias whose sigmoid is ``prior_prob``: ``-log((1 - p) / p)``.

    Args:
        prior_prob: a probability in ``(0, 1)``; 0.01 gives -4.5951.

    Returns:
        The bias value.

    Raises:
        ValueError: ``prior_prob`` outside ``(0, 1)``.
    """
    if not 0 < prior_prob < 1:
        raise ValueError(f"prior_prob must be in the open interval (0, 1), got {prior_prob!r}")
    return float(-math.log((1 - prior_prob) / prior_prob))
