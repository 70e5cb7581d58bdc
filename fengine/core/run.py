"""The records a hook sees: the run's state and one event's arguments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from torch import Tensor

from fengine.core.effects import Effect
from fengine.core.state import TrainState, check_fields

#: The fields of :class:`RunState` that live in its :class:`~fengine.core.state.TrainState`.
_IN_STATE = {"epoch": "epoch", "iter": "iter", "params": "params", "buffers": "buffers", "hook_states": "hook_states"}


@attrs.frozen(eq=False, slots=False, init=False)
class RunState:
    """The run as hooks see it: the run's one :class:`~fengine.core.state.TrainState` and static facts.

    ``state`` is the record the train step evolves (parameters, buffers, optimizer state,
    counters, hook states); ``epoch``, ``iter``, ``params``, ``buffers`` and ``hook_states`` are
    read from it, never stored twice. Counters follow MMEngine (``epoch``/``iter`` count
    *completed* epochs/iterations). The other fields are facts of the run (its length, folders,
    rank) and the event's bookkeeping (``stop_training``, ``effects``). Handlers return the record
    unchanged (the same object) when they have nothing to say, or evolved with new effects
    appended via :meth:`emit`.

    Built like a flat record: ``RunState(epoch=1, iter=10, hook_states={...}, max_iters=40)``
    (or with ``state=`` a ``TrainState``, the values given beside it applied on top).

    Hot record: no validators, and no slots (it is copied several times an iteration, and copying
    an instance dictionary is one C-level update where a slotted copy sets each field in turn).
    """

    state: TrainState[Any]
    max_epochs: int
    max_iters: int
    #: ``True`` for an epoch-based train loop, ``False`` for an iteration-based one.
    train_by_epoch: bool
    #: ``len(dataloader)`` per mode (``'train'``, ``'val'``, ``'test'``) that exists.
    dataloader_len: Mapping[str, int]
    work_dir: str
    log_dir: str
    rank: int
    world_size: int
    #: Run facts: ``experiment_name``, ``seed``, ``cfg`` (text), ``dataset_meta``.
    meta: Mapping[str, Any]
    #: Whether the run was started with ``resume`` (EMAHook's loading rule needs it).
    resumed: bool
    stop_training: bool
    #: Requests to the world, in emission order; the shell empties it after carrying them out.
    effects: tuple[Effect, ...]

    def __init__(
        self,
        state: TrainState[Any] | None = None,
        max_epochs: int = 0,
        max_iters: int = 0,
        train_by_epoch: bool = True,
        dataloader_len: Mapping[str, int] | None = None,
        work_dir: str = "",
        log_dir: str = "",
        rank: int = 0,
        world_size: int = 1,
        meta: Mapping[str, Any] | None = None,
        resumed: bool = False,
        stop_training: bool = False,
        effects: tuple[Effect, ...] = (),
        **in_state: Any,
    ) -> None:
        if not in_state.keys() <= _IN_STATE.keys():
            check_fields("RunState()", {k: v for k, v in in_state.items() if k not in _IN_STATE}, _FIELDS)
        base = state if state is not None else TrainState(params={}, buffers={}, opt_state=None)
        fields = self.__dict__
        fields.update(
            state=base.replace(**in_state) if in_state else base,
            max_epochs=max_epochs,
            max_iters=max_iters,
            train_by_epoch=train_by_epoch,
            dataloader_len={} if dataloader_len is None else dataloader_len,
            work_dir=work_dir,
            log_dir=log_dir,
            rank=rank,
            world_size=world_size,
            meta={} if meta is None else meta,
            resumed=resumed,
            stop_training=stop_training,
            effects=effects,
        )

    @property
    def epoch(self) -> int:
        """Completed training epochs (the state's)."""
        return self.state.epoch

    @property
    def iter(self) -> int:
        """Completed training iterations (the state's)."""
        return self.state.iter

    @property
    def params(self) -> Mapping[str, Tensor]:
        """The model's parameters by name (the state's tensors, which the module holds)."""
        return self.state.params

    @property
    def buffers(self) -> Mapping[str, Tensor]:
        """The model's buffers by name (the state's tensors, which the module holds)."""
        return self.state.buffers

    @property
    def hook_states(self) -> Mapping[str, Any]:
        """Each hook's own state, under the hook's unique name (the state's)."""
        return self.state.hook_states

    def emit(self, *effects: Effect) -> RunState:
        """Return a copy with ``effects`` appended."""
        return self._copy({"effects": self.effects + effects})

    def replace(self, **changes: Any) -> RunState:
        """Return a copy with ``changes`` applied: ``attrs.evolve`` at about a third of the cost.

        The record is copied several times an event, so this copies the instance dictionary at
        once instead of passing every field through the constructor. ``epoch``, ``iter``,
        ``params``, ``buffers`` and ``hook_states`` go into a new ``state``.

        Args:
            **changes: new values by field name.

        Returns:
            The new record (the same class, every other field shared with this one).

        Raises:
            TypeError: a name that is not a field (the message lists the fields).
        """
        keys = changes.keys()
        if keys <= _OWN:  # the common case: no field of the state among them
            return self._copy(changes)
        if not keys <= _FIELDS:
            check_fields("RunState.replace()", changes, _FIELDS)
        moved = {k: changes.pop(k) for k in _IN_STATE.keys() & keys}
        changes["state"] = changes.get("state", self.state).replace(**moved)
        return self._copy(changes)

    def with_hook_state(self, name: str, value: Any) -> RunState:
        """Return a copy whose hook ``name`` has state ``value`` (what the pipeline does after each handler)."""
        state = self.state
        return self._copy({"state": state.replace(hook_states={**state.hook_states, name: value})})

    def _copy(self, changes: Mapping[str, Any]) -> RunState:
        copy = _new(self.__class__)
        fields = copy.__dict__
        fields.update(self.__dict__)
        fields.update(changes)
        return copy


_NAMES = [field.name for field in attrs.fields(RunState)]
#: RunState's own fields: a change of these alone keeps its TrainState.
_OWN = frozenset(_NAMES)
_FIELDS = dict.fromkeys([*_IN_STATE, *_NAMES]).keys()
_new = object.__new__


@attrs.frozen(eq=False)
class EventInfo:
    """One event's arguments, as MMEngine passes them to ``Hook`` methods.

    ``time`` is the shell's clock (``time.time()``) read once for the event, so timing hooks stay
    pure. ``checkpoint`` is the dict being saved/loaded for the checkpoint events. ``runner`` is the
    shell's handle, used only by the adapter that runs MMEngine-style class hooks.
    ``runtime_info`` is a read-only copy of the message hub's runtime info as ``before_train``
    starts (``None`` at the other events): MMEngine's ``CheckpointHook`` takes its best
    checkpoints and kept steps from there, whoever wrote them.
    """

    batch_idx: int | None = None
    data_batch: Any = None
    outputs: Any = None
    metrics: Mapping[str, Any] | None = None
    checkpoint: Mapping[str, Any] | None = None
    time: float = 0.0
    runner: Any = None
    runtime_info: Mapping[str, Any] | None = None
