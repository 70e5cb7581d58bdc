"""Small shell utilities: crash-safe file writes, named global instances, version and type checks."""

from fengine.utils.fileio import append_text, atomic_write, mkdir_or_exist, scandir, sync_appended
from fengine.utils.manager import ManagerMixin
from fengine.utils.misc import is_list_of, is_seq_of
from fengine.utils.package_utils import is_installed
from fengine.utils.version_utils import digit_version

__all__ = [
    "ManagerMixin",
    "append_text",
    "atomic_write",
    "digit_version",
    "is_installed",
    "is_list_of",
    "is_seq_of",
    "mkdir_or_exist",
    "scandir",
    "sync_appended",
]
