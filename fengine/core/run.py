"""The records a hook sees: the run's state and one event's arguments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from torch import Tensor

from fengine.core.effects import Effect


@attrs.frozen(eq=False, slots=False)
class RunState:
    """The run as hooks see it: counters, static facts, live model tensors, hook states, effects.

    Counters follow MMEngine (``epoch``/``iter`` count *completed* epochs/iterations). The shell
    evolves this record as the loop advances; handlers return it unchanged (the same object) when
    they have nothing to say, or evolved with new effects appended via :meth:`emit`.

    Hot record: no validators, and no slots (it is copied several times an iteration, and copying
    an instance dictionary is one C-level update where a slotted copy sets each field in turn).
    """

    epoch: int = 0
    iter: int = 0
    max_epochs: int = 0
    max_iters: int = 0
    #: ``True`` for an epoch-based train loop, ``False`` for an iteration-based one.
    train_by_epoch: bool = True
    #: ``len(dataloader)`` per mode (``'train'``, ``'val'``, ``'test'``) that exists.
    dataloader_len: Mapping[str, int] = attrs.field(factory=dict)
    work_dir: str = ""
    log_dir: str = ""
    rank: int = 0
    world_size: int = 1
    #: Run facts: ``experiment_name``, ``seed``, ``cfg`` (text), ``dataset_meta``.
    meta: Mapping[str, Any] = attrs.field(factory=dict)
    #: Live references to the (unwrapped) model's parameters and buffers, ``state_dict`` names.
    params: Mapping[str, Tensor] = attrs.field(factory=dict)
    buffers: Mapping[str, Tensor] = attrs.field(factory=dict)
    #: Whether the run was started with ``resume`` (EMAHook's loading rule needs it).
    resumed: bool = False
    stop_training: bool = False
    #: Each hook's own state, under the hook's unique name.
    hook_states: Mapping[str, Any] = attrs.field(factory=dict)
    #: Requests to the world, in emission order; the shell empties it after carrying them out.
    effects: tuple[Effect, ...] = ()

    def emit(self, *effects: Effect) -> RunState:
        """Return a copy with ``effects`` appended."""
        return self._copy({"effects": self.effects + effects})

    def replace(self, **changes: Any) -> RunState:
        """Return a copy with ``changes`` applied: ``attrs.evolve`` at about a third of the cost.

        The record is copied several times an event, so this copies the instance dictionary at
        once instead of passing every field through the constructor.

        Args:
            **changes: new values by field name.

        Returns:
            The new record (the same class, every other field shared with this one).

        Raises:
            TypeError: a name that is not a field (the message lists the fields).
        """
        if not changes.keys() <= _FIELDS:
            unknown = sorted(changes.keys() - _FIELDS)
            raise TypeError(
                f"RunState.replace() got an unknown field {unknown[0]!r}; fields: {', '.join(_FIELDS)}"
            )
        return self._copy(changes)

    def _copy(self, changes: Mapping[str, Any]) -> RunState:
        copy = _new(self.__class__)
        fields = copy.__dict__
        fields.update(self.__dict__)
        fields.update(changes)
        return copy


_FIELDS = dict.fromkeys(field.name for field in attrs.fields(RunState)).keys()
_new = object.__new__


@attrs.frozen(eq=False)
class EventInfo:
    """One event's arguments, as MMEngine passes them to ``Hook`` methods.

    ``time`` is the shell's clock (``time.time()``) read once for the event, so timing hooks stay
    pure. ``checkpoint`` is the dict being saved/loaded for the checkpoint events. ``runner`` is the
    shell's handle, used only by the adapter that runs MMEngine-style class hooks.
    """

    batch_idx: int | None = None
    data_batch: Any = None
    outputs: Any = None
    metrics: Mapping[str, Any] | None = None
    checkpoint: Mapping[str, Any] | None = None
    time: float = 0.0
    runner: Any = None
