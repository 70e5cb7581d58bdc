"""Logging for the shell: the message hub of logged scalars, its histories, and the run's logger."""

from fengine.logging.history_buffer import CallableFloat, CallableInt, HistoryBuffer
from fengine.logging.logger import MMLogger, print_log
from fengine.logging.message_hub import MessageHub

__all__ = ["CallableFloat", "CallableInt", "HistoryBuffer", "MMLogger", "MessageHub", "print_log"]
