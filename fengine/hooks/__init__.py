"""MMEngine-style hooks: the ``Hook`` façade and the built-in hooks (each a pure core + class)."""

from fengine.hooks.checkpoint_hook import CheckpointHook
from fengine.hooks.early_stopping_hook import EarlyStoppingHook
from fengine.hooks.ema_hook import EMAHook
from fengine.hooks.hook import Hook, HookHost, adapt_class_hook, triggered_events
from fengine.hooks.iter_timer_hook import IterTimerHook
from fengine.hooks.logger_hook import LoggerHook
from fengine.hooks.param_scheduler_hook import ParamSchedulerHook
from fengine.hooks.runtime_info_hook import RuntimeInfoHook
from fengine.hooks.sampler_seed_hook import DistSamplerSeedHook

__all__ = [
    "CheckpointHook",
    "DistSamplerSeedHook",
    "EMAHook",
    "EarlyStoppingHook",
    "Hook",
    "HookHost",
    "IterTimerHook",
    "LoggerHook",
    "ParamSchedulerHook",
    "RuntimeInfoHook",
    "adapt_class_hook",
    "triggered_events",
]
