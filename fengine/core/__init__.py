"""fengine's pure functional core: records, optimizers, schedules, EMA, steps and the hook pipeline.

Imports torch, attrs, typing_extensions and nothing else of fengine. ``import fengine.core as fc``.
"""

from fengine.core import cadence, effects, ema, optim, plain, schedule, tree
from fengine.core.events import STAGES, Event
from fengine.core.losses import parse_losses
from fengine.core.optim import GradientTransform
from fengine.core.pipeline import FnHook, Handler, HookError, Pipeline, dispatch
from fengine.core.plain import UntrustedCheckpointError
from fengine.core.priority import Priority, PriorityLike, get_priority
from fengine.core.run import EventInfo, RunState
from fengine.core.state import RngState, TrainState
from fengine.core.step import ModelView, StepOutput, make_eval_step, make_train_step

__all__ = [
    "STAGES",
    "Event",
    "EventInfo",
    "FnHook",
    "GradientTransform",
    "Handler",
    "HookError",
    "ModelView",
    "Pipeline",
    "Priority",
    "PriorityLike",
    "RngState",
    "RunState",
    "StepOutput",
    "TrainState",
    "UntrustedCheckpointError",
    "cadence",
    "dispatch",
    "effects",
    "ema",
    "get_priority",
    "make_eval_step",
    "make_train_step",
    "optim",
    "parse_losses",
    "plain",
    "schedule",
    "tree",
]
