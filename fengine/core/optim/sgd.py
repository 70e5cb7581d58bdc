"""Stochastic gradient descent as a pure transform, bit-identical to ``torch.optim.SGD``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import attrs
import torch
from torch import Tensor

from fengine.core.optim.base import Grads, ParamGroup, Transform, build_groups, check_nonnegative
from fengine.core.tree import take


@attrs.frozen
class SGDHyper:
    """One group's SGD hyper-parameters (the keys of a ``torch.optim.SGD`` param group)."""

    lr: float
    momentum: float = 0.0
    dampening: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False
    maximize: bool = False


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
    h: SGDHyper,
    idx: list[int],
    params: list[Tensor],
    grads: list[Tensor | None],
    bufs: list[Tensor | None],
    out: list[Tensor],
    donate: bool,
) -> None:
    ps, gs = take(params, idx), take(grads, idx)
    owned = donate  # may ``gs`` be written in place?
    if h.maximize:
        if owned:
            torch._foreach_neg_(gs)
        else:
            gs = list(torch._foreach_neg(gs))
        owned = True
    if h.weight_decay != 0:
        if owned:
            torch._foreach_add_(gs, ps, alpha=h.weight_decay)
        else:
            gs = list(torch._foreach_add(gs, ps, alpha=h.weight_decay))
        owned = True
    if h.momentum != 0:
        bs = [bufs[i] for i in idx]
        if all(b is not None for b in bs):
            full = cast(list[Tensor], bs)
            if donate:
                torch._foreach_mul_(full, h.momentum)
            else:
                full = list(torch._foreach_mul(full, h.momentum))
            torch._foreach_add_(full, gs, alpha=1 - h.dampening)
        else:
            full = [_next_buffer(b, g, h.momentum, h.dampening, donate) for b, g in zip(bs, gs)]
        for j, i in enumerate(idx):
            bufs[i] = full[j]
        if h.nesterov:
            if owned:
                torch._foreach_add_(gs, full, alpha=h.momentum)
            else:
                gs = list(torch._foreach_add(gs, full, alpha=h.momentum))
        else:
            gs = full
    if donate:
        torch._foreach_add_(ps, gs, alpha=-h.lr)
        new = ps
    else:
        new = list(torch._foreach_add(ps, gs, alpha=-h.lr))
    for j, i in enumerate(idx):
        out[i] = new[j]


def _update(
    grads: Grads, state: SGDState, params: Mapping[str, Tensor], *, donate: bool = False
) -> tuple[dict[str, Tensor], SGDState]:
    names = state.names
    plist = [params[n] for n in names]
    glist = [grads.get(n) for n in names]
    bufs = list(state.momentum_buffer)
    out = list(plist)
    with torch.no_grad():
        for group in state.groups:
            for bucket in group.buckets:
                idx = [i for i in bucket if glist[i] is not None]
                if idx:
                    _step_bucket(group.hyper, idx, plist, glist, bufs, out, donate)
    new_params = dict(params)
    new_params.update(zip(names, out))
    return new_params, attrs.evolve(state, momentum_buffer=tuple(bufs))


def sgd(
    lr: float,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    maximize: bool = False,
    *,
    param_groups: Sequence[Mapping[str, Any]] | None = None,
) -> Transform[SGDState]:
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
        The :class:`Transform`; its state is an :class:`SGDState`.

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

    return Transform(init, _update)
