"""The EMA state record and the lookups that line a source's tensors up with it.

Every other module of :mod:`fengine.core.ema` reads states and sources through these, so they
sit at the bottom of the package, importing nothing else of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs
from torch import Tensor

from fengine.core import plain

#: Tensors by ``state_dict`` name; never mutated in place (a new mapping is a new value).
TensorDict = Mapping[str, Tensor]


class _PlanSlot:
    """One private slot, outside the record's fields: not compared, copied, evolved or saved.

    Donated updates keep their :class:`~fengine.core.ema.plan.Plan` there
    (:mod:`fengine.core.ema.plan` alone sets and reads it).
    """

    __slots__ = ("_plan",)
    _plan: object


@plain.register("ema.EMAState")
@attrs.frozen(eq=False)
class EMAState(_PlanSlot):
    """The averaged tensors and the number of updates so far.

    Args:
        params: averaged parameters, ``named_parameters()`` names.
        buffers: the buffers (averaged when the averager's ``update_buffers``, else copies).
        steps: ``update`` calls so far (MMEngine's ``steps`` buffer, as a Python int).
    """

    params: TensorDict
    buffers: TensorDict = attrs.field(factory=dict)
    steps: int = 0


def lookup(source: TensorDict, like: TensorDict, what: str) -> list[Tensor]:
    """``source``'s tensors in ``like``'s order.

    Args:
        source: the source's tensors by name.
        like: the averaged tensors whose names (and order) to follow.
        what: ``'params'`` or ``'buffers'``, for the error message.

    Returns:
        The source tensors themselves, one per name of ``like``.

    Raises:
        KeyError: a name of ``like`` is missing from ``source`` (named, with ``like``'s names).
    """
    try:
        return [source[name] for name in like]
    except KeyError as error:
        raise KeyError(
            f"source {what} lack {error.args[0]!r}, which the averaged state holds "
            f"(averaged names: {list(like)})"
        ) from None


def matched(srcs: list[Tensor], avgs: Iterable[Tensor]) -> list[Tensor]:
    """``srcs`` on ``avgs``' devices and dtypes (converted copies where they differ).

    Args:
        srcs: source tensors.
        avgs: the averages they pair with, in the same order.

    Returns:
        Each source itself where it already matches its average, else a converted copy.
    """
    return [
        s if s.device == a.device and s.dtype == a.dtype else s.to(a.device, a.dtype)
        for s, a in zip(srcs, avgs)
    ]


def gather(source: TensorDict, like: TensorDict, what: str) -> list[Tensor]:
    """``source``'s tensors in ``like``'s order, on ``like``'s devices and dtypes.

    Args:
        source: the source's tensors by name.
        like: the averaged tensors whose names, order, devices and dtypes to follow.
        what: ``'params'`` or ``'buffers'``, for the error message.

    Returns:
        :func:`lookup`'s tensors passed through :func:`matched`.

    Raises:
        KeyError: a name of ``like`` is missing from ``source``.
    """
    return matched(lookup(source, like, what), like.values())


def copied(avgs: list[Tensor], srcs: list[Tensor]) -> list[Tensor]:
    """New copies of ``srcs`` in ``avgs``' dtypes and devices.

    Args:
        avgs: the averages giving each copy's dtype and device.
        srcs: the tensors to copy, in the same order.

    Returns:
        Fresh tensors (never ``srcs`` themselves, even where nothing is converted).
    """
    return [s.to(device=a.device, dtype=a.dtype, copy=True) for a, s in zip(avgs, srcs)]
