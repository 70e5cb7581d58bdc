"""MMEngine-style hooks: the ``Hook`` façade and the built-in hooks (each a pure core + class)."""

from fengine.hooks.checkpoint_hook import CheckpointHook
from fengine.hooks.early_stopping_hook import EarlyStoppingHook
from fengine.hooks.ema_hook import EMAHook
from fengine.hooks.empty_cache_hook import EmptyCacheHook
from fengine.hooks.hook import Hook, HookHost, adapt_class_hook, triggered_events
from fengine.hooks.iter_timer_hook import IterTimerHook
from fengine.hooks.logger_hook import LoggerHook
from fengine.hooks.param_scheduler_hook import ParamSchedulerHook
from fengine.hooks.profiler_hook import NPUProfilerHook, ProfilerHook
from fengine.hooks.runtime_info_hook import RuntimeInfoHook
from fengine.hooks.sampler_seed_hook import DistSamplerSeedHook
from fengine.hooks.sync_buffers_hook import SyncBuffersHook
from fengine.hooks.test_time_aug_hook import PrepareTTAHook, build_runner_with_tta

__all__ = [
    "CheckpointHook",
    "DistSamplerSeedHook",
    "EMAHook",
    "EarlyStoppingHook",
    "EmptyCacheHook",
    "Hook",
    "HookHost",
    "IterTimerHook",
    "LoggerHook",
    "NPUProfilerHook",
    "ParamSchedulerHook",
    "PrepareTTAHook",
    "ProfilerHook",
    "RuntimeInfoHook",
    "SyncBuffersHook",
    "adapt_class_hook",
    "build_runner_with_tta",
    "triggered_events",
]
