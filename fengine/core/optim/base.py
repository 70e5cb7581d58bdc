"""The transform records and parameter groups shared by every optimizer of ``fengine.core.optim``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, Protocol, TypeVar

import attrs
from torch import Tensor

from fengine.core.tree import group_by_device_dtype

S = TypeVar("S")
H = TypeVar("H")

#: Gradients by parameter name; ``None`` (or a missing name) means "no gradient": that parameter
#: is skipped, exactly as ``torch.optim`` skips a parameter whose ``.grad`` is ``None``.
Grads = Mapping[str, "Tensor | None"]


class UpdateFn(Protocol[S]):
    """``update(grads, state, params, *, donate=False) -> (new_params, new_state)``."""

    def __call__(
        self, grads: Grads, state: S, params: Mapping[str, Tensor], *, donate: bool = False
    ) -> tuple[dict[str, Tensor], S]: ...


class GradUpdateFn(Protocol[S]):
    """``update(grads, state, params, *, donate=False) -> (new_grads, new_state)``."""

    def __call__(
        self, grads: Grads, state: S, params: Mapping[str, Tensor], *, donate: bool = False
    ) -> tuple[dict[str, Tensor | None], S]: ...


@attrs.frozen
class Transform(Generic[S]):
    """An optimizer: ``init(params) -> state`` and ``update(grads, state, params) -> (params, state)``.

    ``update`` returns the *new parameters* (computed in ``torch.optim``'s own op order, so they
    are bit-identical to it) and the new state. With ``donate=False`` (the default) nothing it
    was handed is written: parameters, gradients and state tensors keep their ``_version``. With
    ``donate=True`` the caller gives up all three; parameters and state tensors are then updated
    in place (the returned mapping holds the very tensors passed in) and gradients may be
    overwritten. Both paths give bit-identical numbers.

    Attributes:
        init: builds the state record from the parameters.
        update: one optimisation step.
    """

    init: Callable[[Mapping[str, Tensor]], S]
    update: UpdateFn[S]


@attrs.frozen
class GradientTransform(Generic[S]):
    """A gradient-to-gradient stage (clipping, ...) that runs in front of a :class:`Transform`.

    Same contract as :class:`Transform`, except that ``update`` returns new gradients (``None``
    entries stay ``None``). With ``donate=True`` gradients are changed in place.

    Attributes:
        init: builds the state record from the parameters.
        update: transforms one set of gradients.
    """

    init: Callable[[Mapping[str, Tensor]], S]
    update: GradUpdateFn[S]


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
