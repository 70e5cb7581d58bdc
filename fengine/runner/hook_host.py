"""The runner's hook side: registration in MMEngine's order, the one run-state cell, dispatch.

Hooks are kept in call order (MMEngine's insertion rule: after the last hook whose priority value
is lower or equal, so ties run first-registered first) and mirrored by a
:class:`~fengine.core.pipeline.Pipeline` of their functional forms. Firing an event looks up the
precomputed handler tuple; an event no hook handles, or none is due at (their cadences), costs
that lookup and nothing else, and the clock is read only when someone acts at the event.

Effects are data; carrying them out is the shell's commit point per hook. ``dispatch`` is a pure
fold over the handlers; the shell passes it ``carry_out``, which it calls right after each hook
whose handler emitted effects, so one hook's requests (a scheduler step, a stop, a logged scalar)
take effect before the next hook of the event runs, as MMEngine's imperative hooks expect.
Handlers never receive a result of an effect: what an effect produces (a checkpoint's path, the
metrics of a validation) reaches hooks through the next event's :class:`EventInfo` or the message
hub. Checkpoint writes and file deletions are deferred to the end of the event (:attr:`HookHost.event_end`),
so a checkpoint holds every hook's state after the event and a failed write deletes nothing.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import attrs
from torch import nn

from fengine.core.events import STAGES, Event
from fengine.core.pipeline import FnHook, Pipeline, dispatch
from fengine.core.priority import Priority, PriorityLike, get_priority
from fengine.core.run import EventInfo, RunState
from fengine.hooks.bound import bind_runner
from fengine.hooks.hook import Hook
from fengine.registry import HOOKS

#: MMEngine's default hooks, in registration order.
DEFAULT_HOOKS: Mapping[str, Mapping[str, Any]] = {
    "runtime_info": {"type": "RuntimeInfoHook"},
    "timer": {"type": "IterTimerHook"},
    "sampler_seed": {"type": "DistSamplerSeedHook"},
    "logger": {"type": "LoggerHook"},
    "param_scheduler": {"type": "ParamSchedulerHook"},
    "checkpoint": {"type": "CheckpointHook", "interval": 1},
}

_EVENT_NAMES = frozenset(e.value for e in Event)
_INFO_KEYS = ("batch_idx", "data_batch", "outputs", "metrics", "checkpoint")


class HookHost:
    """The run's record cell, its hooks in call order and the dispatch of events to them.

    Args:
        run: the run's record at the start.
        owner: what hooks are bound to and receive as ``runner`` (the :class:`Runner` façade).
        carry_out: carries out the effects of a state not carried out yet, returning the state
            after them (the effect interpreter's :meth:`carry_out`).
        planned_run: the run as the configured train loop would start it (its length and the
            training data's ``metainfo``); what a hook run by hand before ``train()`` sees.
    """

    def __init__(
        self,
        run: RunState,
        owner: Any,
        carry_out: Callable[[RunState], RunState],
        planned_run: Callable[[RunState], RunState],
        runtime_info: Callable[[], Mapping[str, Any]],
    ) -> None:
        #: The run's record: what hooks see; loops and effects replace it.
        self.run = run
        self._owner = owner
        #: Carries out a state's pending effects (the effect interpreter's); see the module docstring.
        self.carry_out = carry_out
        self._planned_run = planned_run
        #: Reads the message hub's runtime info (given to ``before_train`` as ``EventInfo.runtime_info``).
        self._runtime_info = runtime_info
        self.hook_list: list[Hook] = []
        self.fn_hooks: list[FnHook[Any]] = []
        self.pipeline = Pipeline.of(())
        #: States of hooks run here by hand without being registered (never checkpointed).
        self.detached: weakref.WeakKeyDictionary[Hook, Any] = weakref.WeakKeyDictionary()
        #: Work an effect deferred to the end of the event being dispatched (checkpoint writes,
        #: so they hold every hook's state after the event; then deletions).
        self.event_end: list[Callable[[], None]] = []
        #: The checkpoint dicts being saved or loaded (innermost last): ``AddToCheckpoint`` edits
        #: the innermost.
        self.open_checkpoints: list[dict[str, Any]] = []
        #: How many of ``run.effects`` are carried out already. Effects accumulate during an
        #: event and are cleared once at its end: one record update per event, not per hook.
        self.done = 0

    def follow_model(self, model: nn.Module) -> None:
        """Make the record's parameters and buffers ``model``'s own tensors (its ``state_dict`` names)."""
        names = {name for name, _ in model.named_parameters()}
        tensors = model.state_dict(keep_vars=True)
        self.run = self.run.replace(
            params={k: v for k, v in tensors.items() if k in names},
            buffers={k: v for k, v in tensors.items() if k not in names},
        )

    # -- registration ------------------------------------------------------------------------------
    @property
    def hook_names(self) -> list[str]:
        """The unique name of each hook in call order (its key in states and checkpoints)."""
        return [fn.name for fn in self.fn_hooks]

    def replace_hooks(self, hooks: list[Hook]) -> None:
        """Make ``hooks`` the registered hooks, in that order (MMEngine's ``runner._hooks = [...]``)."""
        fn_hooks: list[FnHook[Any]] = []
        for hook in hooks:
            fn_hooks.append(_fn_hook(hook, _unique_name(type(hook).__name__, fn_hooks)))
        self.pipeline = Pipeline.of(fn_hooks)
        self.hook_list, self.fn_hooks = list(hooks), fn_hooks

    def register_hook(self, hook: Hook | Mapping[str, Any], priority: PriorityLike | None = None) -> None:
        """Register ``hook`` in MMEngine's order.

        The effective priority is ``priority`` if given, else a config's ``'priority'`` key, else
        the hook's own ``priority`` attribute; it is stored on the hook as given. The hook goes
        right after the last registered hook whose priority value is lower or equal, so hooks of
        equal priority run in registration order. Any number of hooks of one class may be
        registered (as in MMEngine); each gets a unique name, the key of its state in checkpoints:
        its class name, then ``_1``, ``_2`` ... for the second, third ... registered (e.g.
        ``IterTimerHook_1``), so a run built the same way names its hooks the same way and a
        checkpoint of it resumes each hook's state into the hook registered in the same place.
        Two hooks that own the same state (:attr:`~fengine.hooks.Hook.owns`, e.g. two
        ``EMAHook`` s) are an error. (Unlike MMEngine, a config dict is not modified.)

        Args:
            hook: a :class:`~fengine.hooks.Hook` or a config dict built through ``HOOKS``.
            priority: overrides the hook's priority.

        Raises:
            TypeError: ``hook`` is neither a Hook nor a dict, or its config builds something
                that is not a Hook, or the priority has the wrong type.
            ValueError: an int priority outside ``0..100``, or ``hook`` owns state that a
                registered hook owns already (naming both and the state).
            KeyError: an unknown priority name or hook type (naming close matches).
        """
        if isinstance(hook, Mapping):
            cfg = dict(hook)
            from_cfg = cfg.pop("priority", None)
            built = HOOKS.build(cfg)
            if not isinstance(built, Hook):
                raise TypeError(
                    f"hook config {dict(hook)!r} built a {type(built).__name__}, not a Hook; "
                    "register classes derived from fengine.hooks.Hook"
                )
            hook, priority = built, priority if priority is not None else from_cfg
        elif not isinstance(hook, Hook):
            raise TypeError(
                f"hook should be an instance of Hook or dict, but got {hook!r} "
                f"of type {type(hook).__name__}"
            )
        if priority is not None:
            get_priority(priority)
            hook.priority = priority
        value = get_priority(hook.priority)
        index = 0
        for i in range(len(self.hook_list) - 1, -1, -1):
            if value >= get_priority(self.hook_list[i].priority):
                index = i + 1
                break
        fn_hooks = list(self.fn_hooks)
        fn_hooks.insert(index, _fn_hook(hook, _unique_name(type(hook).__name__, fn_hooks)))
        self.pipeline = Pipeline.of(fn_hooks)  # checks names and owned state before any change
        self.fn_hooks = fn_hooks
        self.hook_list.insert(index, hook)
        bind_runner(hook, self._owner)

    def register_default_hooks(
        self, hooks: Mapping[str, Hook | Mapping[str, Any] | None] | None = None, train_cfg: Any = None
    ) -> None:
        """Register MMEngine's six default hooks merged with ``hooks``.

        A key set to ``None`` removes that default; any other value replaces the default of
        that key (keeping its place) or is added after the defaults.

        Args:
            hooks: the user's ``default_hooks``.
            train_cfg: the train loop's config (the default checkpoint interval follows it).

        Raises:
            KeyError: ``None`` given for a key that is not a default hook.
            TypeError: ``hooks`` is not a dict.
        """
        merged: dict[str, Any] = {**DEFAULT_HOOKS, "checkpoint": _default_checkpoint_cfg(train_cfg)}
        if hooks is not None:
            if not isinstance(hooks, Mapping):
                raise TypeError(f"default_hooks must be a dict of name -> hook, got {hooks!r}")
            for key, value in hooks.items():
                if value is None:
                    if key not in DEFAULT_HOOKS:
                        raise KeyError(
                            f"default_hooks[{key!r}] is None, but {key!r} is not a default hook; "
                            f"None removes one of {', '.join(DEFAULT_HOOKS)}"
                        )
                    merged.pop(key, None)
                else:
                    merged[key] = value
        for value in merged.values():
            self.register_hook(value)

    def register_custom_hooks(self, hooks: list[Hook | Mapping[str, Any]]) -> None:
        """Register each of ``hooks`` in list order (see :meth:`register_hook`)."""
        if not isinstance(hooks, (list, tuple)):
            raise TypeError(f"custom_hooks must be a list of hooks or hook configs, got {hooks!r}")
        for hook in hooks:
            self.register_hook(hook)

    def register_hooks(
        self,
        default_hooks: Mapping[str, Hook | Mapping[str, Any] | None] | None = None,
        custom_hooks: list[Hook | Mapping[str, Any]] | None = None,
        train_cfg: Any = None,
    ) -> None:
        """Register the default hooks, then the custom ones."""
        self.register_default_hooks(default_hooks, train_cfg)
        if custom_hooks is not None:
            self.register_custom_hooks(custom_hooks)

    def get_hooks_info(self) -> str:
        """MMEngine's per-stage listing of hooks: ``(PRIORITY) ClassName`` lines per stage."""
        triggered = [(hook, set(hook.get_triggered_stages())) for hook in self.hook_list]
        blocks = []
        for stage in STAGES:
            lines = [
                f"({_priority_label(hook.priority):<12}) {type(hook).__name__:<35}"
                for hook, stages in triggered
                if stage.value in stages
            ]
            if lines:
                blocks.append(f"{stage.value}:\n" + "\n".join(lines) + "\n -------------------- ")
        return "\n".join(blocks)

    # -- dispatch ------------------------------------------------------------------------------
    def fire(self, event: Event, batch_idx: int | None = None, data_batch: Any = None,
             outputs: Any = None, metrics: Any = None, checkpoint: Any = None) -> None:
        """Dispatch ``event`` to the hooks due at it, carrying out their effects; then the event's deferred work."""
        if not self.pipeline.due(event, self.run, batch_idx):  # no handler due: no cost
            return
        snapshot = self._info_snapshot() if event is Event.BEFORE_TRAIN else None
        info = EventInfo(batch_idx, data_batch, outputs, metrics, checkpoint, time.time(), self._owner, snapshot)
        mark = len(self.event_end)
        try:
            run = dispatch(self.pipeline, event, self.run, info, self.carry_out)
        except BaseException:
            self.abandon_event(mark)
            raise
        self.end_event(run, mark)

    def _info_snapshot(self) -> Mapping[str, Any]:
        """The hub's runtime info, read-only (what ``before_train`` handlers get)."""
        return MappingProxyType(dict(self._runtime_info()))

    def end_event(self, run: RunState, mark: int) -> None:
        """Take ``run`` (its effects done) as the record and run the work deferred since ``mark``."""
        self.run = run.replace(effects=()) if run.effects else run
        self.done = 0
        tasks = self.event_end[mark:]
        del self.event_end[mark:]
        for task in tasks:
            task()

    def abandon_event(self, mark: int) -> None:
        """Drop the work deferred since ``mark`` and the pending effects (a hook failed mid-event)."""
        # A hook failed mid-event: nothing it deferred is written, and no effect is replayed.
        del self.event_end[mark:]
        if self.run.effects:
            self.run = self.run.replace(effects=())
        self.done = 0

    def call_hook(self, fn_name: str, **kwargs: Any) -> None:
        """Call ``fn_name`` on every hook in order, as MMEngine's ``call_hook``.

        A standard event goes through the pipeline (with ``batch_idx``, ``data_batch``,
        ``outputs``, ``metrics``, ``checkpoint`` keywords); any other name calls that method on
        each hook that has it, passing the runner and ``kwargs``.

        Raises:
            TypeError: unexpected keywords for a standard event, or a hook method rejecting
                the keywords (the hook is named).
        """
        if fn_name in _EVENT_NAMES:
            unknown = sorted(set(kwargs) - set(_INFO_KEYS))
            if unknown:
                raise TypeError(f"call_hook({fn_name!r}) got unexpected keywords {unknown}; accepted {list(_INFO_KEYS)}")
            self.fire(Event(fn_name), **kwargs)
            return
        for hook in list(self.hook_list):
            method = getattr(hook, fn_name, None)
            if method is None:
                continue
            try:
                method(self._owner, **kwargs)
            except TypeError as error:
                raise TypeError(f"{error} in {hook!r}") from None

    def run_hook(self, hook: Hook, event: Event, info: EventInfo) -> None:
        """Run ``hook``'s handler for ``event`` on the current state and carry out its effects.

        This is what built-in hooks' MMEngine-named methods call. A hook that is not registered
        keeps its state beside the run (not in it, so it never enters checkpoints).
        """
        index = next((i for i, h in enumerate(self.hook_list) if h is hook), None)
        fn = self.fn_hooks[index] if index is not None else hook.to_fn_hook(f"{type(hook).__name__}@detached")
        if event not in fn.on:
            return
        runtime_info = info.runtime_info
        if runtime_info is None and event is Event.BEFORE_TRAIN:
            runtime_info = self._info_snapshot()
        runner = info.runner if info.runner is not None else self._owner
        info = attrs.evolve(info, time=info.time or time.time(), runner=runner, runtime_info=runtime_info)
        single = Pipeline(hooks=(fn,), by_event={event: ((fn, fn.on[event]),)})
        run = self.run
        if index is None:
            run = run.replace(hook_states={**run.hook_states, fn.name: self.detached.get(hook, fn.init)})
        bind_runner(hook, self._owner)
        if run.max_iters == 0:
            # Called by hand before train(): the run as the configured loop starts it (MMEngine).
            run = self._planned_run(run)
        # Called by hand with a checkpoint dict, the hook's AddToCheckpoint effects edit that dict.
        checkpoint = info.checkpoint if isinstance(info.checkpoint, dict) else None
        opened = checkpoint is not None and not (self.open_checkpoints and self.open_checkpoints[-1] is checkpoint)
        if checkpoint is not None and opened:
            self.open_checkpoints.append(checkpoint)
        mark = len(self.event_end)
        try:
            run = dispatch(single, event, run, info, self.carry_out)
        except BaseException:
            self.abandon_event(mark)
            raise
        finally:
            if opened:
                self.open_checkpoints.pop()
        if index is None:
            states = dict(run.hook_states)
            self.detached[hook] = states.pop(fn.name)
            run = run.replace(hook_states=states)
        self.end_event(run, mark)

    def state_of(self, hook: Hook) -> Any:
        """The current state of ``hook``: registered here, or run here by hand (else ``None``)."""
        index = next((i for i, h in enumerate(self.hook_list) if h is hook), None)
        if index is None:
            return self.detached.get(hook)
        fn = self.fn_hooks[index]
        return self.run.hook_states.get(fn.name, fn.init)

    def hook_states(self) -> dict[str, Any]:
        """Every registered hook's current state, by name (initial states for untouched hooks)."""
        states = self.run.hook_states
        return {fn.name: states.get(fn.name, fn.init) for fn in self.fn_hooks}


def _default_checkpoint_cfg(train_cfg: Any) -> dict[str, Any]:
    """The default CheckpointHook: every epoch, or with each validation of an iteration loop.

    MMEngine's default ``CheckpointHook(interval=1, by_epoch=True)`` saves a single
    ``epoch_1.pth`` at the end of an iteration-based run; fengine's hook follows the loop kind,
    so the default saves ``iter_N.pth`` every ``val_interval`` iterations instead of every one.
    """
    if isinstance(train_cfg, Mapping) and (
        train_cfg.get("by_epoch") is False or train_cfg.get("type") == "IterBasedTrainLoop"
    ):
        return {**DEFAULT_HOOKS["checkpoint"], "interval": int(train_cfg.get("val_interval", 1000))}
    return dict(DEFAULT_HOOKS["checkpoint"])


def _unique_name(base: str, fn_hooks: list[FnHook[Any]]) -> str:
    """``base``, or ``base_n`` for the smallest ``n >= 1`` no hook in ``fn_hooks`` is named."""
    taken = {fn.name for fn in fn_hooks}
    name, n = base, 0
    while name in taken:
        n += 1
        name = f"{base}_{n}"
    return name


def current_hook_name(saved: str) -> str:
    """A hook's name as registration gives it today, for a name read from a checkpoint.

    Checkpoints written before hooks of one class were named ``Class_1``, ``Class_2`` ... named
    them ``Class#2``, ``Class#3`` ...; those names map onto today's, other names are unchanged.
    """
    base, sep, number = saved.rpartition("#")
    return f"{base}_{int(number) - 1}" if sep and number.isdigit() and int(number) >= 2 else saved


def _fn_hook(hook: Hook, name: str) -> FnHook[Any]:
    """``hook``'s pipeline member, carrying what its class owns."""
    fn = hook.to_fn_hook(name)
    return fn if hook.owns <= fn.owns else attrs.evolve(fn, owns=fn.owns | hook.owns)


def _priority_label(priority: PriorityLike) -> Any:
    try:
        return Priority(priority).name
    except ValueError:
        return priority
