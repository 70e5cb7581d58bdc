"""MMEngine-style hooks: the ``Hook`` façade and the built-in hooks (each a pure core + class)."""

from fengine.hooks.ema_hook import EMAHook
from fengine.hooks.hook import Hook, HookHost, adapt_class_hook, triggered_events

__all__ = ["EMAHook", "Hook", "HookHost", "adapt_class_hook", "triggered_events"]
