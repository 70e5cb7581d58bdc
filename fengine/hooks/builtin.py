"""The one façade shape of the built-in hooks: MMEngine's methods generated from their events.

A built-in hook is its pure handlers, an :class:`~fengine.core.pipeline.FnHook` that
:meth:`BuiltinHook.pure_fn_hook` builds from the hook's settings. Its class declares
:attr:`BuiltinHook.handles`, each event it acts on with a one-line description, and
:class:`BuiltinHook` writes the MMEngine method of each of those events: MMEngine's signature
(``runner`` plus ``batch_idx, data_batch=None, outputs=None``, ``metrics=None`` or
``checkpoint``), the description as its docstring, and a body that hands the arguments to
``runner.run_hook`` (:class:`~fengine.hooks.hook.HookHost`), which runs the pure handler on the
runner's state and carries out its effects. Inside a run the pipeline calls the pure handlers
directly; the methods serve MMEngine code that calls a hook by hand.

An MMEngine-style subclass that overrides one of those methods gets its override called by the
pipeline for that event, in the hook's place (the class-hook adapter of
:mod:`fengine.hooks.hook`). When the override calls ``super()``, the pure handler runs on the
state the event's fold has reached, and its effects are carried out when the override returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import attrs

from fengine.core.events import Event
from fengine.core.pipeline import FnHook, Handler
from fengine.core.run import EventInfo, RunState
from fengine.hooks.hook import (
    DATA_BATCH,
    Hook,
    event_arg_names,
    make_class_handler,
    triggered_events,
)

#: The run's modes, in MMEngine's order.
MODES = ("train", "val", "test")


def in_every_mode(points: Mapping[str, str]) -> dict[Event, str]:
    """``handles`` for points that act alike in train, val and test (MMEngine's ``_before_iter`` ...).

    Args:
        points: each event's name with ``{}`` for the mode, e.g. ``'after_{}_iter'``, and its
            description.

    Returns:
        The events of every mode, each with its point's description.
    """
    return {Event(point.format(mode)): doc for point, doc in points.items() for mode in MODES}


def _fire(hook: BuiltinHook, runner: Any, event: Event, **arguments: Any) -> None:
    """Run ``hook``'s pure handler for ``event`` through ``runner`` (never an override of it).

    The clock is read here, as the runner reads it once per event, so timing handlers see the
    moment of the call whichever host runs them.
    """
    pure: set[Event] = hook.__dict__.setdefault("_fengine_pure", set())
    nested = event in pure
    pure.add(event)
    try:
        runner.run_hook(hook, event, EventInfo(time=time.time(), **arguments))
    finally:
        if not nested:
            pure.discard(event)


def _method(event: Event, doc: str) -> Callable[..., None]:
    """MMEngine's method for ``event`` on a built-in hook, documented by ``doc``."""
    names = event_arg_names(event)
    method: Callable[..., None]
    if names == ("batch_idx", "data_batch", "outputs"):

        def method(
            self: BuiltinHook, runner: Any, batch_idx: int, data_batch: DATA_BATCH = None, outputs: Any = None
        ) -> None:
            _fire(self, runner, event, batch_idx=batch_idx, data_batch=data_batch, outputs=outputs)

    elif names == ("batch_idx", "data_batch"):

        def method(self: BuiltinHook, runner: Any, batch_idx: int, data_batch: DATA_BATCH = None) -> None:
            _fire(self, runner, event, batch_idx=batch_idx, data_batch=data_batch)

    elif names == ("metrics",):

        def method(self: BuiltinHook, runner: Any, metrics: dict[str, float] | None = None) -> None:
            _fire(self, runner, event, metrics=metrics)

    elif names == ("checkpoint",):

        def method(self: BuiltinHook, runner: Any, checkpoint: dict[str, Any]) -> None:
            _fire(self, runner, event, checkpoint=checkpoint)

    else:

        def method(self: BuiltinHook, runner: Any) -> None:
            _fire(self, runner, event)

    method.__name__ = event.value
    method.__doc__ = doc
    del method.__annotations__["self"]  # typed for mypy; MMEngine's methods leave ``self`` bare
    return method


def _unchanged(run: RunState, own: Any, info: EventInfo) -> tuple[RunState, Any]:
    return run, own


def _override_handler(hook: BuiltinHook, event: Event, pure: Handler[Any]) -> Handler[Any]:
    """The pipeline's handler for an event whose method a subclass overrides.

    It calls the override (through the class-hook adapter), except while the generated method
    itself is asking for the pure handler, as ``super().<event>(runner, ...)`` does.
    """
    override = make_class_handler(hook, event)

    def handler(run: RunState, own: Any, info: EventInfo) -> tuple[RunState, Any]:
        if event in hook.__dict__.get("_fengine_pure", ()):
            return pure(run, own, info)
        return override(run, own, info)

    return handler


class BuiltinHook(Hook):
    """A built-in hook: pure handlers plus MMEngine's methods for the events in :attr:`handles`.

    A subclass declares ``handles`` (event -> one-line description) and implements
    :meth:`pure_fn_hook`; the methods are written when the class is created.
    """

    #: The events this hook acts on, each with what it does there (its method's docstring).
    handles: ClassVar[Mapping[Event, str]] = {}
    #: The method written for each event of ``handles`` (an override is anything else).
    generated: ClassVar[Mapping[Event, Callable[..., None]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "handles" not in vars(cls):
            return
        generated: dict[Event, Callable[..., None]] = {}
        for event, doc in cls.handles.items():
            if not isinstance(event, Event) or not isinstance(doc, str) or not doc:
                raise TypeError(
                    f"{cls.__name__}.handles must map Event to a description, got {event!r}: {doc!r}"
                )
            if event.value in vars(cls):
                raise TypeError(
                    f"{cls.__name__} defines {event.value} by hand and lists it in handles; "
                    "keep one of the two"
                )
            method = _method(event, doc)
            method.__qualname__ = f"{cls.__qualname__}.{event.value}"
            method.__module__ = cls.__module__
            setattr(cls, event.value, method)
            generated[event] = method
        cls.generated = generated

    def pure_fn_hook(self, name: str) -> FnHook[Any]:
        """This hook's pure handlers as a pipeline member named ``name``."""
        raise NotImplementedError(f"{type(self).__name__} must implement pure_fn_hook")

    def to_fn_hook(self, name: str) -> FnHook[Any]:
        """The pure handlers, with the class-hook adapter for each event a subclass overrides."""
        fn = self.pure_fn_hook(name)
        cls = type(self)
        overridden = [e for e in triggered_events(cls) if getattr(cls, e.value) is not cls.generated.get(e)]
        if not overridden:
            return fn
        on = dict(fn.on)
        for event in overridden:
            on[event] = _override_handler(self, event, fn.on.get(event, _unchanged))
        return attrs.evolve(fn, on=on)
