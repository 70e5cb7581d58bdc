"""Composition: gradient stages in front of an optimizer (``chain``) and accumulation (``accumulate``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import attrs
import torch
from torch import Tensor

from fengine.core import plain
from fengine.core.optim.base import GradientTransform, Grads, require_optimizer

S = TypeVar("S")


@plain.register("optim.ChainState")
@attrs.frozen(eq=False)
class ChainState:
    """The states of a chain's stages, in order (the optimizer's last)."""

    states: tuple[Any, ...]


def chain(*transforms: GradientTransform[Any]) -> GradientTransform[ChainState]:
    """Run gradient stages, then an optimizer: ``chain(clip_grad_norm(1.0), sgd(0.1))``.

    Each gradient stage (``returns='grads'``) maps the gradients on to the next stage; the last
    stage, an optimizer (``returns='params'``), turns them into new parameters. ``donate`` is
    passed to every stage.

    Args:
        *transforms: zero or more gradient stages followed by exactly one optimizer.

    Returns:
        An optimizer whose state is a :class:`ChainState`.

    Raises:
        TypeError: no stages, a last stage that is not an optimizer, or an optimizer before the
            last position.
    """
    if not transforms:
        raise TypeError("chain(...) must end with an optimizer such as sgd(...), got nothing")
    require_optimizer(transforms[-1], "the last argument of chain(...)")
    stages = transforms[:-1]
    for k, stage in enumerate(stages):
        if not isinstance(stage, GradientTransform) or stage.returns != "grads":
            kind = "an optimizer" if isinstance(stage, GradientTransform) else f"a {type(stage).__name__}"
            raise TypeError(
                f"chain(...) argument {k} is {kind}; only the last argument may be an optimizer, "
                "the others must be gradient stages (returns='grads') such as clip_grad_norm"
            )
    optimizer = transforms[-1]

    def init(params: Mapping[str, Tensor]) -> ChainState:
        return ChainState(tuple(t.init(params) for t in transforms))

    def update(
        grads: Grads, state: ChainState, params: Mapping[str, Tensor], *, donate: bool = False
    ) -> tuple[dict[str, Tensor], ChainState]:
        new_states = []
        for stage, stage_state in zip(stages, state.states):
            grads, stage_state = stage.update(grads, stage_state, params, donate=donate)
            new_states.append(stage_state)
        new_params, last_state = optimizer.update(grads, state.states[-1], params, donate=donate)
        new_states.append(last_state)
        return new_params, ChainState(tuple(new_states))

    return GradientTransform(init, update)


@plain.register("optim.AccumState")
@attrs.frozen(eq=False)
class AccumState(Generic[S]):
    """Gradient accumulation in progress.

    Attributes:
        count: micro-steps taken since the last real update (0 ≤ count < every).
        acc: the running gradient sums by name, or ``None`` at the start of a group. A state
            returned by a pure call may share tensors with that call's gradients.
        inner: the wrapped optimizer's state.
    """

    count: int
    acc: Mapping[str, Tensor] | None
    inner: S


def _add(acc: Mapping[str, Tensor] | None, grads: Grads, donate: bool) -> dict[str, Tensor]:
    if acc is None:
        return {n: g for n, g in grads.items() if g is not None}
    out = dict(acc)
    both = [n for n, g in grads.items() if g is not None and n in acc]
    out.update((n, g) for n, g in grads.items() if g is not None and n not in acc)
    if both:
        sums = [acc[n] for n in both]
        new = [grads[n] for n in both]
        if donate:
            # Addition commutes exactly, so the donated gradient can hold ``acc + g``.
            torch._foreach_add_(new, sums)  # type: ignore[arg-type]
        else:
            new = list(torch._foreach_add(sums, new))  # type: ignore[arg-type]
        out.update(zip(both, new))  # type: ignore[arg-type]
    return out


def accumulate(tx: GradientTransform[S], every: int, *, average: bool = True) -> GradientTransform[AccumState[S]]:
    """Sum the gradients of ``every`` micro-steps, then take one step of ``tx``.

    The first ``every - 1`` calls only accumulate (the returned parameters are the input
    tensors); the ``every``-th passes the sum — divided by ``every`` when ``average`` — to
    ``tx`` and starts a new group. A name whose gradient is ``None`` in a micro-step simply
    adds nothing. MMEngine's last, shorter group of an epoch (divided by the remainder) is the
    :class:`~fengine.optim.OptimWrapper`'s business: it scales the loss instead.

    Args:
        tx: the optimizer to step.
        every: micro-steps per update, ≥ 1.
        average: divide the summed gradients by ``every`` (the mean gradient) before the step.

    Returns:
        An optimizer whose state is an :class:`AccumState`.

    Raises:
        TypeError: ``tx`` is not an optimizer.
        ValueError: ``every`` < 1.
    """
    require_optimizer(tx, "accumulate(tx)")
    if not isinstance(every, int) or every < 1:
        raise ValueError(f"every must be an int >= 1, got every={every!r}")

    def init(params: Mapping[str, Tensor]) -> AccumState[S]:
        return AccumState(0, None, tx.init(params))

    def update(
        grads: Grads, state: AccumState[S], params: Mapping[str, Tensor], *, donate: bool = False
    ) -> tuple[dict[str, Tensor], AccumState[S]]:
        with torch.no_grad():
            acc = _add(state.acc, grads, donate)
            if state.count + 1 < every:
                return dict(params), AccumState(state.count + 1, acc, state.inner)
            summed: dict[str, Tensor | None] = dict(acc)
            if average and every > 1 and acc:
                names = list(acc)
                # Out of place: the sums may share tensors with an earlier pure call's gradients.
                summed = dict(zip(names, torch._foreach_div([acc[n] for n in names], float(every))))
        new_params, inner = tx.update(summed, state.inner, params, donate=donate)
        return new_params, AccumState(0, None, inner)

    return GradientTransform(init, update)
