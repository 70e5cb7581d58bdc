"""Weight initialisers built from ``init_cfg`` dicts (``dict(type='Constant', val=1, layer='Conv2d')``).

An initialiser is called on a module and visits it and every descendant in ``nn.Module.apply``
order (children before parents, so random draws follow MMEngine's order). It fills a visited
module when ``wholemodule`` is set (an ``override`` target) or when one of its ``layer`` names is
the module's class name or the name of one of its *direct* base classes.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from fengine.model.init_functions import (
    bias_init_with_prob,
    check_distribution,
    constant_init,
    kaiming_init,
    normal_init,
    trunc_normal_init,
    uniform_init,
    xavier_init,
)
from fengine.model.init_info import INIT_INFO_ATTR, update_init_info
from fengine.registry import WEIGHT_INITIALIZERS


def layer_matches(module: nn.Module, layers: list[str]) -> bool:
    """Whether ``module``'s class or one of its direct bases is named in ``layers``.

    Only one level of bases counts: a subclass of a subclass of ``Conv2d`` does not match
    ``'Conv2d'``.

    Args:
        module: the module to test.
        layers: class names.

    Returns:
        ``True`` when a name matches.
    """
    cls = type(module)
    names = {cls.__name__, *(base.__name__ for base in cls.__bases__)}
    return not names.isdisjoint(layers)


class BaseInit:
    """Common arguments of the numeric initialisers.

    Args:
        bias: the constant for every matched ``bias``.
        bias_prob: when given, the bias is ``bias_init_with_prob(bias_prob)`` instead.
        layer: class names (a str or a list of str) to initialise; none → only ``override``
            targets are touched.

    Raises:
        TypeError: ``bias`` not a number, ``bias_prob`` not a float, ``layer`` not a str or list.
    """

    def __init__(
        self,
        *,
        bias: float = 0,
        bias_prob: float | None = None,
        layer: str | list[str] | None = None,
    ) -> None:
        if not isinstance(bias, int | float):
            raise TypeError(
                f"bias must be a number (int or float), got {type(bias).__name__} {bias!r}"
            )
        if bias_prob is not None and not isinstance(bias_prob, float):
            raise TypeError(
                f"bias_prob must be a float, got {type(bias_prob).__name__} {bias_prob!r}"
            )
        if layer is not None and not isinstance(layer, str | list):
            raise TypeError(
                f"layer must be a str or a list of str, got {type(layer).__name__} {layer!r}"
            )
        self.wholemodule = False
        self.bias = bias_init_with_prob(bias_prob) if bias_prob is not None else bias
        self.layer: list[str] = [layer] if isinstance(layer, str) else list(layer or [])

    def _fill(self, module: nn.Module) -> None:
        raise NotImplementedError

    def _get_init_info(self) -> str:
        return f"{type(self).__name__}, bias={self.bias}"

    def __call__(self, module: nn.Module) -> None:
        """Initialise ``module`` and its descendants that match, then record the init info."""

        def visit(m: nn.Module) -> None:
            if self.wholemodule or layer_matches(m, self.layer):
                self._fill(m)

        module.apply(visit)
        if INIT_INFO_ATTR in module.__dict__:
            update_init_info(module, init_info=self._get_init_info())


@WEIGHT_INITIALIZERS.register_module(name="Constant")
class ConstantInit(BaseInit):
    """Fill weights with ``val`` (see :func:`~fengine.model.constant_init`)."""

    def __init__(self, val: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.val = val

    def _fill(self, module: nn.Module) -> None:
        constant_init(module, self.val, self.bias)

    def _get_init_info(self) -> str:
        return f"{type(self).__name__}: val={self.val}, bias={self.bias}"


@WEIGHT_INITIALIZERS.register_module(name="Xavier")
class XavierInit(BaseInit):
    """Glorot initialisation (see :func:`~fengine.model.xavier_init`)."""

    def __init__(self, gain: float = 1, distribution: str = "normal", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        check_distribution(distribution)
        self.gain = gain
        self.distribution = distribution

    def _fill(self, module: nn.Module) -> None:
        xavier_init(module, self.gain, self.bias, self.distribution)  # type: ignore[arg-type]

    def _get_init_info(self) -> str:
        return f"{type(self).__name__}: gain={self.gain}, distribution={self.distribution}, bias={self.bias}"


@WEIGHT_INITIALIZERS.register_module(name="Normal")
class NormalInit(BaseInit):
    """Normal initialisation (see :func:`~fengine.model.normal_init`)."""

    def __init__(self, mean: float = 0, std: float = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mean = mean
        self.std = std

    def _fill(self, module: nn.Module) -> None:
        normal_init(module, self.mean, self.std, self.bias)

    def _get_init_info(self) -> str:
        return f"{type(self).__name__}: mean={self.mean}, std={self.std}, bias={self.bias}"


@WEIGHT_INITIALIZERS.register_module(name="TruncNormal")
class TruncNormalInit(BaseInit):
    """Truncated normal initialisation (see :func:`~fengine.model.trunc_normal_init`)."""

    def __init__(
        self, mean: float = 0, std: float = 1, a: float = -2, b: float = 2, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.mean = mean
        self.std = std
        self.a = a
        self.b = b

    def _fill(self, module: nn.Module) -> None:
        trunc_normal_init(module, self.mean, self.std, self.a, self.b, self.bias)

    def _get_init_info(self) -> str:
        return (
            f"{type(self).__name__}: a={self.a}, b={self.b}, mean={self.mean}, std={self.std}, "
            f"bias={self.bias}"
        )


@WEIGHT_INITIALIZERS.register_module(name="Uniform")
class UniformInit(BaseInit):
    """Uniform initialisation (see :func:`~fengine.model.uniform_init`)."""

    def __init__(self, a: float = 0, b: float = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.a = a
        self.b = b

    def _fill(self, module: nn.Module) -> None:
        uniform_init(module, self.a, self.b, self.bias)

    def _get_init_info(self) -> str:
        return f"{type(self).__name__}: a={self.a}, b={self.b}, bias={self.bias}"


@WEIGHT_INITIALIZERS.register_module(name="Kaiming")
class KaimingInit(BaseInit):
    """He initialisation (see :func:`~fengine.model.kaiming_init`)."""

    def __init__(
        self,
        a: float = 0,
        mode: str = "fan_out",
        nonlinearity: str = "relu",
        distribution: str = "normal",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_distribution(distribution)
        self.a = a
        self.mode = mode
        self.nonlinearity = nonlinearity
        self.distribution = distribution

    def _fill(self, module: nn.Module) -> None:
        kaiming_init(module, self.a, self.mode, self.nonlinearity, self.bias, self.distribution)  # type: ignore[arg-type]

    def _get_init_info(self) -> str:
        return (
            f"{type(self).__name__}: a={self.a}, mode={self.mode}, nonlinearity={self.nonlinearity}, "
            f"distribution={self.distribution}, bias={self.bias}"
        )


@WEIGHT_INITIALIZERS.register_module(name="Caffe2Xavier")
class Caffe2XavierInit(KaimingInit):
    """Caffe2's "Xavier": Kaiming uniform with ``a=1``, ``fan_in``, ``leaky_relu``."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            a=1, mode="fan_in", nonlinearity="leaky_relu", distribution="uniform", **kwargs
        )
