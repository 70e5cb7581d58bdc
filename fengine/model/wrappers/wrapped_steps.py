"""The ``train_step``/``val_step``/``test_step`` every distributed model wrapper shares."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from fengine.model.forward_call import OptimWrapperLike, run_forward


class WrappedSteps:
    """A wrapper's steps: the wrapped BaseModel's, with the forward run through the wrapper.

    ``train_step`` runs the wrapped model's preprocessing and its ``'loss'`` forward through
    ``self(...)`` (so the wrapper's gradient hooks fire: DDP's all-reduce, FSDP's all-gather and
    reduce-scatter), inside ``optim_wrapper.optim_context(self)``, then ``module.parse_losses``
    and ``optim_wrapper.update_params``. A ``train_step`` the model overrides is therefore not
    used under a wrapper, as in MMEngine. ``val_step``/``test_step`` call the wrapped model's own.
    """

    module: nn.Module

    def _after_update(self, loss: Tensor) -> None:
        """Called after each ``update_params`` (nothing by default)."""

    def train_step(self, data: Any, optim_wrapper: OptimWrapperLike) -> Mapping[str, Tensor | int]:
        """One synchronised optimisation step (see the class docstring).

        Args:
            data: the batch from the dataloader.
            optim_wrapper: the optimizer wrapper.

        Returns:
            The wrapped model's ``log_vars``.
        """
        inner: Any = self.module  # a BaseModel
        with optim_wrapper.optim_context(self):  # type: ignore[arg-type]
            data = inner.data_preprocessor(data, training=True)
            losses = run_forward(self, data, mode="loss")  # type: ignore[arg-type]
        loss, log_vars = inner.parse_losses(losses)
        optim_wrapper.update_params(loss)
        self._after_update(loss)
        return log_vars  # type: ignore[no-any-return]

    def val_step(self, data: Any) -> Any:
        """The wrapped model's ``val_step``."""
        inner: Any = self.module
        return inner.val_step(data)

    def test_step(self, data: Any) -> Any:
        """The wrapped model's ``test_step``."""
        inner: Any = self.module
        return inner.test_step(data)
