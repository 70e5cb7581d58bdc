"""The imperative shell: ``Runner``, loops, checkpoint I/O and the effects interpreter."""

from fengine.core.priority import Priority, get_priority
from fengine.runner.log_processor import LogProcessor

__all__ = ["LogProcessor", "Priority", "get_priority"]
