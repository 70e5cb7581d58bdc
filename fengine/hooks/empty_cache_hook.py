"""EmptyCacheHook: release the accelerator's cached memory around epochs and iterations.

Pure part: stateless handlers emitting ``EmptyCache`` (the shell empties the CUDA cache where
there is one, and does nothing on CPU) before each epoch (``before_epoch``), after each epoch
(``after_epoch``) and after each iteration (``after_iter``) of training, validation and testing
alike, as MMEngine's hook does through its mode-generic methods. Façade: :class:`EmptyCacheHook`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from fengine.core.effects import EmptyCache
from fengine.core.events import Event
from fengine.core.pipeline import FnHook, Handler
from fengine.core.priority import Priority, PriorityLike
from fengine.core.run import EventInfo, RunState
from fengine.hooks.builtin import MODES, BuiltinHook, in_every_mode
from fengine.registry import HOOKS


def empty_cache(run: RunState, state: None, info: EventInfo) -> tuple[RunState, None]:
    """Ask the shell to empty the accelerator cache."""
    return run.emit(EmptyCache()), state


def empty_cache_fn_hook(
    name: str,
    *,
    before_epoch: bool = False,
    after_epoch: bool = True,
    after_iter: bool = False,
    priority: PriorityLike = Priority.NORMAL,
) -> FnHook[None]:
    """The hook as a pipeline member: :func:`empty_cache` at the chosen points of every mode.

    Args:
        name: the hook's unique name.
        before_epoch: before each train/val/test epoch.
        after_epoch: after each train/val/test epoch.
        after_iter: after each train/val/test iteration.
        priority: where it runs.

    Returns:
        The stateless :class:`~fengine.core.pipeline.FnHook`.
    """
    points = {
        "before_{}_epoch": before_epoch,
        "after_{}_epoch": after_epoch,
        "after_{}_iter": after_iter,
    }
    on: dict[Event, Handler[None]] = {
        Event(pattern.format(mode)): empty_cache
        for pattern, enabled in points.items()
        if enabled
        for mode in MODES
    }
    return FnHook(name=name, priority=priority, init=None, on=on)


@HOOKS.register_module()
class EmptyCacheHook(BuiltinHook):
    """Empties the accelerator's memory cache before/after epochs and after iterations.

    Args:
        before_epoch: empty before each epoch (train, val and test).
        after_epoch: empty after each epoch.
        after_iter: empty after each iteration.
    """

    handles: ClassVar[Mapping[Event, str]] = in_every_mode(
        {
            "before_{}_epoch": "Empty the cache before the epoch (with ``before_epoch``).",
            "after_{}_epoch": "Empty the cache after the epoch (with ``after_epoch``).",
            "after_{}_iter": "Empty the cache after the iteration (with ``after_iter``).",
        }
    )

    priority: PriorityLike = "NORMAL"
    # Every mode's methods exist, as in MMEngine; settings decide which of them empty the cache.

    def __init__(
        self, before_epoch: bool = False, after_epoch: bool = True, after_iter: bool = False
    ) -> None:
        for key, value in (
            ("before_epoch", before_epoch),
            ("after_epoch", after_epoch),
            ("after_iter", after_iter),
        ):
            if not isinstance(value, bool):
                raise TypeError(f"EmptyCacheHook {key} must be a bool, got {value!r}")
        self._do_before_epoch = before_epoch
        self._do_after_epoch = after_epoch
        self._do_after_iter = after_iter

    def pure_fn_hook(self, name: str) -> FnHook[None]:
        """This hook's pure handlers as a pipeline member named ``name``."""
        return empty_cache_fn_hook(
            name,
            before_epoch=self._do_before_epoch,
            after_epoch=self._do_after_epoch,
            after_iter=self._do_after_iter,
            priority=self.priority,
        )
