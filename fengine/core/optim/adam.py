"""Adam and AdamW as pure transforms, bit-identical to ``torch.optim.Adam``/``AdamW``."""

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


@plain.register("optim.AdamHyper")
@attrs.frozen
class AdamHyper:
    """One group's Adam hyper-parameters (the keys of a ``torch.optim.Adam`` param group).

    ``decoupled_weight_decay=True`` is AdamW: the parameter shrinks by ``1 - lr * weight_decay``
    instead of the decay being added to the gradient.
    """

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    amsgrad: bool = False
    maximize: bool = False
    decoupled_weight_decay: bool = False


@plain.register("optim.AdamState")
@attrs.frozen(eq=False)
class AdamState:
    """What the next Adam step needs; every tuple is aligned with ``names``.

    Attributes:
        names: the parameter names, in order.
        groups: the parameter groups and their hyper-parameters.
        count: per parameter, how many steps it has taken (torch's ``state['step']``); the
            bias corrections use it, and 0 means its moments do not exist yet.
        exp_avg: first moments (``None`` before the parameter's first step).
        exp_avg_sq: second moments (``None`` before the first step).
        max_exp_avg_sq: running maxima of the second moments (``None`` unless ``amsgrad``).
    """

    names: tuple[str, ...]
    groups: tuple[ParamGroup[AdamHyper], ...]
    count: tuple[int, ...]
    exp_avg: tuple[Tensor | None, ...]
    exp_avg_sq: tuple[Tensor | None, ...]
    max_exp_avg_sq: tuple[Tensor | None, ...]


def _check(hyper: AdamHyper) -> None:
    check_nonnegative(hyper, "lr", "eps", "weight_decay")
    for k, beta in enumerate(hyper.betas):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"betas[{k}] must be in [0, 1), got betas={hyper.betas!r}")


def _moments(found: Sequence[Tensor | None], ps: Tensors, donate: bool) -> tuple[Tensors, bool]:
    """The bucket's moment tensors (zeros where none exist yet) and whether they may be written."""
    if not any(map(is_none, found)):
        return cast(Tensors, found), donate
    fresh = all(map(is_none, found))
    tensors = [
        t if t is not None else torch.zeros_like(p, memory_format=torch.preserve_format)
        for t, p in zip(found, ps)
    ]
    return tensors, donate or fresh


def _corrections(h: AdamHyper, counts: list[int]) -> tuple[list[float], list[float]]:
    # Python floats in torch's exact expressions; computed once when all counts agree.
    beta1, beta2 = h.betas
    if counts.count(counts[0]) == len(counts):
        c = counts[0]
        return [(h.lr / (1 - beta1**c)) * -1] * len(counts), [(1 - beta2**c) ** 0.5] * len(counts)
    return [(h.lr / (1 - beta1**c)) * -1 for c in counts], [(1 - beta2**c) ** 0.5 for c in counts]


def _step_bucket(h: AdamHyper, idx: Sequence[int], plist: list[Tensor], glist: list[Tensor | None],
                 st: tuple[list[Any], ...], out: list[Tensor], donate: bool) -> None:
    """One foreach pass over the bucket's ``idx``; new tensors and counts go to ``st`` and ``out``."""
    count, exp_avg, exp_avg_sq, max_exp_avg_sq = st
    ps = cast(Tensors, gather(plist, idx))
    gs = cast(Tensors, gather(glist, idx))
    beta1, beta2 = h.betas
    grads_owned, params_owned = donate, donate
    if h.maximize:
        if grads_owned:
            torch._foreach_neg_(gs)
        else:
            gs = torch._foreach_neg(gs)
        grads_owned = True
    counts = [c + 1 for c in gather(count, idx)]
    if h.weight_decay != 0:
        if h.decoupled_weight_decay:
            if params_owned:
                torch._foreach_mul_(ps, 1 - h.lr * h.weight_decay)
            else:
                ps = torch._foreach_mul(ps, 1 - h.lr * h.weight_decay)
            params_owned = True
        elif grads_owned:
            torch._foreach_add_(gs, ps, alpha=h.weight_decay)
        else:
            gs = torch._foreach_add(gs, ps, alpha=h.weight_decay)
    avg, writable = _moments(gather(exp_avg, idx), ps, donate)
    if writable:
        torch._foreach_lerp_(avg, gs, 1 - beta1)
    else:
        avg = torch._foreach_lerp(avg, gs, 1 - beta1)
    sq, writable = _moments(gather(exp_avg_sq, idx), ps, donate)
    if writable:
        torch._foreach_mul_(sq, beta2)
    else:
        sq = torch._foreach_mul(sq, beta2)
    torch._foreach_addcmul_(sq, gs, gs, 1 - beta2)
    del gs
    step_size, bias_correction2_sqrt = _corrections(h, counts)
    if h.amsgrad:
        peak, writable = _moments(gather(max_exp_avg_sq, idx), ps, donate)
        if writable:
            torch._foreach_maximum_(peak, sq)
        else:
            peak = torch._foreach_maximum(peak, sq)
        denom = torch._foreach_sqrt(peak)
        scatter(max_exp_avg_sq, idx, peak)
    else:
        denom = torch._foreach_sqrt(sq)
    torch._foreach_div_(denom, bias_correction2_sqrt)
    torch._foreach_add_(denom, h.eps)
    if params_owned:
        torch._foreach_addcdiv_(ps, avg, denom, step_size)
    else:
        ps = torch._foreach_addcdiv(ps, avg, denom, step_size)
    if not donate:  # donated, ``ps`` holds the very tensors of ``plist``
        scatter(out, idx, ps)
    scatter(count, idx, counts)
    scatter(exp_avg, idx, avg)
    scatter(exp_avg_sq, idx, sq)


def _step(state: AdamState, plist: list[Tensor], glist: list[Tensor | None], donate: bool) -> tuple[list[Tensor], AdamState]:
    st = (list(state.count), list(state.exp_avg), list(state.exp_avg_sq), list(state.max_exp_avg_sq))
    out = plist if donate else list(plist)
    for group in state.groups:
        for bucket in group.buckets:
            idx = with_grads(bucket, glist)
            if idx:
                _step_bucket(group.hyper, idx, plist, glist, st, out, donate)
    count, exp_avg, exp_avg_sq, max_exp_avg_sq = st
    new_state = AdamState(
        state.names, state.groups, tuple(count), tuple(exp_avg), tuple(exp_avg_sq), tuple(max_exp_avg_sq)
    )
    return out, new_state


def _update(
    grads: Grads, state: AdamState, params: Mapping[str, Tensor], *, donate: bool = False
) -> tuple[dict[str, Tensor], AdamState]:
    names = state.names
    plist = list(map(params.__getitem__, names))
    out, new_state = without_grad(_step, state, plist, list(map(grads.get, names)), donate)
    new_params = dict(params)
    if not donate:  # donated, ``out`` holds the very tensors of ``params``
        new_params.update(zip(names, out))
    return new_params, new_state


def _adam(default: AdamHyper, param_groups: Sequence[Mapping[str, Any]] | None) -> GradientTransform[AdamState]:
    _check(default)
    specs = None if param_groups is None else [dict(spec) for spec in param_groups]

    def init(params: Mapping[str, Tensor]) -> AdamState:
        names = tuple(params)
        groups = build_groups(names, params, default, specs, _check)
        empty: tuple[Tensor | None, ...] = (None,) * len(names)
        return AdamState(names, groups, (0,) * len(names), empty, empty, empty)

    return GradientTransform(init, _update)


def adam(
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    maximize: bool = False,
    *,
    param_groups: Sequence[Mapping[str, Any]] | None = None,
) -> GradientTransform[AdamState]:
    """Adam (Kingma & Ba, 2015) with L2 weight decay and AMSGrad, as ``torch.optim.Adam``.

    Per parameter at its step ``t`` with gradient ``g`` (negated if ``maximize``, plus
    ``weight_decay * p``): ``m = lerp(m, g, 1 - beta1)``, ``v = beta2 * v + (1 - beta2) g²``
    (``v̂ = max(v̂, v)`` with AMSGrad), and
    ``p = p - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)``. The ops follow
    ``torch.optim.Adam(foreach=True)`` one by one, so the results are bit-identical to it (and
    to ``foreach=False`` on CPU). Parameters without a gradient are skipped, counters included.

    Args:
        lr: learning rate.
        betas: decay rates of the first and second moments, each in [0, 1).
        eps: added to the denominator.
        weight_decay: L2 penalty added to the gradient.
        amsgrad: use the running maximum of the second moment.
        maximize: maximise the objective.
        param_groups: optional torch-style groups, ``[{'params': [names...], 'lr': ...}]``.

    Returns:
        The optimizer (a :class:`GradientTransform`); its state is an :class:`AdamState`.

    Raises:
        ValueError: a negative ``lr``, ``eps`` or ``weight_decay``, or a beta outside [0, 1).
    """
    return _adam(AdamHyper(lr, betas, eps, weight_decay, amsgrad, maximize, False), param_groups)


def adamw(
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    amsgrad: bool = False,
    maximize: bool = False,
    *,
    param_groups: Sequence[Mapping[str, Any]] | None = None,
) -> GradientTransform[AdamState]:
    """AdamW (Loshchilov & Hutter, 2019): Adam with decoupled weight decay, as ``torch.optim.AdamW``.

    As :func:`adam`, except that the decay does not enter the gradient: each step first scales
    the parameter by ``1 - lr * weight_decay``. Bit-identical to ``torch.optim.AdamW``.

    Args:
        lr: learning rate.
        betas: decay rates of the first and second moments, each in [0, 1).
        eps: added to the denominator.
        weight_decay: decoupled decay coefficient.
        amsgrad: use the running maximum of the second moment.
        maximize: maximise the objective.
        param_groups: optional torch-style groups, ``[{'params': [names...], 'lr': ...}]``.

    Returns:
        The optimizer (a :class:`GradientTransform`); its state is an :class:`AdamState`.

    Raises:
        ValueError: a negative ``lr``, ``eps`` or ``weight_decay``, or a beta outside [0, 1).
    """
    return _adam(AdamHyper(lr, betas, eps, weight_decay, amsgrad, maximize, True), param_groups)
