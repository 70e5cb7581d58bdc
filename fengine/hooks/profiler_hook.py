"""ProfilerHook: record a ``torch.profiler`` trace of the first training epoch or iterations.

Pure part: :class:`ProfilerState` and handlers emitting ``ProfilerAction`` effects, which the
shell's profiler session carries out:

* ``before_run`` of a run that trains: ``'start'`` with the profiler's options (activities,
  schedule, ``on_trace_ready``, the recording flags, ``json_trace_path``);
* ``after_train_iter``: ``'step'``; by iteration, ``'export'`` after iteration
  ``profile_iters`` (``run.iter == profile_iters - 1``);
* ``after_train_epoch``: ``'export'`` if still recording (so by epoch, the first epoch).

``'export'`` closes the profiler and writes ``json_trace_path`` (a Chrome trace) when set.
Façade: :class:`ProfilerHook`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import attrs
import torch

from fengine.core import plain
from fengine.core.effects import LogText, ProfilerAction
from fengine.core.events import Event
from fengine.core.pipeline import FnHook
from fengine.core.priority import Priority, PriorityLike
from fengine.core.run import EventInfo, RunState
from fengine.hooks.builtin import BuiltinHook
from fengine.registry import HOOKS


def check_kineto() -> bool:
    """Whether torch was built with Kineto, which :class:`ProfilerHook` needs (MMEngine's name)."""
    return bool(torch.profiler.kineto_available())


@plain.register("hooks.ProfilerState")
@attrs.frozen
class ProfilerState:
    """Whether the profiler is recording, and whether it has been exported."""

    active: bool = False
    closed: bool = False


def profiler_fn_hook(
    name: str,
    options: Mapping[str, Any],
    *,
    by_epoch: bool = True,
    profile_iters: int = 1,
    priority: PriorityLike = Priority.VERY_LOW,
) -> FnHook[ProfilerState]:
    """ProfilerHook's pure handlers as a pipeline member (see the module docstring).

    Args:
        name: the hook's unique name.
        options: the ``'start'`` options of the shell's profiler session.
        by_epoch: profile the first epoch (else the first ``profile_iters`` iterations).
        profile_iters: how many iterations to profile when not ``by_epoch``.
        priority: where it runs.

    Returns:
        The :class:`~fengine.core.pipeline.FnHook`.
    """

    def before_run(
        run: RunState, state: ProfilerState, info: EventInfo
    ) -> tuple[RunState, ProfilerState]:
        length = run.max_epochs if by_epoch else run.max_iters
        if length == 0 or state.active or state.closed:  # nothing to train: nothing to profile
            return run, state
        if length < profile_iters:
            unit = "epochs" if by_epoch else "iterations"
            raise ValueError(f"profile_iters={profile_iters} exceeds the run's {length} {unit}")
        run = run.emit(ProfilerAction("start", options), LogText("profiler is profiling..."))
        return run, ProfilerState(active=True)

    def export(run: RunState) -> tuple[RunState, ProfilerState]:
        run = run.emit(LogText("profiler may take a few minutes..."), ProfilerAction("export"))
        return run, ProfilerState(active=False, closed=True)

    def after_train_iter(
        run: RunState, state: ProfilerState, info: EventInfo
    ) -> tuple[RunState, ProfilerState]:
        if not state.active:
            return run, state
        run = run.emit(ProfilerAction("step"))
        if not by_epoch and run.iter == profile_iters - 1:
            return export(run)
        return run, state

    def after_train_epoch(
        run: RunState, state: ProfilerState, info: EventInfo
    ) -> tuple[RunState, ProfilerState]:
        return export(run) if state.active else (run, state)

    on = {
        Event.BEFORE_RUN: before_run,
        Event.AFTER_TRAIN_ITER: after_train_iter,
        Event.AFTER_TRAIN_EPOCH: after_train_epoch,
    }
    return FnHook(name=name, priority=priority, init=ProfilerState(), on=on)


def _activities(
    activities: Sequence[Any] | None, activity_with_cpu: bool, activity_with_cuda: bool
) -> tuple[str, ...]:
    if activities is None:
        chosen = [n for n, on in (("cpu", activity_with_cpu), ("cuda", activity_with_cuda)) if on]
    else:
        if isinstance(activities, str) or not isinstance(activities, Sequence):
            raise TypeError(f"activities must be a list of 'cpu'/'cuda', got {activities!r}")
        chosen = []
        for item in activities:
            key = item.name if isinstance(item, torch.profiler.ProfilerActivity) else item
            if not isinstance(key, str) or key.lower() not in ("cpu", "cuda"):
                raise ValueError(
                    f"activities entries must be 'cpu', 'cuda' or a ProfilerActivity of those, got {item!r}"
                )
            chosen.append(key.lower())
    if not chosen:
        raise ValueError(
            "ProfilerHook needs at least one activity: pass activities=['cpu'] or "
            "activity_with_cpu=True (torch refuses a profile with none)"
        )
    return tuple(dict.fromkeys(chosen))


def _check_trace_handler(on_trace_ready: Callable[..., Any] | Mapping[str, Any] | None) -> None:
    if on_trace_ready is None or callable(on_trace_ready):
        return
    if isinstance(on_trace_ready, Mapping):
        kind = on_trace_ready.get("type")
        if kind not in ("log_trace", "tb_trace"):
            raise ValueError(f'trace_type should be "log_trace" or "tb_trace", but got {kind!r}')
        return
    raise ValueError(
        f"``on_trace_ready`` should be a handler, or dict, or None, but got {on_trace_ready!r}"
    )


@HOOKS.register_module()
class ProfilerHook(BuiltinHook):
    """Profiles the first epoch (or the first ``profile_iters`` iterations) with ``torch.profiler``.

    Args:
        by_epoch: profile the first epoch; else the first ``profile_iters`` iterations.
        profile_iters: iterations to profile (1 when ``by_epoch``).
        activities: ``'cpu'``/``'cuda'`` (or ``ProfilerActivity``); from the two
            ``activity_with_*`` flags when ``None``.
        schedule: keyword arguments of ``torch.profiler.schedule``.
        on_trace_ready: a callable, ``dict(type='log_trace', **table_kwargs)`` (logs
            ``key_averages().table``) or ``dict(type='tb_trace', dir_name=...)`` (relative
            ``dir_name`` under the log dir).
        record_shapes: record input shapes.
        profile_memory: track tensor memory.
        with_stack: record source locations.
        with_flops: estimate FLOPs.
        json_trace_path: write a Chrome trace (JSON) here on export.
        profile_times: MMEngine's name for ``profile_iters``.
        activity_with_cpu: MMEngine's CPU flag (used when ``activities`` is ``None``).
        activity_with_cuda: MMEngine's CUDA flag.

    Raises:
        ImportError: torch was built without Kineto (no profiler).
        TypeError: a non-bool ``by_epoch`` or flag, a non-dict ``schedule``, bad ``activities``.
        ValueError: ``profile_iters < 1``, several epochs, conflicting ``profile_iters`` and
            ``profile_times``, no activity, an unknown ``on_trace_ready``.
    """

    handles: ClassVar[Mapping[Event, str]] = {
        Event.BEFORE_RUN: "Start the profiler.",
        Event.AFTER_TRAIN_ITER: "Step the profiler; export after the last profiled iteration.",
        Event.AFTER_TRAIN_EPOCH: "Export the trace if still recording.",
    }

    priority: PriorityLike = "VERY_LOW"


    def __init__(
        self,
        by_epoch: bool = True,
        profile_iters: int = 1,
        activities: Sequence[Any] | None = None,
        schedule: Mapping[str, Any] | None = None,
        on_trace_ready: Callable[..., Any] | Mapping[str, Any] | None = None,
        record_shapes: bool = False,
        profile_memory: bool = False,
        with_stack: bool = False,
        with_flops: bool = False,
        json_trace_path: str | None = None,
        *,
        profile_times: int | None = None,
        activity_with_cpu: bool = True,
        activity_with_cuda: bool = False,
    ) -> None:
        if not check_kineto():
            raise ImportError("ProfilerHook needs torch built with Kineto (torch.profiler)")
        flags = {
            "by_epoch": by_epoch,
            "record_shapes": record_shapes,
            "profile_memory": profile_memory,
            "with_stack": with_stack,
            "with_flops": with_flops,
            "activity_with_cpu": activity_with_cpu,
            "activity_with_cuda": activity_with_cuda,
        }
        for key, value in flags.items():
            if not isinstance(value, bool):
                raise TypeError(f"ProfilerHook {key} must be a bool, got {value!r}")
        if profile_times is not None:
            if profile_iters not in (1, profile_times):
                raise ValueError(
                    f"profile_iters={profile_iters} and profile_times={profile_times} are the same "
                    "setting; pass one of them"
                )
            profile_iters = profile_times
        if (
            isinstance(profile_iters, bool)
            or not isinstance(profile_iters, int)
            or profile_iters < 1
        ):
            raise ValueError(f"profile_iters should be greater than 0, but got {profile_iters!r}")
        if by_epoch and profile_iters > 1:
            raise ValueError(
                f"by_epoch=True profiles the first epoch only, got profile_iters={profile_iters}; "
                "profiling slows training down, so profile one epoch (or pass by_epoch=False)"
            )
        if schedule is not None:
            if not isinstance(schedule, Mapping):
                raise TypeError(
                    f"schedule should be a dict of torch.profiler.schedule arguments, got {schedule!r}"
                )
            torch.profiler.schedule(**schedule)  # torch's own check of the keys
        _check_trace_handler(on_trace_ready)
        self.by_epoch = by_epoch
        self.profile_iters = self.profile_times = profile_iters
        self.options: dict[str, Any] = {
            "activities": _activities(activities, activity_with_cpu, activity_with_cuda),
            "schedule": None if schedule is None else dict(schedule),
            "on_trace_ready": on_trace_ready,
            "record_shapes": record_shapes,
            "profile_memory": profile_memory,
            "with_stack": with_stack,
            "with_flops": with_flops,
            "json_trace_path": json_trace_path,
        }

    def pure_fn_hook(self, name: str) -> FnHook[ProfilerState]:
        """This hook's pure handlers as a pipeline member named ``name``."""
        return profiler_fn_hook(
            name,
            self.options,
            by_epoch=self.by_epoch,
            profile_iters=self.profile_iters,
            priority=self.priority,
        )


@HOOKS.register_module()
class NPUProfilerHook(BuiltinHook):
    """MMEngine's profiler for Ascend NPUs: fengine does not run on NPUs, so building it is an error.

    The name exists so that configs and code importing it fail with this explanation at
    construction rather than with an unknown name.

    Raises:
        RuntimeError: always, naming :class:`ProfilerHook` as the profiler to use.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError(
            "NPUProfilerHook profiles Ascend NPUs, which fengine does not support; "
            "use ProfilerHook (torch.profiler, CPU and CUDA)"
        )
