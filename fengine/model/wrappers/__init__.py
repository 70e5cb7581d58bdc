"""Model wrappers for distributed training and ``is_model_wrapper``."""

from fengine.model.wrappers.distributed import MMDistributedDataParallel
from fengine.model.wrappers.fully_sharded import MMFullyShardedDataParallel
from fengine.model.wrappers.utils import is_model_wrapper

__all__ = ["MMDistributedDataParallel", "MMFullyShardedDataParallel", "is_model_wrapper"]
