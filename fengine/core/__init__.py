"""fengine's pure functional core: records, optimizers, schedules, EMA, steps and the hook pipeline.

Imports torch, attrs, typing_extensions and nothing else of fengine. ``import fengine.core as fc``.
"""

from fengine.core import effects, ema, optim, schedule, tree
from fengine.core.events import STAGES, Event
from fengine.core.losses import parse_losses
from fengine.core.optim import GradientTransform, Transform
from fengine.core.pipeline import FnHook, Handler, HookError, Pipeline, dispatch
from fengine.core.priority import Priority, PriorityLike, get_priority
from fengine.core.run import EventInfo, RunState

__all__ = [
    "STAGES",
    "Event",
    "EventInfo",
    "FnHook",
    "GradientTransform",
    "Handler",
    "HookError",
    "Pipeline",
    "Priority",
    "PriorityLike",
    "RunState",
    "Transform",
    "dispatch",
    "effects",
    "ema",
    "get_priority",
    "optim",
    "parse_losses",
    "schedule",
    "tree",
]
