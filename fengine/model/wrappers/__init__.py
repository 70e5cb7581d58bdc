"""Model wrappers for distributed training and ``is_model_wrapper``."""

from fengine.model.wrappers.distributed import MMDistributedDataParallel
from fengine.model.wrappers.utils import is_model_wrapper

__all__ = ["MMDistributedDataParallel", "is_model_wrapper"]
