"""``BaseModel``: a model that preprocesses, runs its forward in a mode, and parses its losses."""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from fengine.core.losses import LossValue, parse_losses
from fengine.model.base_model.data_preprocessor import (
    BaseDataPreprocessor,
    cuda_device,
    target_device,
)
from fengine.model.base_module import BaseModule
from fengine.model.forward_call import OptimWrapperLike, run_forward
from fengine.model.weight_init import InitCfg
from fengine.registry import MODELS


def build_data_preprocessor(data_preprocessor: Mapping[str, Any] | nn.Module | None) -> nn.Module:
    """The preprocessor a model uses: a module as is, a config built from ``MODELS``, or the default.

    Args:
        data_preprocessor: an ``nn.Module``, a config dict, or ``None`` for
            :class:`BaseDataPreprocessor`.

    Returns:
        The preprocessor module.

    Raises:
        TypeError: any other value.
    """
    if data_preprocessor is None:
        return BaseDataPreprocessor()
    if isinstance(data_preprocessor, nn.Module):
        return data_preprocessor
    if isinstance(data_preprocessor, Mapping):
        built = MODELS.build(data_preprocessor)
        if not isinstance(built, nn.Module):
            raise TypeError(
                f"data_preprocessor config {dict(data_preprocessor)!r} built a {type(built).__name__}, not an nn.Module"
            )
        return built
    raise TypeError(
        "data_preprocessor should be a `dict` or `nn.Module` instance, but got "
        f"{type(data_preprocessor).__name__}: {data_preprocessor!r}"
    )


class BaseModel(BaseModule):
    """The base of trainable models: ``train_step``, ``val_step``, ``test_step`` around ``forward``.

    Subclasses implement ``forward(inputs, data_samples=None, mode='tensor')``: mode ``'loss'``
    returns a dict of losses, ``'predict'`` a list of results, ``'tensor'`` raw tensors.

    Args:
        data_preprocessor: a module, a config dict (built from ``MODELS``, e.g.
            ``dict(type='ImgDataPreprocessor', mean=..., std=...)``) or ``None`` for
            :class:`BaseDataPreprocessor`.
        init_cfg: weight initialisation configs (see :class:`BaseModule`).

    Raises:
        TypeError: a ``data_preprocessor`` that is neither.
    """

    def __init__(
        self,
        data_preprocessor: Mapping[str, Any] | nn.Module | None = None,
        init_cfg: InitCfg | None = None,
    ) -> None:
        super().__init__(init_cfg)
        self.data_preprocessor = build_data_preprocessor(data_preprocessor)

    def forward(self, inputs: Any, data_samples: Any = None, mode: str = "tensor") -> Any:
        """Run the network; subclasses implement it.

        Raises:
            NotImplementedError: always, here.
        """
        raise NotImplementedError(
            f"{type(self).__name__}.forward(inputs, data_samples=None, mode='tensor') is not "
            "implemented; subclasses of BaseModel define it"
        )

    def _run_forward(self, data: Any, mode: str) -> Any:
        return run_forward(self, data, mode)

    def train_step(self, data: Any, optim_wrapper: OptimWrapperLike) -> Mapping[str, Tensor | int]:
        """One optimisation step: preprocess, forward in ``'loss'`` mode, parse, update.

        Preprocessing and the forward run inside ``optim_wrapper.optim_context(self)``; the
        total loss goes to ``optim_wrapper.update_params``.

        Args:
            data: the batch from the dataloader.
            optim_wrapper: the optimizer wrapper.

        Returns:
            ``log_vars`` of :meth:`parse_losses` (detached values; ``'loss'`` is the total).

        Raises:
            TypeError: ``forward`` did not return a dict of losses.
            ValueError: no key of that dict contains ``'loss'``.
        """
        with optim_wrapper.optim_context(self):
            data = self.data_preprocessor(data, True)
            losses = self._run_forward(data, mode="loss")
        loss, log_vars = self.total_loss(losses)
        optim_wrapper.update_params(loss)
        return log_vars

    def total_loss(self, losses: Mapping[str, LossValue]) -> tuple[Tensor, OrderedDict[str, Tensor | int]]:
        """:meth:`parse_losses`, requiring a total to optimise (what ``train_step`` back-propagates).

        Args:
            losses: ``forward(..., mode='loss')``'s dict.

        Returns:
            The total loss tensor and the values to log.

        Raises:
            ValueError: no key of ``losses`` contains ``'loss'``.
        """
        loss, log_vars = self.parse_losses(losses)
        if not isinstance(loss, Tensor):
            raise ValueError(
                f"{type(self).__name__}.forward(mode='loss') returned nothing to optimise: none of its "
                f"keys {list(losses)} contains 'loss' (name the terms to optimise 'loss' or 'loss_*')"
            )
        return loss, log_vars

    def val_step(self, data: Any) -> Any:
        """Preprocess (``training=False``) and forward in ``'predict'`` mode."""
        return self._run_forward(self.data_preprocessor(data, False), mode="predict")

    def test_step(self, data: Any) -> Any:
        """Preprocess (``training=False``) and forward in ``'predict'`` mode."""
        return self._run_forward(self.data_preprocessor(data, False), mode="predict")

    def parse_losses(
        self, losses: Mapping[str, LossValue]
    ) -> tuple[Tensor | int, OrderedDict[str, Tensor | int]]:
        """The total loss and the values to log (see :func:`fengine.core.parse_losses`)."""
        return parse_losses(losses)

    @property
    def device(self) -> torch.device:
        """The device of the model's first parameter (or buffer); CPU for an empty model."""
        first = next(itertools.chain(self.parameters(), self.buffers()), None)
        return torch.device("cpu") if first is None else first.device

    def _set_preprocessor_device(self, device: torch.device) -> None:
        for module in self.modules():
            if isinstance(module, BaseDataPreprocessor):
                module._device = device

    def to(self, *args: Any, **kwargs: Any) -> BaseModel:
        """``nn.Module.to``; every data preprocessor inside follows to the new device."""
        device = target_device(*args, **kwargs)
        if device is not None:
            self._set_preprocessor_device(device)
        return super().to(*args, **kwargs)

    def cuda(self, device: int | torch.device | None = None) -> BaseModel:
        """``nn.Module.cuda``; every data preprocessor inside follows."""
        self._set_preprocessor_device(cuda_device(device))
        return super().cuda(device)

    def cpu(self) -> BaseModel:
        """``nn.Module.cpu``; every data preprocessor inside follows."""
        self._set_preprocessor_device(torch.device("cpu"))
        return super().cpu()
