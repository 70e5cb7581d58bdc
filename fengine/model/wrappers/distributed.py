"""``MMDistributedDataParallel``: DDP whose ``train_step`` runs the wrapped model's step under DDP."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from fengine.model.forward_call import OptimWrapperLike, run_forward
from fengine.model.utils import detect_anomalous_params
from fengine.registry import MODEL_WRAPPERS


@MODEL_WRAPPERS.register_module()
class MMDistributedDataParallel(DistributedDataParallel):
    """``DistributedDataParallel`` with the ``train_step``/``val_step``/``test_step`` of a BaseModel.

    ``train_step`` runs the wrapped model's preprocessing and its ``'loss'`` forward through
    ``self(...)`` (so DDP's gradient-synchronisation hooks fire), inside
    ``optim_wrapper.optim_context(self)`` (which skips synchronisation on accumulation steps),
    then ``module.parse_losses`` and ``optim_wrapper.update_params``. A ``train_step`` the model
    overrides is therefore not used under DDP, as in MMEngine. ``val_step``/``test_step`` call
    the wrapped model's own.

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

    def train_step(self, data: Any, optim_wrapper: OptimWrapperLike) -> Mapping[str, Tensor | int]:
        """One synchronised optimisation step (see the class docstring).

        Args:
            data: the batch from the dataloader.
            optim_wrapper: the optimizer wrapper.

        Returns:
            The wrapped model's ``log_vars``.
        """
        with optim_wrapper.optim_context(self):
            data = self.module.data_preprocessor(data, training=True)
            losses = run_forward(self, data, mode="loss")
        loss, log_vars = self.module.parse_losses(losses)
        optim_wrapper.update_params(loss)
        if self.detect_anomalous_params:
            detect_anomalous_params(loss, model=self)
        return log_vars  # type: ignore[no-any-return]

    def val_step(self, data: Any) -> Any:
        """The wrapped model's ``val_step``."""
        return self.module.val_step(data)

    def test_step(self, data: Any) -> Any:
        """The wrapped model's ``test_step``."""
        return self.module.test_step(data)
