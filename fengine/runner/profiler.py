"""The shell's ``torch.profiler`` session, driven by ``ProfilerAction`` effects."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import torch

_ACTIVITIES = {"cpu": torch.profiler.ProfilerActivity.CPU, "cuda": torch.profiler.ProfilerActivity.CUDA}
_FLAGS = ("record_shapes", "profile_memory", "with_stack", "with_flops")
_OPTIONS = frozenset(
    ("activities", "activity_with_cpu", "activity_with_cuda", "schedule", "on_trace_ready", "json_trace_path", *_FLAGS)
)


def _activities(options: Mapping[str, Any]) -> list[torch.profiler.ProfilerActivity]:
    given = options.get("activities")
    if given is None:
        given = [name for name in ("cpu", "cuda") if options.get(f"activity_with_{name}", name == "cpu")]
    activities = []
    for item in given:
        if isinstance(item, torch.profiler.ProfilerActivity):
            activities.append(item)
        elif isinstance(item, str) and item.lower() in _ACTIVITIES:
            activities.append(_ACTIVITIES[item.lower()])
        else:
            raise ValueError(f"profiler `activities` entries must be 'cpu', 'cuda' or ProfilerActivity, got {item!r}")
    return activities


def _trace_handler(spec: Any, log_dir: str, logger: logging.Logger) -> Callable[..., Any] | None:
    if spec is None:
        return None
    if callable(spec):
        return spec  # type: ignore[no-any-return]
    if isinstance(spec, Mapping):
        kwargs = dict(spec)
        kind = kwargs.pop("type", None)
        if kind == "log_trace":

            def log_trace(prof: Any) -> None:
                logger.info(prof.key_averages().table(**kwargs))

            return log_trace
        if kind == "tb_trace":
            dir_name = kwargs.pop("dir_name", "tf_tracing_logs")
            if not os.path.isabs(dir_name):
                dir_name = os.path.join(log_dir, dir_name)
            handler: Callable[..., Any] = torch.profiler.tensorboard_trace_handler(dir_name, **kwargs)
            return handler
        raise ValueError(f"profiler `on_trace_ready` type must be 'log_trace' or 'tb_trace', got {kind!r}")
    raise ValueError(f"profiler `on_trace_ready` must be None, a callable or a dict with `type`, got {spec!r}")


class ProfilerSession:
    """One ``torch.profiler.profile`` run: ``start`` enters it, ``step`` advances, ``export`` closes.

    Args:
        log_dir: where relative trace directories go.
        logger: receives ``log_trace`` tables.
    """

    def __init__(self, log_dir: str, logger: logging.Logger) -> None:
        self.log_dir = log_dir
        self.logger = logger
        self._profiler: Any = None
        self._json_trace_path: str | None = None

    @property
    def active(self) -> bool:
        """Whether a profile is being recorded."""
        return self._profiler is not None

    def apply(self, action: str, options: Mapping[str, Any]) -> None:
        """Carry out ``action`` (``'start'``, ``'step'`` or ``'export'``).

        ``start`` options: ``activities`` (``'cpu'``/``'cuda'`` or ``ProfilerActivity``; or
        ``activity_with_cpu``/``activity_with_cuda`` flags), ``schedule`` (kwargs of
        ``torch.profiler.schedule``), ``on_trace_ready`` (None, a callable,
        ``dict(type='log_trace', **table_kwargs)`` or ``dict(type='tb_trace', dir_name=...)``),
        ``record_shapes``, ``profile_memory``, ``with_stack``, ``with_flops``, ``json_trace_path``
        (a Chrome trace written on export).

        Raises:
            ValueError: an unknown action or option, or a bad option value.
        """
        if action == "start":
            unknown = sorted(set(options) - _OPTIONS)
            if unknown:
                raise ValueError(f"ProfilerAction('start'): unknown options {unknown}; accepted {sorted(_OPTIONS)}")
            schedule = options.get("schedule")
            profiler = torch.profiler.profile(
                activities=_activities(options),
                schedule=torch.profiler.schedule(**schedule) if schedule is not None else None,
                on_trace_ready=_trace_handler(options.get("on_trace_ready"), self.log_dir, self.logger),
                record_shapes=bool(options.get("record_shapes", False)),
                profile_memory=bool(options.get("profile_memory", False)),
                with_stack=bool(options.get("with_stack", False)),
                with_flops=bool(options.get("with_flops", False)),
            )
            profiler.__enter__()  # type: ignore[no-untyped-call]
            self._profiler, self._json_trace_path = profiler, options.get("json_trace_path")
        elif action == "step":
            if self._profiler is not None:
                self._profiler.step()
        elif action == "export":
            if self._profiler is None:
                return
            profiler, self._profiler = self._profiler, None
            profiler.__exit__(None, None, None)
            if self._json_trace_path:
                profiler.export_chrome_trace(self._json_trace_path)
        else:
            raise ValueError(f"ProfilerAction.action must be 'start', 'step' or 'export', got {action!r}")
