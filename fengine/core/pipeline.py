"""Hooks as typed callables composed into one priority-sorted pipeline.

A functional hook is an :class:`FnHook`: a name, a priority, an initial state of its own type ``S``
and a handler per event. A handler is a pure function
``(run, own_state, info) -> (run, own_state)``; requests to the world go into ``run.effects``.
A :class:`Pipeline` sorts hooks by ``(priority value, registration order)`` once and precomputes,
for every event, the tuple of handlers, so an event no hook handles costs one lookup. A hook may
declare per event when its handler acts (:attr:`FnHook.when`, a :mod:`~fengine.core.cadence`):
dispatch skips it where it is not due, so a hook costs nothing at the firings it ignores.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic, TypeVar

import attrs

from fengine.core.cadence import Cadence, Leaf, compiled, leaves_due
from fengine.core.events import Event
from fengine.core.priority import PriorityLike, get_priority
from fengine.core.run import EventInfo, RunState

S = TypeVar("S")

Handler = Callable[[RunState, S, EventInfo], tuple[RunState, S]]


def _check_name(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"FnHook.{attribute.name} must be a non-empty str, got {value!r}")


def _check_events(_: object, attribute: attrs.Attribute[Any], value: Mapping[Any, Any]) -> None:
    for event, handler in value.items():
        if not isinstance(event, Event):
            raise TypeError(
                f"FnHook.on keys must be Event members, got {event!r}; "
                f"accepted: {', '.join(e.name for e in Event)}"
            )
        if not callable(handler):
            raise TypeError(f"FnHook.on[{event.name}] must be callable, got {handler!r}")


def _check_when(hook: FnHook[Any], attribute: attrs.Attribute[Any], value: Mapping[Any, Any]) -> None:
    for event, cadence in value.items():
        if event not in hook.on:
            handled = ", ".join(e.name for e in hook.on) or "none"
            raise ValueError(
                f"FnHook {hook.name!r}: when[{event!r}] names an event it has no handler for; "
                f"it handles: {handled}"
            )
        if not isinstance(cadence, Cadence):
            raise TypeError(
                f"FnHook {hook.name!r}: when[{event.name}] must be a cadence (Every, Last, Ask, "
                f"AnyOf), got {cadence!r}"
            )


def _string_set(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


@attrs.frozen(eq=False)
class FnHook(Generic[S]):
    """A functional hook.

    Args:
        name: unique in a pipeline; the key of its state in ``RunState.hook_states`` and in
            checkpoints.
        priority: an int in ``0..100``, a :class:`~fengine.core.priority.Priority` or its name.
        init: the hook's initial state.
        on: the handler for each event the hook handles.
        owns: state outside its own that the hook takes over for the whole run (described in
            words, e.g. "the checkpoint's 'ema_state_dict' ..."); a pipeline refuses two hooks
            that own the same thing. Hooks that only read or add to shared state own nothing.
        when: for some of the events in ``on``, the :class:`~fengine.core.cadence.Cadence` at
            which the handler may act; elsewhere it must return the run and its state unchanged,
            and the pipeline does not call it. Events not listed act at every firing.
    """

    name: str = attrs.field(validator=_check_name)
    priority: PriorityLike = attrs.field()
    init: S
    on: Mapping[Event, Handler[S]] = attrs.field(factory=dict, validator=_check_events)
    owns: frozenset[str] = attrs.field(default=frozenset(), converter=_string_set)
    when: Mapping[Event, Cadence] = attrs.field(factory=dict, validator=_check_when)

    @priority.validator
    def _check_priority(self, _: attrs.Attribute[PriorityLike], value: PriorityLike) -> None:
        get_priority(value)

    @property
    def priority_value(self) -> int:
        """The priority as an int (lower runs earlier)."""
        return get_priority(self.priority)


class HookError(Exception):
    """A handler raised: names the hook and the event; the original exception is chained.

    Raised as a subclass that is also the original's built-in kind (``HookValueError`` is a
    ``ValueError``, ...), so code that catches MMEngine's exception types still catches it.
    """

    def __init__(self, hook: str, event: Event, error: BaseException) -> None:
        super().__init__(f"hook {hook!r} failed in {event.value}: {type(error).__name__}: {error}")
        self.hook = hook
        self.event = event
        self.error = error

    def __str__(self) -> str:  # KeyError would show the repr of the message
        return str(self.args[0])

    @staticmethod
    def of(hook: str, event: Event, error: BaseException) -> HookError:
        """The :class:`HookError` for ``error``, also of every built-in kind ``error`` is."""
        kinds: list[type[BaseException]] = []
        for base in type(error).__mro__:
            if base in _CATCHABLE and not any(issubclass(k, base) for k in kinds):
                kinds.append(base)
        return _hook_error_type(tuple(kinds))(hook, event, error)


#: Built-in kinds a HookError also takes on, so MMEngine-style ``except ValueError`` still works.
_CATCHABLE = frozenset(
    {TypeError, ValueError, KeyError, IndexError, AttributeError, AssertionError,
     NotImplementedError, RuntimeError, ArithmeticError, LookupError}
)


@functools.cache
def _hook_error_type(kinds: tuple[type[BaseException], ...]) -> type[HookError]:
    if not kinds:
        return HookError
    name = "Hook" + "".join(k.__name__ for k in kinds)
    return type(name, (HookError, *kinds), {"__module__": __name__})


_Entry = tuple[FnHook[Any], Handler[Any]]


@attrs.frozen(eq=False)
class Pipeline:
    """An immutable, priority-sorted sequence of hooks with per-event handler tuples.

    Build with :meth:`of` (or :meth:`add`); ``hooks`` is in call order. ``gates`` holds, for each
    event where some handler declared a cadence, that cadence compiled
    (:func:`~fengine.core.cadence.compiled`) or ``None`` (always) per entry of ``by_event``;
    events without one dispatch every handler.
    """

    hooks: tuple[FnHook[Any], ...] = ()
    by_event: Mapping[Event, tuple[_Entry, ...]] = attrs.field(factory=dict)
    gates: Mapping[Event, tuple[tuple[Leaf, ...] | None, ...]] = attrs.field(factory=dict)

    @classmethod
    def of(cls, hooks: Iterable[FnHook[Any]]) -> Pipeline:
        """Sort ``hooks`` by ``(priority value, registration order)``.

        Raises:
            ValueError: two hooks of one name (names key hook states and checkpoints), or two
                hooks that own the same state (:attr:`FnHook.owns`), naming both and the state.
        """
        registered = tuple(hooks)
        seen: set[str] = set()
        owners: dict[str, str] = {}
        for hook in registered:
            if hook.name in seen:
                raise ValueError(
                    f"duplicate hook name {hook.name!r}: names key hook states and checkpoints, "
                    "so each hook in a pipeline needs its own"
                )
            seen.add(hook.name)
            for state in sorted(hook.owns):
                if state in owners:
                    raise ValueError(
                        f"hooks {owners[state]!r} and {hook.name!r} would both own {state}; "
                        "a run can have only one of them"
                    )
                owners[state] = hook.name
        ordered = tuple(sorted(registered, key=lambda h: h.priority_value))  # sorted() is stable
        by_event = {
            event: tuple((h, h.on[event]) for h in ordered if event in h.on) for event in Event
        }
        gates = {
            event: tuple(compiled(h.when[event]) if event in h.when else None for h, _ in entries)
            for event, entries in by_event.items()
            if any(event in h.when for h, _ in entries)
        }
        return cls(hooks=ordered, by_event=by_event, gates=gates)

    def add(self, hook: FnHook[Any]) -> Pipeline:
        """Return a pipeline with ``hook`` registered after the existing ones."""
        # Re-sorting the call order keeps registration order among equal priorities, since the
        # current order already is (priority, registration).
        return Pipeline.of((*self.hooks, hook))

    def init_states(self) -> dict[str, Any]:
        """Every hook's initial state, by name."""
        return {h.name: h.init for h in self.hooks}

    def handles(self, event: Event) -> bool:
        """Whether any hook handles ``event``."""
        return bool(self.by_event.get(event))

    def due(self, event: Event, run: RunState, batch_idx: int | None = None) -> bool:
        """Whether :func:`dispatch` would call any handler of ``event`` on ``run`` at ``batch_idx``.

        When none is due, dispatching changes nothing (no handler runs, so no counter moves), so
        the shell may skip the event altogether: it costs a few comparisons.
        """
        entries = self.by_event.get(event)
        if not entries:
            return False
        gates = self.gates.get(event)
        if gates is None:
            return True
        states = run.hook_states
        for (hook, _), gate in zip(entries, gates):
            if gate is None or leaves_due(gate, run, states.get(hook.name, hook.init), batch_idx):
                return True
        return False


def dispatch(
    pipeline: Pipeline,
    event: Event,
    run: RunState,
    info: EventInfo,
    carry_out: Callable[[RunState], RunState] | None = None,
) -> RunState:
    """Call every handler of ``event`` in pipeline order: a pure left fold over ``run``.

    A handler whose cadence (:attr:`FnHook.when`) is not due on the state the fold has reached is
    skipped: by the cadence's promise it would change nothing, so the result is the one calling
    every handler gives. A hook missing from ``run.hook_states`` starts from its ``init``. A
    handler that raises is reported as :class:`HookError` naming the hook and event, with the
    original chained.
    ``carry_out``, when given, is called with the state right after each hook that emitted
    effects and returns the state without them: the shell uses it so a hook's requests take
    effect before the next hook runs, as MMEngine's imperative hooks do.
    """
    entries = pipeline.by_event.get(event, ())
    gates = pipeline.gates.get(event)
    for (hook, handler), gate in zip(entries, itertools.repeat(None) if gates is None else gates):
        own = run.state.hook_states.get(hook.name, hook.init)
        if gate is not None and not leaves_due(gate, run, own, info.batch_idx):
            continue
        try:
            run, new_own = handler(run, own, info)
        except HookError:
            raise
        except Exception as error:
            raise HookError.of(hook.name, event, error) from error
        if new_own is not own:
            run = run.with_hook_state(hook.name, new_own)
        if carry_out is not None and run.effects:
            run = carry_out(run)
    return run
