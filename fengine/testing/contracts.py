"""``check_hook``: the default contract every hook should keep, checked over generated runs.

The contracts, each reported by name when broken (after hypothesis has shrunk the run):

- ``priority``: the hook's priority is a valid MMEngine priority.
- ``survives``: no handler raises on any legal event sequence.
- ``no-mutation``: no handler changes what it is handed (the run state, its own state, the event's
  arguments): tensors keep their ``_version`` and values, containers their contents.
- ``known-effects``: every effect is one of :data:`fengine.core.effects.KNOWN_EFFECTS`.
- ``deterministic``: the same run gives the same effects and the same final state.
- ``checkpoint-round-trip``: the hook's state survives ``torch.save``/``torch.load(weights_only=True)``
  of its plain-dict form at every step (:func:`through_checkpoint`); a record in it must be
  registered under a stable tag (``@fengine.core.plain.register('yourpackage.StateName')``).
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping
from typing import Any

import attrs
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.core import effects as fx
from fengine.core import plain
from fengine.core.pipeline import FnHook, HookError
from fengine.core.priority import get_priority
from fengine.core.run import EventInfo, RunState
from fengine.hooks.hook import Hook
from fengine.testing.simulation import RunScript, Simulation, as_fn_hook
from fengine.testing.strategies import events


class ContractError(AssertionError):
    """A hook broke one of the contracts of :func:`check_hook`; ``contract`` names which."""

    def __init__(self, contract: str, message: str) -> None:
        super().__init__(f"hook contract {contract!r} broken: {message}")
        self.contract = contract


def canonical(value: Any) -> Any:
    """A comparable, hashable picture of ``value``: tensors by dtype, shape and bytes; records by fields."""
    if isinstance(value, torch.Tensor):
        t = value.detach().cpu().contiguous().reshape(-1)
        return ("tensor", str(value.dtype), tuple(value.shape), t.view(torch.uint8).numpy().tobytes())
    if isinstance(value, float) and math.isnan(value):
        return ("nan",)
    if isinstance(value, Mapping):
        return ("map", tuple((canonical(k), canonical(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(canonical(v) for v in value))
    if isinstance(value, set | frozenset):
        return ("set", tuple(sorted(map(repr, value))))
    if attrs.has(type(value)):
        fields = attrs.fields(type(value))
        return (type(value).__qualname__, tuple((f.name, canonical(getattr(value, f.name))) for f in fields if f.name != "runner"))
    return value


def _versions(value: Any, out: list[tuple[int, int]]) -> list[tuple[int, int]]:
    if isinstance(value, torch.Tensor):
        out.append((id(value), value._version))
    elif isinstance(value, Mapping):
        for v in value.values():
            _versions(v, out)
    elif isinstance(value, list | tuple):
        for v in value:
            _versions(v, out)
    elif attrs.has(type(value)):
        for f in attrs.fields(type(value)):
            if f.name != "runner":
                _versions(getattr(value, f.name), out)
    return out


def _guarded(fn: FnHook[Any]) -> FnHook[Any]:
    """``fn`` with every handler checked for mutation of its inputs."""

    def wrap(event: Any, handler: Any) -> Any:
        def checked(run: RunState, own: Any, info: EventInfo) -> tuple[RunState, Any]:
            inputs = (run, own, info)
            before, versions = canonical(inputs), _versions(inputs, [])
            result: tuple[RunState, Any] = handler(run, own, info)
            if _versions(inputs, []) != versions or canonical(inputs) != before:
                raise ContractError(
                    "no-mutation", f"{fn.name!r} changed its inputs in {event.value} (run state, own state or event arguments)"
                )
            return result

        return checked

    return attrs.evolve(fn, on={event: wrap(event, h) for event, h in fn.on.items()})


def _play(fn: FnHook[Any], script: RunScript) -> Simulation:
    sim = Simulation(fn, script.initial_state())
    checked: Any = _UNSET
    for step in script.steps:
        try:
            sim.step(step)
        except HookError as error:
            if isinstance(error.error, ContractError):
                raise error.error from None
            raise ContractError("survives", f"{error}") from error
        unknown = [e for e in sim.run_state.effects if not isinstance(e, fx.KNOWN_EFFECTS)]
        unknown += [e for e in sim.effects if not isinstance(e, fx.KNOWN_EFFECTS)]
        if unknown:
            raise ContractError("known-effects", f"{fn.name!r} emitted {unknown!r}; known: {[t.__name__ for t in fx.KNOWN_EFFECTS]}")
        state = sim.run_state.hook_states.get(fn.name, fn.init)
        if state is not checked:  # handlers return the same object when nothing changed
            _check_round_trip(fn.name, state)
            checked = state
    return sim


_UNSET = object()


def through_checkpoint(state: Any) -> Any:
    """``state`` saved as a checkpoint saves it and read back as the runner reads it.

    ``torch.save(to_plain(state))`` into memory, then :func:`fengine.core.plain.load`
    (``torch.load(weights_only=True)`` and the registered-types-only decoder).

    Args:
        state: a hook state (plain data, tensors, registered records and enums).

    Returns:
        The rebuilt state.

    Raises:
        TypeError: ``state`` holds something a checkpoint cannot store, e.g. a record whose
            class is not registered (the message says how to register it).
        UntrustedCheckpointError: never for a state that :func:`to_plain` accepted.
    """
    buffer = io.BytesIO()
    torch.save(plain.to_plain(state), buffer)
    buffer.seek(0)
    return plain.load(buffer)


def _check_round_trip(name: str, state: Any) -> None:
    try:
        restored = through_checkpoint(state)
    except Exception as error:
        raise ContractError(
            "checkpoint-round-trip",
            f"state of {name!r} ({state!r}) cannot be saved and loaded: {error}. A hook state is "
            "plain data, tensors and attrs records or enums registered under a stable tag: "
            "decorate your record with @fengine.core.plain.register('yourpackage.StateName')",
        ) from error
    if canonical(restored) != canonical(state):
        raise ContractError("checkpoint-round-trip", f"state of {name!r} changed in a round trip: {state!r} -> {restored!r}")


def check_hook(
    hook: FnHook[Any] | Hook,
    *,
    scripts: st.SearchStrategy[RunScript] | None = None,
    max_examples: int = 25,
    hypothesis_settings: settings | None = None,
) -> None:
    """Check ``hook`` against the default contract over generated runs; raise on the first breach.

    Use inside a test function: ``check_hook(MyHook())``. Hypothesis draws runs from ``scripts``
    (default :func:`~fengine.testing.strategies.events`), shrinks a failure to a minimal run and
    re-raises a :class:`ContractError` naming the broken contract.

    Args:
        hook: an :class:`~fengine.core.pipeline.FnHook` or an MMEngine-style ``Hook`` instance.
        scripts: the runs to draw (e.g. ``events(metric_names=('acc',), by_epoch=False)``).
        max_examples: how many runs to try.
        hypothesis_settings: full control over hypothesis (overrides ``max_examples``), e.g.
            ``settings(max_examples=10, phases=[Phase.generate])`` to skip shrinking.

    Raises:
        ContractError: a contract is broken; its ``contract`` attribute names which.
    """
    try:
        get_priority(hook.priority)
        fn = as_fn_hook(hook)
    except (TypeError, ValueError, KeyError) as error:
        raise ContractError("priority", str(error)) from error
    guarded = _guarded(fn)

    @(hypothesis_settings or settings(max_examples=max_examples, deadline=None, database=None))
    @given(scripts if scripts is not None else events())
    def contract(script: RunScript) -> None:
        first = _play(guarded, script)
        second = _play(guarded, script)
        if canonical(first.effects) != canonical(second.effects):
            raise ContractError("deterministic", f"{fn.name!r} emitted different effects for the same run")
        if canonical(first.run_state.hook_states) != canonical(second.run_state.hook_states):
            raise ContractError("deterministic", f"{fn.name!r} ended in different states for the same run")

    contract()
