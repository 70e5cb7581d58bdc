"""When a hook's handler may act, as data: the pipeline skips it everywhere else.

A :class:`~fengine.core.pipeline.FnHook` declares, per event, a cadence in ``FnHook.when``:
:class:`Every` ``n`` iterations, epochs or batches, the :class:`Last` one, :class:`Ask` (a cheap
predicate) or :class:`AnyOf` several. A handler without one acts at every firing of its event.
A cadence is a promise about the handler: wherever it is not due, the handler would return the
run and its own state unchanged (the same objects). The pipeline relies on that promise to skip
the call, so a hook that logs every 50 iterations costs nothing on the 49 in between — the idea of
Ignite's ``Events.ITERATION_COMPLETED(every=n)``; the handler keeps its own checks, so it gives the
same results when called directly.

Counters are MMEngine's, read as the event sees them: ``iter`` and ``epoch`` count completed
iterations and epochs (``iter + 1`` is the iteration an ``after_train_iter`` ends), ``batch`` is the
event's ``batch_idx`` (``batch_idx + 1`` batches done).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, Protocol, runtime_checkable

import attrs

from fengine.core.run import RunState

Counter = Literal["iter", "epoch", "batch"]
_COUNTERS = ("iter", "epoch", "batch")


@runtime_checkable
class Cadence(Protocol):
    """Whether a handler may act at this firing of its event."""

    def due(self, run: RunState, own: Any, batch_idx: int | None) -> bool:
        """``True`` where the handler may act; ``False`` where it would change nothing.

        Args:
            run: the run state the handler would receive.
            own: the hook's own state it would receive.
            batch_idx: the event's ``batch_idx`` (``None`` outside iteration events).
        """


def _check_counter(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in _COUNTERS:
        raise ValueError(f"{attribute.name} must be one of {', '.join(_COUNTERS)}, got {value!r}")


def _check_count(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < (1 if attribute.name == "n" else 0):
        accepted = "a positive int" if attribute.name == "n" else "an int >= 0"
        raise ValueError(f"Every.{attribute.name} must be {accepted}, got {value!r}")


#: A cadence compiled for dispatch: ``(code, n, start, extra)`` tuples, any of which due makes it
#: due. Codes 0-2: every ``n`` units of iter/batch/epoch from ``start``; 3-5: the last
#: iter/batch/epoch (``extra``: the mode of the batch's dataloader); 6: ``extra(run, own, batch_idx)``.
Leaf = tuple[int, int, int, Any]
_EVERY = {"iter": 0, "batch": 1, "epoch": 2}
_LAST = {"iter": 3, "batch": 4, "epoch": 5}
_ASK = 6


def leaves_due(leaves: tuple[Leaf, ...], run: RunState, own: Any, batch_idx: int | None) -> bool:
    """Whether any of ``leaves`` (:func:`compiled`) is due: one call, plain arithmetic."""
    for code, n, start, extra in leaves:
        if code == 0:
            done = run.iter + 1
        elif code == 1:
            done = (batch_idx or 0) + 1
        elif code == 2:
            done = run.epoch + 1
        elif code == 3:
            if run.iter + 1 == run.max_iters:
                return True
            continue
        elif code == 4:
            if (batch_idx or 0) + 1 == run.dataloader_len.get(extra, -1):
                return True
            continue
        elif code == 5:
            if run.epoch + 1 == run.max_epochs:
                return True
            continue
        else:
            if extra(run, own, batch_idx):
                return True
            continue
        if done >= start and (done - start) % n == 0:
            return True
    return False


def compiled(cadence: Cadence) -> tuple[Leaf, ...]:
    """``cadence`` as leaves (a cadence of another kind becomes one that asks its ``due``)."""
    leaves = getattr(cadence, "leaves", None)
    return leaves if isinstance(leaves, tuple) else ((_ASK, 0, 0, cadence.due),)


@attrs.frozen
class Every:
    """Due when the ``counter``-th unit just done is ``start + k * n`` (``k >= 0``).

    MMEngine's ``every_n_train_iters(runner, n, start)`` (``counter='iter'``),
    ``every_n_epochs`` (``'epoch'``) and ``every_n_inner_iters`` (``'batch'``, ``start=0``).

    Args:
        n: the period (a positive int).
        counter: ``'iter'``, ``'epoch'`` or ``'batch'``.
        start: the first unit counted (an int >= 0).
    """

    n: int = attrs.field(validator=_check_count)
    counter: Counter = attrs.field(default="iter", validator=_check_counter)
    start: int = attrs.field(default=0, validator=_check_count)

    @property
    def leaves(self) -> tuple[Leaf, ...]:
        """This cadence compiled (see :func:`leaves_due`)."""
        return ((_EVERY[self.counter], self.n, self.start, None),)

    def due(self, run: RunState, own: Any, batch_idx: int | None) -> bool:
        """Whether this firing ends a period."""
        return leaves_due(self.leaves, run, own, batch_idx)


@attrs.frozen
class Last:
    """Due at the last iteration of the run, the last epoch, or the last batch of an epoch.

    Args:
        counter: ``'iter'`` (``iter + 1 == max_iters``), ``'epoch'`` (``epoch + 1 ==
            max_epochs``) or ``'batch'`` (``batch_idx + 1`` equals the ``mode`` dataloader's
            length).
        mode: the dataloader ``'batch'`` measures (``'train'``, ``'val'`` or ``'test'``).
    """

    counter: Counter = attrs.field(default="iter", validator=_check_counter)
    mode: str = "train"

    @property
    def leaves(self) -> tuple[Leaf, ...]:
        """This cadence compiled (see :func:`leaves_due`)."""
        return ((_LAST[self.counter], 0, 0, self.mode),)

    def due(self, run: RunState, own: Any, batch_idx: int | None) -> bool:
        """Whether this firing is the last of its kind."""
        return leaves_due(self.leaves, run, own, batch_idx)


@attrs.frozen
class Ask:
    """Due where ``predicate(run, own, batch_idx)`` says so (keep it cheap: it runs every firing).

    Args:
        predicate: reads the run, the hook's own state and the batch index; returns a bool.
    """

    predicate: Callable[[RunState, Any, int | None], bool]

    @property
    def leaves(self) -> tuple[Leaf, ...]:
        """This cadence compiled (see :func:`leaves_due`)."""
        return ((_ASK, 0, 0, self.predicate),)

    def due(self, run: RunState, own: Any, batch_idx: int | None) -> bool:
        """The predicate's answer."""
        return bool(self.predicate(run, own, batch_idx))


def _cadences(value: Any) -> tuple[Cadence, ...]:
    parts = tuple(value)
    for part in parts:
        if not isinstance(part, Cadence):
            raise TypeError(f"AnyOf parts must be cadences (Every, Last, Ask, AnyOf), got {part!r}")
    return parts


@attrs.frozen
class AnyOf:
    """Due when any part is (none: never due — the handler never acts at that event).

    Args:
        parts: the cadences.
    """

    parts: tuple[Cadence, ...] = attrs.field(default=(), converter=_cadences)

    @property
    def leaves(self) -> tuple[Leaf, ...]:
        """The parts' leaves, flattened (see :func:`leaves_due`)."""
        return tuple(leaf for part in self.parts for leaf in compiled(part))

    def due(self, run: RunState, own: Any, batch_idx: int | None) -> bool:
        """Whether one of the parts is due."""
        return leaves_due(self.leaves, run, own, batch_idx)


__all__ = ["AnyOf", "Ask", "Cadence", "Counter", "Every", "Last", "Leaf", "compiled", "leaves_due"]
