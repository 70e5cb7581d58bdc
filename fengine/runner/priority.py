"""``Priority`` and ``get_priority`` at MMEngine's ``mmengine.runner.priority`` path."""

from fengine.core.priority import Priority, get_priority

__all__ = ["Priority", "get_priority"]
