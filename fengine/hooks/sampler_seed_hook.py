"""DistSamplerSeedHook: tell the train sampler which epoch starts, so shuffling differs per epoch.

Pure part: :func:`before_train_epoch`, which emits ``SetSamplerEpoch(run.epoch)`` (0-based); the
runner calls ``set_epoch`` on the train dataloader's sampler, or on its batch sampler's sampler,
whichever has it. The hook keeps no state. Façade: :class:`DistSamplerSeedHook`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from fengine.core.effects import SetSamplerEpoch
from fengine.core.events import Event
from fengine.core.pipeline import FnHook
from fengine.core.priority import Priority, PriorityLike
from fengine.core.run import EventInfo, RunState
from fengine.hooks.builtin import BuiltinHook
from fengine.registry import HOOKS


def before_train_epoch(run: RunState, state: None, info: EventInfo) -> tuple[RunState, None]:
    """Ask the shell to set the train sampler's epoch to the epoch about to run."""
    return run.emit(SetSamplerEpoch(run.epoch)), state


def sampler_seed_fn_hook(name: str, priority: PriorityLike = Priority.NORMAL) -> FnHook[None]:
    """The hook as a pipeline member.

    Args:
        name: the hook's unique name in the pipeline.
        priority: where it runs; MMEngine's ``NORMAL`` by default.

    Returns:
        The :class:`~fengine.core.pipeline.FnHook` (stateless).
    """
    return FnHook(
        name=name, priority=priority, init=None, on={Event.BEFORE_TRAIN_EPOCH: before_train_epoch}
    )


@HOOKS.register_module()
class DistSamplerSeedHook(BuiltinHook):
    """Calls ``set_epoch(epoch)`` on the train sampler before each train epoch."""

    handles: ClassVar[Mapping[Event, str]] = {Event.BEFORE_TRAIN_EPOCH: "Set the train sampler's epoch."}

    priority: PriorityLike = "NORMAL"

    def pure_fn_hook(self, name: str) -> FnHook[None]:
        """This hook's pure handler as a pipeline member named ``name``."""
        return sampler_seed_fn_hook(name, self.priority)
