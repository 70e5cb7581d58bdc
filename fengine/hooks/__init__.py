"""MMEngine-style hooks: the ``Hook`` façade and the built-in hooks (each a pure core + class)."""

from fengine.hooks.hook import Hook, HookHost, adapt_class_hook, triggered_events

__all__ = ["Hook", "HookHost", "adapt_class_hook", "triggered_events"]
