"""The donated-update plan cache: a state's tensors aligned with a live source's, reused in place.

A donated update (``donate=True``) keeps the state's mappings and remembers, beside the state,
its tensors aligned with the source's (:class:`Plan`): while the same source mappings come back
(a live model's, every iteration), an update is one foreach average plus one foreach copy of the
entries that track the source, with no per-name work. It is separate from the pure path
(:mod:`fengine.core.ema.base`) because it alone writes tensors in place and memoises.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs
import torch
from torch import Tensor

from fengine.core.ema.record import EMAState, TensorDict, lookup, matched
from fengine.core.optim.base import without_grad
from fengine.core.tree import is_dtensor

#: ``average(avgs, srcs, steps, donate) -> new avgs``: an averager's bound ``average`` method.
AverageFn = Callable[[list[Tensor], list[Tensor], int, bool], list[Tensor]]

_Pair = tuple[list[Tensor], list[Tensor]]


@attrs.frozen(eq=False)
class Plan:
    """A state's tensors aligned with one source's, which donated updates reuse.

    It hangs on the state (in :class:`~fengine.core.ema.record.EMAState`'s private slot) and
    donated updates pass it on with the state's unchanged mappings, so it always matches the
    averages it holds; it is used again only for the very same source mappings
    (``params``/``buffers``, by identity) and ``update_buffers``. New source mappings (another
    model, refreshed references) or a state with new mappings (``init``,
    :func:`~fengine.core.ema.state_dict.load_weights`, a restored checkpoint) build a new one.
    Mappings are never mutated in place (the library's rule for every ``TensorDict``).

    Args:
        params: the source parameter mapping it was built for.
        buffers: the source buffer mapping it was built for (``None`` if none was passed).
        update_buffers: whether floating-point buffers are among ``averaged``.
        convert: whether a source differs in device or dtype from its average (the sources
            are then converted at every update, as the pure path does).
        every: each average and its source, parameters then buffers.
        averaged: the entries an averaging update averages (floating-point ones).
        tracked: the entries copied from the source at every update.
    """

    params: TensorDict
    buffers: TensorDict | None
    update_buffers: bool | None
    convert: bool
    every: _Pair
    averaged: _Pair
    tracked: _Pair


def plan_for(
    state: EMAState, params: TensorDict, buffers: TensorDict | None, update_buffers: bool | None
) -> Plan:
    """The state's plan for these sources: its cached one when it still applies, else a new one.

    Args:
        state: the state to update.
        params: the source's parameters.
        buffers: the source's buffers (``None`` if none were passed).
        update_buffers: whether floating-point buffers are averaged (``None``: any split will
            do, as for a copy).

    Returns:
        The plan (not yet attached to any state; :func:`donated` attaches it).

    Raises:
        KeyError: a name of the state is missing from the source.
    """
    plan: Plan | None = getattr(state, "_plan", None)  # unset on states no donation made
    if (
        plan is not None
        and plan.params is params
        and plan.buffers is buffers
        and (update_buffers is None or plan.update_buffers is update_buffers)
    ):
        return plan
    avgs = [*state.params.values(), *state.buffers.values()]
    srcs = lookup(params, state.params, "params")
    srcs += lookup(buffers or {}, state.buffers, "buffers")
    count = len(state.params)
    averaged = [
        i for i, a in enumerate(avgs) if a.is_floating_point() and (i < count or update_buffers)
    ]
    tracked = sorted(set(range(len(avgs))) - set(averaged))
    convert = any(s.device != a.device or s.dtype != a.dtype for s, a in zip(srcs, avgs))
    return Plan(
        params,
        buffers,
        update_buffers,
        convert,
        (avgs, srcs),
        ([avgs[i] for i in averaged], [srcs[i] for i in averaged]),
        ([avgs[i] for i in tracked], [srcs[i] for i in tracked]),
    )


def donated(
    state: EMAState, plan: Plan, mode: str, steps: int, average: AverageFn | None, new_steps: int
) -> EMAState:
    """One update (or sync) in place on ``plan``'s tensors; the state's mappings are kept.

    Args:
        state: the state whose tensors ``plan`` holds (never read again by the caller).
        plan: from :func:`plan_for`.
        mode: ``'copy'``, ``'average'`` or ``'keep'`` (the stepping rule of
            :mod:`fengine.core.ema`).
        steps: the counter before this update, passed to ``average``.
        average: the averager's ``average`` (``None`` for a copy).
        new_steps: the returned state's ``steps``.

    Returns:
        A new record over the same mappings, carrying ``plan`` in its private slot.

    Raises:
        ValueError: a source tensor changed device or dtype in place since ``plan`` was built.
    """
    try:
        without_grad(_apply, plan, mode, steps, average)
    except RuntimeError as error:
        _raise_if_moved(state, plan, error)
        raise
    new = EMAState(state.params, state.buffers, new_steps)
    object.__setattr__(new, "_plan", plan)  # a memo beside the record, not one of its fields
    return new


def _apply(plan: Plan, mode: str, steps: int, average: AverageFn | None) -> None:
    if mode == "copy":
        _copy_into(plan.every, plan.convert)
        return
    avgs, srcs = plan.averaged
    if mode == "average" and avgs and average is not None:
        average(avgs, matched(srcs, avgs) if plan.convert else srcs, steps, True)
    _copy_into(plan.tracked, plan.convert)


def _raise_if_moved(state: EMAState, plan: Plan, error: RuntimeError) -> None:
    """Explain a failed donated update whose sources changed device or dtype in place."""
    if plan.convert:  # sources are converted at every update: a move cannot break it
        return
    for name, avg, src in zip([*state.params, *state.buffers], *plan.every):
        if src.device != avg.device or src.dtype != avg.dtype:
            raise ValueError(
                f"source tensor {name!r} is now {src.dtype} on {src.device}, but was "
                f"{avg.dtype} on {avg.device} when these source mappings were first averaged "
                "(converted in place, e.g. by module.half()); the average may be partly "
                "updated. Pass new source mappings after converting a model"
            ) from error


def _copy_into(pair: _Pair, convert: bool) -> None:
    avgs, srcs = pair
    if not avgs:
        return
    sources = matched(srcs, avgs) if convert else srcs
    if is_dtensor(avgs[0]):  # FSDP shards: DTensor has no foreach copy
        for avg, src in zip(avgs, sources):
            avg.copy_(src)
    else:
        torch._foreach_copy_(avgs, sources)
