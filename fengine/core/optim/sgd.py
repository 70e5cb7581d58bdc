"""Stochastic gradient descent as a pure transform, bit-identical to ``torch.optim.SGD``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import attrs
import torch
from torch import Tensor

from fengine.core import plain
from fengine.core.optim.base import (
    GradientTransform,
    Grads,
    ParamGroup,
    Tensors,
    build_groups,
    check_nonnegative,
    gather,
    is_none,
    scatter,
    with_grads,
    without_grad,
)


@plain.register("optim.SGDHyper")
@attrs.frozen
class SGDHyper:
    """One group's SGD hyper-parameters (the keys of a ``torch.optim.SGD`` param group)."""

    lr: float
    momentum: float = 0.0
    dampening: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False
    maximize: bool = False


@plain.register("optim.SGDState")
@attrs.frozen(eq=False)
class SGDState:
    """What the next SGD step needs.

    Attributes:
        names: the parameter names, in order; every tuple below is aligned with it.
        groups: the parameter groups and their hyper-parameters.
        momentum_buffer: per parameter, its momentum buffer, or ``None`` before its first
            gradient (the first step then starts the buffer from the gradient, as torch does).
    """

    names: tuple[str, ...]
    groups: tuple[ParamGroup[SGDHyper], ...]
    momentum_buffer: tuple[Tensor | None, ...]




def _check(hyper: SGDHyper) -> None:
    check_nonnegative(hyper, "lr", "momentum", "weight_decay")
    if hyper.nesterov and (hyper.momentum <= 0 or hyper.dampening != 0):
        raise ValueError(
            "nesterov=True requires momentum > 0 and dampening == 0, "
            f"got momentum={hyper.momentum!r}, dampening={hyper.dampening!r}"
        )


def _next_buffer(buf: Tensor | None, grad: Tensor, momentum: float, dampening: float, donate: bool) -> Tensor:
    # torch's own per-tensor path for a bucket where some buffers do not exist yet.
    if buf is None:
        return grad.detach().clone()
    moved = buf.mul_(momentum) if donate else buf.mul(momentum)
    return moved.add_(grad, alpha=1 - dampening)


def _step_bucket(
    h: SGDHyper, ps: Tensors, gs: Tensors, bs: Sequence[Tensor | None], donate: bool
) -> tuple[Tensors, Tensors | None]:
    """The bucket's new parameters and new momentum buffers (``None``: the same tensors)."""
    owned = donate  # may ``gs`` be written in place?
    if h.maximize:
        if owned:
            torch._foreach_neg_(gs)
        else:
            gs = torch._foreach_neg(gs)
        owned = True
    if h.weight_decay != 0:
        if owned:
            torch._foreach_add_(gs, ps, alpha=h.weight_decay)
        else:
            gs = torch._foreach_add(gs, ps, alpha=h.weight_decay)
        owned = True
    new_bufs: Tensors | None = None
    if h.momentum != 0:
        if any(map(is_none, bs)):
            full: Tensors = [_next_buffer(b, g, h.momentum, h.dampening, donate) for b, g in zip(bs, gs)]
            new_bufs = full
        else:
            full = cast(Tensors, bs)
            if donate:
                torch._foreach_mul_(full, h.momentum)
            else:
                full = new_bufs = torch._foreach_mul(full, h.momentum)
            torch._foreach_add_(full, gs, alpha=1 - h.dampening)
        if h.nesterov:
            if owned:
                torch._foreach_add_(gs, full, alpha=h.momentum)
            else:
                gs = torch._foreach_add(gs, full, alpha=h.momentum)
        else:
            gs = full
    if donate:
        torch._foreach_add_(ps, gs, alpha=-h.lr)
        return ps, new_bufs
    return torch._foreach_add(ps, gs, alpha=-h.lr), new_bufs


def _step(
    state: SGDState, plist: list[Tensor], glist: list[Tensor | None], donate: bool
) -> tuple[list[Tensor], tuple[Tensor | None, ...]]:
    """New parameters (aligned with ``names``) and buffers; ``state``'s own tuple if unchanged."""
    bufs = state.momentum_buffer
    changed: list[Tensor | None] | None = None
    out = plist if donate else list(plist)
    for group in state.groups:
        for bucket in group.buckets:
            idx = with_grads(bucket, glist)
            if not idx:
                continue
            ps = cast(Tensors, gather(plist, idx))
            gs = cast(Tensors, gather(glist, idx))
            new, new_bufs = _step_bucket(group.hyper, ps, gs, gather(bufs, idx), donate)
            if not donate:  # donated, ``new`` holds the very tensors of ``plist``
                scatter(out, idx, new)
            if new_bufs is not None:
                if changed is None:
                    changed = list(bufs)
                scatter(changed, idx, new_bufs)
    return out, bufs if changed is None else tuple(changed)


def _update(
    grads: Grads, state: SGDState, params: Mapping[str, Tensor], *, donate: bool = False
) -> tuple[dict[str, Tensor], SGDState]:
    names = state.names
    plist = list(map(params.__getitem__, names))
    out, bufs = without_grad(_step, state, plist, list(map(grads.get, names)), donate)
    new_params = dict(params)
    if not donate:  # donated, ``out`` holds the very tensors of ``params``
        new_params.update(zip(names, out))
    # Donated with every buffer already there, nothing in the record changed: keep it.
    return new_params, state if bufs is state.momentum_buffer else SGDState(names, state.groups, bufs)


def sgd(
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
    *,
    param_groups: Sequence[Mapping[str, Any]] | None = None,
) -> GradientTransform[SGDState]:
    """SGD with momentum, dampening, Nesterov, L2 weight decay and maximize, as ``torch.optim.SGD``.

    Per parameter with gradient ``g`` (negated if ``maximize``): ``g += weight_decay * p``;
    with momentum, ``b = g`` on the first step and ``b = momentum * b + (1 - dampening) * g``
    after; ``g = g + momentum * b`` (Nesterov) or ``g = b``; then ``p = p - lr * g``. The ops
    follow ``torch.optim.SGD(foreach=True)`` one by one, so parameters and buffers are
    bit-identical to it (and to ``foreach=False`` on CPU). Parameters without a gradient are
    left untouched, buffers included.

    Args:
        lr: learning rate.
        momentum: momentum factor.
        dampening: dampening of the momentum.
        weight_decay: L2 penalty added to the gradient.
        nesterov: Nesterov momentum (needs ``momentum > 0`` and ``dampening == 0``).
        maximize: maximise the objective instead of minimising it.
        param_groups: optional torch-style groups, ``[{'params': [names...], 'lr': ...}]``;
            each overrides the arguments above for its parameters. Every parameter must be in
            exactly one group.

    Returns:
        The optimizer (a :class:`GradientTransform`); its state is an :class:`SGDState`.

    Raises:
        ValueError: a negative ``lr``, ``momentum`` or ``weight_decay``, or Nesterov without
            momentum or with dampening (checked here and for each group at ``init``).
    """
    default = SGDHyper(lr, momentum, dampening, weight_decay, nesterov, maximize)
    _check(default)
    specs = None if param_groups is None else [dict(spec) for spec in param_groups]

    def init(params: Mapping[str, Tensor]) -> SGDState:
        names = tuple(params)
        groups = build_groups(names, params, default, specs, _check)
        return SGDState(names, groups, (None,) * len(names))

    return GradientTransform(init, _update)
