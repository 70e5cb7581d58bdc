"""Small shell utilities: crash-safe file writes and named global instances."""

from fengine.utils.fileio import append_text, atomic_write, sync_appended
from fengine.utils.manager import ManagerMixin

__all__ = ["ManagerMixin", "append_text", "atomic_write", "sync_appended"]
