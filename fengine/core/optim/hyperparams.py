"""Read and replace the hyper-parameters held in an optimizer state (what schedules move)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import attrs
from torch import Tensor

from fengine.core.optim.adam import AdamState
from fengine.core.optim.base import ParamGroup, evolve_hyper
from fengine.core.optim.clip import ClipNormState
from fengine.core.optim.compose import AccumState, ChainState
from fengine.core.optim.sgd import SGDState

T = TypeVar("T")
OptimizerState = SGDState | AdamState


def _map_optimizers(state: T, fn: Callable[[OptimizerState], OptimizerState]) -> T:
    """``state`` with ``fn`` applied to every optimizer state inside it (chains, accumulation)."""
    if isinstance(state, (SGDState, AdamState)):
        return fn(state)  # type: ignore[return-value]
    if isinstance(state, ChainState):
        return ChainState(tuple(_map_optimizers(s, fn) for s in state.states))  # type: ignore[return-value]
    if isinstance(state, AccumState):
        return attrs.evolve(state, inner=_map_optimizers(state.inner, fn))
    return state


def _find(state: object, kind: type[T] | tuple[type, ...]) -> list[Any]:
    """The records of type ``kind`` in ``state``, looking through chains and accumulation."""
    if isinstance(state, kind):
        return [state]
    if isinstance(state, ChainState):
        return [found for inner in state.states for found in _find(inner, kind)]
    if isinstance(state, AccumState):
        return _find(state.inner, kind)
    return []


def hyperparams(state: object) -> tuple[dict[str, Any], ...]:
    """Each param group's hyper-parameters, as dicts (``lr``, ``momentum``/``betas``, ...).

    Looks through :func:`chain` and :func:`accumulate` states to the optimizer's state.

    Args:
        state: an optimizer state, or a state that contains one.

    Returns:
        One dict per param group, in group order.

    Raises:
        ValueError: ``state`` holds no optimizer state.
    """
    found = _find(state, (SGDState, AdamState))
    if not found:
        raise ValueError(f"no optimizer param groups in a {type(state).__name__}")
    return tuple(attrs.asdict(g.hyper, recurse=False) for g in found[0].groups)


def set_hyperparams(state: T, *, group: int | None = None, **values: Any) -> T:
    """A new state whose param groups carry new hyper-parameter values.

    ``set_hyperparams(state, lr=0.01)`` sets every group; ``group=1`` only the second. Nothing
    is validated beyond the names (this runs on the hot path of a schedule).

    Args:
        state: an optimizer state, or a state that contains one (chains, accumulation).
        group: the index of the one group to change, or ``None`` for all.
        **values: hyper-parameter name → new value (``lr``, ``momentum``, ``betas``, ...).

    Returns:
        The new state; tensors are shared with ``state``.

    Raises:
        ValueError: ``state`` holds no optimizer state.
        KeyError: an unknown hyper-parameter name (the accepted ones are listed).
        IndexError: ``group`` out of range.
    """
    if not _find(state, (SGDState, AdamState)):
        raise ValueError(f"no optimizer param groups in a {type(state).__name__}")

    def change(opt: OptimizerState) -> OptimizerState:
        old: tuple[ParamGroup[Any], ...] = opt.groups
        if group is not None and not -len(old) <= group < len(old):
            raise IndexError(f"group={group} is out of range: the state has {len(old)} param groups")
        groups = tuple(
            attrs.evolve(g, hyper=evolve_hyper(g.hyper, values, "set_hyperparams"))
            if group is None or k == group % len(old)
            else g
            for k, g in enumerate(old)
        )
        return attrs.evolve(opt, groups=groups)  # type: ignore[arg-type]

    return _map_optimizers(state, change)


def grad_norm(state: object) -> Tensor | None:
    """The total gradient norm recorded by the first ``clip_grad_norm`` stage inside ``state``.

    Args:
        state: a :class:`ClipNormState` or a state containing one.

    Returns:
        A 0-dim tensor (before clipping), or ``None`` if there is no such stage or it has not
        run yet.
    """
    found = _find(state, ClipNormState)
    return found[0].total_norm if found else None
