"""``MMDistributedDataParallel``: DDP whose ``train_step`` runs the wrapped model's step under DDP."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from fengine.model.utils import detect_anomalous_params
from fengine.model.wrappers.wrapped_steps import WrappedSteps
from fengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class MMDistributedDataParallel(WrappedSteps, DistributedDataParallel):
    """``DistributedDataParallel`` with the ``train_step``/``val_step``/``test_step`` of a BaseModel.

    ``train_step`` runs the model's forward through DDP (so its gradient all-reduce fires),
    inside ``optim_wrapper.optim_context(self)`` (which skips synchronisation on accumulation
    steps through ``no_sync``); see :class:`~fengine.model.wrappers.wrapped_steps.WrappedSteps`.

    Args:
        module: the model (a :class:`~fengine.model.BaseModel`).
        detect_anomalous_params: after each update, log parameters the loss did not reach (slow:
            for debugging "unused parameter" errors).
        **kwargs: ``DistributedDataParallel``'s arguments (``device_ids``, ``broadcast_buffers``,
            ``find_unused_parameters``, ...).
    """

    def __init__(
        self, module: nn.Module, detect_anomalous_params: bool = False, **kwargs: Any
    ) -> None:
        super().__init__(module=module, **kwargs)
        self.detect_anomalous_params = detect_anomalous_params

    def _after_update(self, loss: Tensor) -> None:
        if self.detect_anomalous_params:
            detect_anomalous_params(loss, model=self)
