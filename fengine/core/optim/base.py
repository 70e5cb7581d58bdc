"""The transform records and parameter groups shared by every optimizer of ``fengine.core.optim``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from operator import is_
from typing import Any, Generic, Literal, ParamSpec, Protocol, TypeVar

import attrs
import torch
from torch import Tensor

from fengine.core import plain
from fengine.core.tree import group_by_device_dtype

S = TypeVar("S")
H = TypeVar("H")
R = TypeVar("R")
P = ParamSpec("P")

T = TypeVar("T")

#: What ``torch._foreach_*`` ops take and return.
Tensors = list[Tensor] | tuple[Tensor, ...]
#: ``is_none(x)`` is ``x is None``, as a C callable for ``map`` on the hot path.
is_none = partial(is_, None)
# Bound once: each is looked up on every optimizer step.
_grad_enabled = torch.is_grad_enabled
_set_grad_enabled = torch._C._set_grad_enabled

#: Gradients by parameter name; ``None`` (or a missing name) means "no gradient": that parameter
#: is skipped, exactly as ``torch.optim`` skips a parameter whose ``.grad`` is ``None``.
Grads = Mapping[str, "Tensor | None"]


class UpdateFn(Protocol[S]):
    """``update(grads, state, params, *, donate=False) -> (new_params or new_grads, new_state)``."""

    def __call__(
        self, grads: Grads, state: S, params: Mapping[str, Tensor], *, donate: bool = False
    ) -> tuple[dict[str, Tensor], S]: ...


#: What a :class:`GradientTransform`'s ``update`` returns besides the state.
Returns = Literal["params", "grads"]


@attrs.frozen
class GradientTransform(Generic[S]):
    """A stage of an optimizer as two pure functions, after optax's ``GradientTransformation``.

    ``init(params) -> state`` and ``update(grads, state, params, *, donate=False) -> (out,
    state)``. An optimizer (``sgd``, ``adam``, ``chain``, ``accumulate``; ``returns='params'``)
    returns the *new parameters*, computed in ``torch.optim``'s own op order so that they are
    bit-identical to it (where optax returns updates to add). A gradient stage (the clippers;
    ``returns='grads'``) returns new gradients, leaving out the names that had none;
    :func:`~fengine.core.optim.chain` puts such stages in front of one optimizer.

    With ``donate=False`` (the default) nothing ``update`` was handed is written: parameters,
    gradients and state tensors keep their ``_version``. With ``donate=True`` the caller gives
    up all three; they may then be updated in place (an optimizer's returned mapping holds the
    very parameter tensors passed in). Both paths give bit-identical numbers.

    Attributes:
        init: builds the state record from the parameters.
        update: one step.
        returns: ``'params'`` for an optimizer, ``'grads'`` for a gradient stage.
    """

    init: Callable[[Mapping[str, Tensor]], S]
    update: UpdateFn[S]
    returns: Returns = "params"


def require_optimizer(tx: object, where: str) -> None:
    """Raise ``TypeError`` unless ``tx`` is an optimizer (a transform returning parameters).

    Args:
        tx: the transform received.
        where: what received it, for the message (``'chain(...) argument 0'``).
    """
    if getattr(tx, "returns", None) != "params" or not callable(getattr(tx, "update", None)):
        kind = f"a gradient stage (returns={tx.returns!r})" if isinstance(tx, GradientTransform) else repr(tx)
        raise TypeError(
            f"{where} must be an optimizer, a GradientTransform with returns='params' such as "
            f"sgd(...), got {kind}"
        )


@plain.register("optim.ParamGroup")
@attrs.frozen
class ParamGroup(Generic[H]):
    """One parameter group: which parameters, with which hyper-parameters.

    Attributes:
        indices: positions of the group's parameters in the state's ``names``.
        buckets: the same positions split by (device, dtype), for one foreach call each.
        hyper: the group's hyper-parameters (a frozen record such as ``SGDHyper``).
    """

    indices: tuple[int, ...]
    buckets: tuple[tuple[int, ...], ...]
    hyper: H


def _bucketed(indices: Sequence[int], params: Sequence[Tensor]) -> tuple[tuple[int, ...], ...]:
    members = [params[i] for i in indices]
    return tuple(tuple(indices[j] for j in bucket) for bucket in group_by_device_dtype(members))


def evolve_hyper(hyper: H, values: Mapping[str, Any], where: str) -> H:
    """``attrs.evolve(hyper, **values)``, with an error naming unknown keys and the accepted ones."""
    accepted = attrs.fields_dict(type(hyper))  # type: ignore[arg-type]
    unknown = sorted(set(values) - set(accepted))
    if unknown:
        raise KeyError(
            f"{where}: unknown hyper-parameter(s) {unknown} for {type(hyper).__name__}; "
            f"accepted: {sorted(accepted)}"
        )
    return attrs.evolve(hyper, **values)  # type: ignore[misc]


def build_groups(
    names: tuple[str, ...],
    params: Mapping[str, Tensor],
    default: H,
    specs: Sequence[Mapping[str, Any]] | None,
    check: Callable[[H], None],
) -> tuple[ParamGroup[H], ...]:
    """Parameter groups from torch-style specs ``[{'params': [names...], 'lr': ..., ...}, ...]``.

    Without specs every parameter is in one group with the ``default`` hyper-parameters. Each
    spec overrides the defaults with its other keys. Every parameter must belong to exactly one
    group, as in ``torch.optim``.

    Args:
        names: the state's parameter names, in order.
        params: the parameters (used to bucket by device and dtype).
        default: the transform's default hyper-parameters.
        specs: the group specs, or ``None`` for one group.
        check: validates one group's hyper-parameters (raises ``ValueError``).

    Returns:
        The groups, in spec order.

    Raises:
        TypeError: a spec that is not a mapping with a ``'params'`` list of names.
        KeyError: a name that is not a parameter, or an unknown hyper-parameter.
        ValueError: a parameter in two groups or in none, or an invalid hyper-parameter value.
    """
    values = [params[n] for n in names]
    if specs is None:
        all_indices = tuple(range(len(names)))
        return (ParamGroup(all_indices, _bucketed(all_indices, values), default),)
    position = {name: i for i, name in enumerate(names)}
    seen: dict[str, int] = {}
    groups: list[ParamGroup[H]] = []
    for g, spec in enumerate(specs):
        if not isinstance(spec, Mapping) or isinstance(spec.get("params"), (str, type(None))):
            raise TypeError(
                f"param_groups[{g}] must be a mapping with a 'params' list of parameter names, "
                f"got {spec!r}"
            )
        members = list(spec["params"])
        for name in members:
            if name not in position:
                raise KeyError(
                    f"param_groups[{g}] names {name!r}, which is not a parameter; "
                    f"parameters: {list(names)}"
                )
            if name in seen:
                raise ValueError(
                    f"parameter {name!r} is in param_groups[{seen[name]}] and param_groups[{g}]; "
                    "a parameter belongs to exactly one group"
                )
            seen[name] = g
        overrides = {k: v for k, v in spec.items() if k != "params"}
        hyper = evolve_hyper(default, overrides, f"param_groups[{g}]")
        check(hyper)
        indices = tuple(position[name] for name in members)
        groups.append(ParamGroup(indices, _bucketed(indices, values), hyper))
    missing = [name for name in names if name not in seen]
    if missing:
        raise ValueError(f"parameters {missing} are in no param group; list each in one group")
    return tuple(groups)


def check_nonnegative(hyper: object, *fields: str) -> None:
    """Raise ``ValueError`` naming the first of ``fields`` of ``hyper`` that is negative."""
    for name in fields:
        value = getattr(hyper, name)
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {name}={value!r}")


def without_grad(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """``fn(*args, **kwargs)`` with autograd recording off, as under ``torch.no_grad()``.

    The grad mode is switched only when it is on and restored even if ``fn`` raises. This is
    what ``torch.no_grad()`` does, without building a context manager object on every call
    (about a microsecond each, which matters on an optimizer step of a few small tensors).

    Args:
        fn: the function to run.
        *args: its positional arguments.
        **kwargs: its keyword arguments.

    Returns:
        What ``fn`` returns.
    """
    if not _grad_enabled():
        return fn(*args, **kwargs)
    _set_grad_enabled(False)
    try:
        return fn(*args, **kwargs)
    finally:
        _set_grad_enabled(True)


def with_grads(bucket: tuple[int, ...], grads: Sequence[Tensor | None]) -> Sequence[int]:
    """The positions of ``bucket`` whose gradient exists, for one foreach call.

    When the bucket is every parameter and each has a gradient (one group, one device and
    dtype: the common case), the answer is ``range(len(grads))``, in the state's order rather
    than the group's: foreach optimizer ops act tensor by tensor, so the order within a call
    changes no number, and :func:`gather` can then hand over whole lists without copying.

    Args:
        bucket: positions into the state's ``names`` of one (device, dtype) bucket.
        grads: the gradients aligned with ``names`` (``None``: no gradient).

    Returns:
        The positions, possibly empty.
    """
    if len(bucket) == len(grads) and not any(map(is_none, grads)):
        return range(len(grads))
    return [i for i in bucket if grads[i] is not None]


def gather(values: Sequence[T], positions: Sequence[int]) -> Sequence[T]:
    """``values`` at ``positions`` (from :func:`with_grads`); ``values`` itself when that is all of it.

    Args:
        values: a sequence aligned with the state's ``names``.
        positions: distinct positions into it.

    Returns:
        The entries, in ``positions`` order; the caller must not write into the result.
    """
    return values if len(positions) == len(values) else [values[i] for i in positions]


def scatter(target: list[T], positions: Sequence[int], values: Sequence[T]) -> None:
    """Write ``values`` into ``target`` at ``positions`` (the inverse of :func:`gather`).

    Args:
        target: a list aligned with the state's ``names``, written in place.
        positions: distinct positions into it, as given to :func:`gather`.
        values: one value per position.
    """
    if len(positions) == len(target):
        target[:] = values
    else:
        for j, i in enumerate(positions):
            target[i] = values[j]
