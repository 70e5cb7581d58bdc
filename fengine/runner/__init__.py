"""The imperative shell: ``Runner``, loops, checkpoint I/O and the effects interpreter."""

from fengine.core.plain import UntrustedCheckpointError
from fengine.core.priority import Priority, get_priority
from fengine.runner.amp import autocast
from fengine.runner.base_loop import BaseLoop, NonFiniteLossError
from fengine.runner.checkpoint import (
    CheckpointError,
    find_latest_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from fengine.runner.eval_loops import TestLoop, ValLoop
from fengine.runner.forwarding import MissingLoopError
from fengine.runner.log_processor import LogProcessor
from fengine.runner.loops import EpochBasedTrainLoop, IterBasedTrainLoop
from fengine.runner.randomness import set_random_seed
from fengine.runner.runner import Runner
from fengine.runner.work_dir_lock import WorkDirLockedError

__all__ = [
    "BaseLoop",
    "CheckpointError",
    "EpochBasedTrainLoop",
    "IterBasedTrainLoop",
    "LogProcessor",
    "MissingLoopError",
    "NonFiniteLossError",
    "Priority",
    "Runner",
    "TestLoop",
    "UntrustedCheckpointError",
    "ValLoop",
    "WorkDirLockedError",
    "autocast",
    "find_latest_checkpoint",
    "get_priority",
    "load_checkpoint",
    "save_checkpoint",
    "set_random_seed",
]
