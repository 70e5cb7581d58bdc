"""Weight averaging (EMA, annealed EMA, SWA) as pure init/update functions over flat tensor dicts.

An *averager* is a small frozen record of hyper-parameters with two methods:
``init(params, buffers) -> EMAState`` copies the source tensors, and
``update(state, params, buffers) -> EMAState`` folds one more source snapshot in. The state holds
the averaged tensors (named like ``state_dict``) and ``steps``, the number of ``update`` calls so
far, as a Python int (no device sync to branch on it).

Every ``update`` call, following MMEngine's ``BaseAveragedModel.update_parameters``:

* ``steps == 0``: the averaged entries become copies of the source (no averaging);
* else if ``steps % interval == 0``: each floating-point averaged entry is averaged in;
* entries that are not averaged track the source (copied every call): all buffers when
  ``update_buffers`` is false, and non-floating-point entries (``num_batches_tracked``) always;
* ``steps`` grows by one.

``momentum`` is the weight of the *new* value, ``avg ← (1 − m)·avg + m·src`` (``torch.lerp``);
``torch.optim.swa_utils.get_ema_multi_avg_fn(decay)`` calls the same thing ``1 − decay``.

Pure by default: no input tensor is written. With ``donate=True`` the state's tensors are updated
in place (``torch._foreach_*_``) and reused in the returned state, bit-identical to the pure path.
A donated update also keeps the state's mappings and remembers, beside the state, its tensors
aligned with the source's (:class:`_Plan`): while the same source mappings come back (a live
model's, every iteration), an update is one foreach average plus one foreach copy of the
entries that track the source, with no per-name work.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import attrs
import torch
from torch import Tensor

from fengine.core.optim.base import without_grad

TensorDict = Mapping[str, Tensor]

__all__ = [
    "Averager",
    "CustomAverage",
    "EMAState",
    "ExponentialMovingAverage",
    "MomentumAnnealingEMA",
    "StochasticWeightAverage",
    "ema_state_dict",
    "load_ema_state_dict",
    "load_weights",
    "sync",
]


class _PlanSlot:
    """One private slot, outside the record's fields: not compared, copied, evolved or saved."""

    __slots__ = ("_plan",)
    _plan: _Plan


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


def _check_interval(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{attribute.name} must be an int >= 1, got {value!r}")


def _check_momentum(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{attribute.name} must be a float in (0, 1), got {value!r}")
    if not 0.0 < value < 1.0:
        raise ValueError(
            f"{attribute.name} must be in the open range (0.0, 1.0), got {value!r}; it is the "
            "weight of the new value (avg <- (1 - momentum) * avg + momentum * src)"
        )


def _check_bool(_: object, attribute: attrs.Attribute[bool], value: bool) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{attribute.name} must be a bool, got {value!r}")


def _lookup(source: TensorDict, like: TensorDict, what: str) -> list[Tensor]:
    """``source``'s tensors in ``like``'s order."""
    try:
        return [source[name] for name in like]
    except KeyError as error:
        raise KeyError(
            f"source {what} lack {error.args[0]!r}, which the averaged state holds "
            f"(averaged names: {list(like)})"
        ) from None


def _matched(srcs: list[Tensor], avgs: Iterable[Tensor]) -> list[Tensor]:
    """``srcs`` on ``avgs``' devices and dtypes (converted copies where they differ)."""
    return [
        s if s.device == a.device and s.dtype == a.dtype else s.to(a.device, a.dtype)
        for s, a in zip(srcs, avgs)
    ]


def _gather(source: TensorDict, like: TensorDict, what: str) -> list[Tensor]:
    """``source``'s tensors in ``like``'s order, on ``like``'s devices and dtypes."""
    return _matched(_lookup(source, like, what), like.values())


def _copied(avgs: list[Tensor], srcs: list[Tensor]) -> list[Tensor]:
    """New copies of ``srcs`` in ``avgs``' dtypes and devices."""
    return [s.to(device=a.device, dtype=a.dtype, copy=True) for a, s in zip(avgs, srcs)]


class Averager:
    """What every averager shares: ``init``, ``update`` and their stepping rule (module docstring).

    Subclasses are frozen records with ``interval`` and ``update_buffers`` fields and implement
    :meth:`average`.
    """

    __slots__ = ()
    interval: int
    update_buffers: bool

    def average(
        self, avgs: list[Tensor], srcs: list[Tensor], steps: int, donate: bool
    ) -> list[Tensor]:
        """Average ``srcs`` into ``avgs`` (floating-point tensors) at counter value ``steps``.

        Args:
            avgs: the current averages.
            srcs: the source tensors, same devices and shapes.
            steps: the counter before this update.
            donate: write the new averages into ``avgs`` (else leave every input untouched).

        Returns:
            The new averages: ``avgs`` themselves when donated (donated updates rely on it).
        """
        raise NotImplementedError

    def init(
        self,
        params: TensorDict,
        buffers: TensorDict | None = None,
        *,
        device: torch.device | str | None = None,
    ) -> EMAState:
        """A state holding detached copies of ``params`` and ``buffers``, ``steps == 0``.

        Args:
            params: source parameters by name.
            buffers: source buffers by name (none if omitted).
            device: where the averages live (the sources' devices if ``None``).

        Returns:
            The initial state.
        """
        with torch.no_grad():
            return EMAState(
                params={n: t.detach().to(device, copy=True) for n, t in params.items()},
                buffers={n: t.detach().to(device, copy=True) for n, t in (buffers or {}).items()},
            )

    def update(
        self,
        state: EMAState,
        params: TensorDict,
        buffers: TensorDict | None = None,
        *,
        donate: bool = False,
    ) -> EMAState:
        """Fold one snapshot of the source into the averages.

        Args:
            state: the current state.
            params: the source's parameters (every name of ``state.params``).
            buffers: the source's buffers (every name of ``state.buffers``).
            donate: let the update write ``state``'s tensors in place (the caller never reads
                ``state`` again); bit-identical results. The new state keeps ``state``'s
                mappings, and the tensors aligned with these source mappings (module docstring).

        Returns:
            The new state with ``steps + 1``.

        Raises:
            KeyError: a name of the state is missing from the source.
            ValueError: donated, a source tensor changed device or dtype in place since these
                source mappings were first averaged (``module.half()`` after the first update).
        """
        steps = state.steps
        mode = "copy" if steps == 0 else "average" if steps % self.interval == 0 else "keep"
        if donate:
            plan = _plan_for(state, params, buffers, self.update_buffers)
            return _donated(state, plan, mode, steps, self.average, steps + 1)
        with torch.no_grad():
            new_params = _advance(state.params, params, mode, steps, "params", self.average)
            buffer_mode = mode if self.update_buffers else "copy"
            new_buffers = _advance(
                state.buffers, buffers or {}, buffer_mode, steps, "buffers", self.average
            )
        return EMAState(params=new_params, buffers=new_buffers, steps=steps + 1)


AverageFn = Callable[[list[Tensor], list[Tensor], int, bool], list[Tensor]]


def _advance(
    avg: TensorDict,
    source: TensorDict,
    mode: str,
    steps: int,
    what: str,
    average: AverageFn | None,
) -> dict[str, Tensor]:
    """The new (pure) entries of one mapping of the state: ``mode`` is the module docstring's rule."""
    if not avg:  # nothing averaged (a model without buffers): skip the per-step bookkeeping
        return {}
    srcs = _gather(source, avg, what)
    names = list(avg)
    avgs = list(avg.values())
    if mode == "copy":
        return dict(zip(names, _copied(avgs, srcs)))
    floating = [i for i, a in enumerate(avgs) if a.is_floating_point()]
    others = [i for i, a in enumerate(avgs) if not a.is_floating_point()]
    out = dict(avg)
    if mode == "average" and floating and average is not None:
        new = average([avgs[i] for i in floating], [srcs[i] for i in floating], steps, False)
        out.update(zip((names[i] for i in floating), new))
    if others:
        # Integer buffers (num_batches_tracked) cannot be averaged; they track the source.
        new = _copied([avgs[i] for i in others], [srcs[i] for i in others])
        out.update(zip((names[i] for i in others), new))
    return out


def sync(
    state: EMAState, params: TensorDict, buffers: TensorDict | None = None, *, donate: bool = False
) -> EMAState:
    """Copy every entry of the source into the averages, ``steps`` unchanged.

    MMEngine's ``EMAHook`` does this after each iteration before averaging begins
    (``begin_iter``/``begin_epoch``), so the average starts from the weights at that point.

    Args:
        state: the current state.
        params: the source's parameters.
        buffers: the source's buffers.
        donate: copy into ``state``'s tensors in place (keeping its mappings, as ``update``).

    Returns:
        The state with the source's values.

    Raises:
        KeyError: a name of the state is missing from the source.
        ValueError: donated, a source tensor changed device or dtype in place (as ``update``).
    """
    if donate:
        plan = _plan_for(state, params, buffers, None)
        return _donated(state, plan, "copy", 0, None, state.steps)
    with torch.no_grad():
        return EMAState(
            params=_advance(state.params, params, "copy", 0, "params", None),
            buffers=_advance(state.buffers, buffers or {}, "copy", 0, "buffers", None),
            steps=state.steps,
        )


_Pair = tuple[list[Tensor], list[Tensor]]


@attrs.frozen(eq=False)
class _Plan:
    """A state's tensors aligned with one source's, which donated updates reuse.

    It hangs on the state (in :class:`_PlanSlot`'s slot) and donated updates pass it on with
    the state's unchanged mappings, so it always matches the averages it holds; it is used
    again only for the very same source mappings (``params``/``buffers``, by identity) and
    ``update_buffers``. New source mappings (another model, refreshed references) or a state
    with new mappings (``init``, :func:`load_weights`, a restored checkpoint) build a new one.
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


def _plan_for(
    state: EMAState, params: TensorDict, buffers: TensorDict | None, update_buffers: bool | None
) -> _Plan:
    """The state's plan for these sources (``update_buffers=None``: any split will do)."""
    plan: _Plan | None = getattr(state, "_plan", None)  # unset on states no donation made
    if (
        plan is not None
        and plan.params is params
        and plan.buffers is buffers
        and (update_buffers is None or plan.update_buffers is update_buffers)
    ):
        return plan
    avgs = [*state.params.values(), *state.buffers.values()]
    srcs = _lookup(params, state.params, "params")
    srcs += _lookup(buffers or {}, state.buffers, "buffers")
    count = len(state.params)
    averaged = [
        i for i, a in enumerate(avgs) if a.is_floating_point() and (i < count or update_buffers)
    ]
    tracked = sorted(set(range(len(avgs))) - set(averaged))
    convert = any(s.device != a.device or s.dtype != a.dtype for s, a in zip(srcs, avgs))
    return _Plan(
        params,
        buffers,
        update_buffers,
        convert,
        (avgs, srcs),
        ([avgs[i] for i in averaged], [srcs[i] for i in averaged]),
        ([avgs[i] for i in tracked], [srcs[i] for i in tracked]),
    )


def _donated(
    state: EMAState, plan: _Plan, mode: str, steps: int, average: AverageFn | None, new_steps: int
) -> EMAState:
    """One update (or sync) in place on ``plan``'s tensors; the state's mappings are kept."""
    try:
        without_grad(_apply, plan, mode, steps, average)
    except RuntimeError as error:
        _raise_if_moved(state, plan, error)
        raise
    new = EMAState(state.params, state.buffers, new_steps)
    object.__setattr__(new, "_plan", plan)  # a memo beside the record, not one of its fields
    return new


def _apply(plan: _Plan, mode: str, steps: int, average: AverageFn | None) -> None:
    if mode == "copy":
        _copy_into(plan.every, plan.convert)
        return
    avgs, srcs = plan.averaged
    if mode == "average" and avgs and average is not None:
        average(avgs, _matched(srcs, avgs) if plan.convert else srcs, steps, True)
    _copy_into(plan.tracked, plan.convert)


def _raise_if_moved(state: EMAState, plan: _Plan, error: RuntimeError) -> None:
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
    if avgs:
        torch._foreach_copy_(avgs, _matched(srcs, avgs) if convert else srcs)


def _lerp(avgs: list[Tensor], srcs: list[Tensor], weight: float, donate: bool) -> list[Tensor]:
    if donate:
        torch._foreach_lerp_(avgs, srcs, weight)
        return avgs
    return list(torch._foreach_lerp(avgs, srcs, weight))


@attrs.frozen
class ExponentialMovingAverage(Averager):
    """Exponential moving average: ``avg ← (1 − momentum)·avg + momentum·src``.

    After ``n ≥ 1`` updates with ``interval == 1`` and sources ``x_0 … x_{n-1}``,
    ``avg = (1 − m)^{n-1} x_0 + Σ_{k=1}^{n-1} m (1 − m)^{n-1-k} x_k``.

    Args:
        momentum: weight of the new value, in ``(0, 1)`` (MMEngine's convention; ``1 − decay``).
        interval: average every ``interval``-th update call (copies on the first).
        update_buffers: average floating-point buffers too instead of copying them.

    Raises:
        ValueError: ``momentum`` outside ``(0, 1)`` or ``interval < 1``.
        TypeError: a non-number ``momentum`` or a non-bool ``update_buffers``.
    """

    momentum: float = attrs.field(default=0.0002, validator=_check_momentum)
    interval: int = attrs.field(default=1, validator=_check_interval)
    update_buffers: bool = attrs.field(default=False, validator=_check_bool)

    def average(
        self, avgs: list[Tensor], srcs: list[Tensor], steps: int, donate: bool
    ) -> list[Tensor]:
        """``lerp(avg, src, momentum)`` for each pair (see :meth:`Averager.average`)."""
        return _lerp(avgs, srcs, self.momentum, donate)


def _check_gamma(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{attribute.name} must be a number > 0, got {value!r}")


@attrs.frozen
class MomentumAnnealingEMA(Averager):
    """EMA whose momentum starts high and anneals: ``m_t = max(momentum, gamma / (gamma + t))``.

    ``t`` is the update counter before the update (not divided by ``interval``), as MMEngine.

    Args:
        momentum: the floor of the momentum, in ``(0, 1)``.
        gamma: the annealing scale, ``> 0``.
        interval: average every ``interval``-th update call.
        update_buffers: average floating-point buffers too.

    Raises:
        ValueError: ``momentum`` outside ``(0, 1)``, ``gamma <= 0`` or ``interval < 1``.
    """

    momentum: float = attrs.field(default=0.0002, validator=_check_momentum)
    gamma: float = attrs.field(default=100.0, validator=_check_gamma)
    interval: int = attrs.field(default=1, validator=_check_interval)
    update_buffers: bool = attrs.field(default=False, validator=_check_bool)

    def momentum_at(self, steps: int) -> float:
        """The momentum used by the update made at counter value ``steps``."""
        return max(self.momentum, self.gamma / (self.gamma + steps))

    def average(
        self, avgs: list[Tensor], srcs: list[Tensor], steps: int, donate: bool
    ) -> list[Tensor]:
        """``lerp(avg, src, momentum_at(steps))`` for each pair."""
        return _lerp(avgs, srcs, self.momentum_at(steps), donate)


@attrs.frozen
class StochasticWeightAverage(Averager):
    """Running mean of the sampled weights: ``avg ← avg + (src − avg) / (steps // interval + 1)``.

    Args:
        interval: sample every ``interval``-th update call.
        update_buffers: average floating-point buffers too.
    """

    interval: int = attrs.field(default=1, validator=_check_interval)
    update_buffers: bool = attrs.field(default=False, validator=_check_bool)

    def average(
        self, avgs: list[Tensor], srcs: list[Tensor], steps: int, donate: bool
    ) -> list[Tensor]:
        """``avg + (src − avg)·α`` with ``α = 1 / (steps // interval + 1)`` (add with alpha)."""
        alpha = 1 / float(steps // self.interval + 1)
        diffs = torch._foreach_sub(srcs, avgs)
        if donate:
            torch._foreach_add_(avgs, diffs, alpha=alpha)
            return avgs
        return list(torch._foreach_add(avgs, diffs, alpha=alpha))


AvgFn = Callable[[Tensor, Tensor, int], object]  # the result is ignored


@attrs.frozen
class CustomAverage(Averager):
    """An averager from an in-place function ``avg_fn(averaged, source, steps)`` (MMEngine's ``avg_func``).

    Pure updates call ``avg_fn`` on copies of the averages; donated ones on the averages.

    Args:
        avg_fn: writes the new average into its first argument.
        interval: average every ``interval``-th update call.
        update_buffers: average floating-point buffers too.
    """

    avg_fn: AvgFn = attrs.field()
    interval: int = attrs.field(default=1, validator=_check_interval)
    update_buffers: bool = attrs.field(default=False, validator=_check_bool)

    @avg_fn.validator
    def _check_avg_fn(self, attribute: attrs.Attribute[AvgFn], value: AvgFn) -> None:
        if not callable(value):
            raise TypeError(
                f"{attribute.name} must be callable (averaged, source, steps), got {value!r}"
            )

    def average(
        self, avgs: list[Tensor], srcs: list[Tensor], steps: int, donate: bool
    ) -> list[Tensor]:
        """``avg_fn(avg, src, steps)`` on each pair (on clones unless donated)."""
        targets = avgs if donate else [a.clone() for a in avgs]
        for avg, src in zip(targets, srcs):
            self.avg_fn(avg, src, steps)
        return targets


def ema_state_dict(state: EMAState, order: Iterable[str] | None = None) -> dict[str, Tensor]:
    """The state in MMEngine's averaged-model layout: ``steps``, then ``module.<name>``.

    Args:
        state: the EMA state.
        order: names in the order to write them (e.g. the model's ``state_dict`` keys); names of
            the state not in it follow, parameters before buffers.

    Returns:
        A new dict; ``steps`` is a 0-d ``torch.long`` tensor, the other values are the state's
        tensors themselves (not copies).
    """
    tensors = {**state.params, **state.buffers}
    names = [n for n in (order or ()) if n in tensors]
    names += [n for n in tensors if n not in set(names)]
    out: dict[str, Tensor] = {"steps": torch.tensor(state.steps, dtype=torch.long)}
    out.update((f"module.{n}", tensors[n]) for n in names)
    return out


def load_weights(state: EMAState, tensors: TensorDict, *, strict: bool = False) -> EMAState:
    """Copy ``tensors`` (plain ``state_dict`` names) into new averages; ``steps`` unchanged.

    Values are converted to each average's dtype and device. Without ``strict``, names on only
    one side are ignored (as ``load_state_dict(strict=False)``).

    Args:
        state: the state to start from (not modified).
        tensors: values by name.
        strict: require exactly the state's names.

    Returns:
        A state whose loaded entries are new tensors; the other entries are shared.

    Raises:
        KeyError: with ``strict``, missing or unexpected names (both listed).
        ValueError: a shape differs from the average's.
    """
    if strict:
        known = {*state.params, *state.buffers}
        missing = sorted(known - set(tensors))
        unexpected = sorted(set(tensors) - known)
        if missing or unexpected:
            raise KeyError(
                f"averaged weights do not match: missing keys {missing}, unexpected keys {unexpected}"
            )

    def load(avg: TensorDict) -> dict[str, Tensor]:
        out = dict(avg)
        for name, current in avg.items():
            if name in tensors:
                value = tensors[name]
                if value.shape != current.shape:
                    raise ValueError(
                        f"size mismatch for {name!r}: the averaged tensor has shape "
                        f"{tuple(current.shape)}, the loaded one {tuple(value.shape)}"
                    )
                out[name] = value.detach().to(device=current.device, dtype=current.dtype, copy=True)
        return out

    return attrs.evolve(state, params=load(state.params), buffers=load(state.buffers))


def load_ema_state_dict(
    state: EMAState, state_dict: TensorDict, *, strict: bool = False
) -> EMAState:
    """Restore a state from MMEngine's averaged-model layout (see :func:`ema_state_dict`).

    Args:
        state: a state with the right names, devices and dtypes (e.g. fresh from ``init``).
        state_dict: ``steps`` and ``module.<name>`` entries.
        strict: require exactly the state's names and a ``steps`` entry.

    Returns:
        The restored state (``steps`` kept when absent and not ``strict``).

    Raises:
        KeyError: with ``strict``, mismatching names or no ``steps``.
        ValueError: a shape mismatch.
    """
    if strict and "steps" not in state_dict:
        raise KeyError(f"averaged state dict has no 'steps' entry; keys: {list(state_dict)}")
    weights = {k[len("module.") :]: v for k, v in state_dict.items() if k.startswith("module.")}
    if strict:
        others = sorted(k for k in state_dict if k != "steps" and not k.startswith("module."))
        if others:
            raise KeyError(f"unexpected keys in averaged state dict: {others}")
    loaded = load_weights(state, weights, strict=strict)
    steps = state_dict.get("steps")
    return loaded if steps is None else attrs.evolve(loaded, steps=int(steps))
