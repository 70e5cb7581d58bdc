"""``AmpOptimWrapper``: automatic mixed precision (autocast, loss scaling where needed)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

from fengine.optim.optimizer.base import OptimWrapperError
from fengine.optim.optimizer.optimizer_wrapper import OptimWrapper
from fengine.registry import OPTIM_WRAPPERS

_DTYPES = ("float16", "bfloat16", "float32", "float64")


def _first_device(params: Iterator[torch.Tensor]) -> str:
    for p in params:
        return p.device.type
    return "cuda" if torch.cuda.is_available() else "cpu"


@OPTIM_WRAPPERS.register_module()
class AmpOptimWrapper(OptimWrapper):
    """An :class:`OptimWrapper` whose ``optim_context`` runs the forward under ``torch.autocast``.

    Loss scaling (``torch.amp.GradScaler``, or ``ShardedGradScaler`` with ``use_fsdp``) is used
    where it is needed: when autocast runs in float16 (``dtype='float16'``, or ``dtype=None`` on
    CUDA), or when ``loss_scale`` is given as a number or a dict. bfloat16 (the CPU default) has
    float32's range and runs unscaled, so it works on CPU without a GPU scaler. With a scaler,
    ``backward`` scales the loss, ``step`` unscales before clipping and skips steps with
    non-finite gradients, and the state dict gains a ``loss_scaler`` entry.

    Args:
        loss_scale: ``'dynamic'`` (a default scaler if one is needed), a number (the static
            scale, kept by passing it to every ``update``) or a dict of ``GradScaler`` arguments.
        dtype: autocast dtype: ``'float16'``, ``'bfloat16'``, ``'float32'``, ``'float64'``, a
            ``torch.dtype``, or ``None`` for the device's default.
        use_fsdp: use ``ShardedGradScaler`` (for ``FullyShardedDataParallel``).
        **kwargs: :class:`OptimWrapper`'s arguments (``optimizer``, ``accumulative_counts``,
            ``clip_grad``).

    Raises:
        OptimWrapperError: an unknown dtype name or a ``dtype`` that is not a ``torch.dtype``.
        TypeError: a ``loss_scale`` that is not ``'dynamic'``, a number or a dict.
    """

    valid_dtypes = _DTYPES

    def __init__(
        self,
        loss_scale: str | float | dict[str, Any] = "dynamic",
        dtype: str | torch.dtype | None = None,
        use_fsdp: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if isinstance(dtype, str):
            if dtype not in _DTYPES:
                raise OptimWrapperError(f"dtype must be one of {list(_DTYPES)} or a torch.dtype, got dtype={dtype!r}")
            dtype = getattr(torch, dtype)
        if dtype is not None and not isinstance(dtype, torch.dtype):
            raise OptimWrapperError(f"dtype must be None, a dtype name or a torch.dtype, got dtype={dtype!r}")
        self.cast_dtype: torch.dtype | None = dtype
        self.device_type = _first_device(p for g in self.optimizer.param_groups for p in g["params"])
        self._scale_update_param: float | None = None
        scaler_args: dict[str, Any] = {}
        if isinstance(loss_scale, (int, float)) and not isinstance(loss_scale, bool):
            self._scale_update_param = float(loss_scale)
            scaler_args = {"init_scale": float(loss_scale)}
        elif isinstance(loss_scale, dict):
            scaler_args = dict(loss_scale)
        elif loss_scale != "dynamic":
            raise TypeError(f"loss_scale must be 'dynamic', a number or a dict, got loss_scale={loss_scale!r}")
        autocast_dtype = dtype if dtype is not None else torch.get_autocast_dtype(self.device_type)
        self.loss_scaler: Any | None = None
        if autocast_dtype == torch.float16 or loss_scale != "dynamic":
            if use_fsdp:
                from torch.distributed.fsdp.sharded_grad_scaler import ShardedGradScaler

                self.loss_scaler = ShardedGradScaler(self.device_type, **scaler_args)
            else:
                self.loss_scaler = torch.amp.GradScaler(self.device_type, **scaler_args)

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        """Back-propagate the (scaled, when a scaler is used) loss and count the call."""
        if self.loss_scaler is None:
            super().backward(loss, **kwargs)
            return
        self.loss_scaler.scale(loss).backward(**kwargs)
        self._inner_count += 1

    def step(self, **kwargs: Any) -> None:
        """Unscale, clip and step through the scaler (a plain step without one)."""
        if self.loss_scaler is None:
            super().step(**kwargs)
            return
        if self.clip_grad_kwargs:
            self.loss_scaler.unscale_(self.optimizer)
            self._clip_grad()
        self.loss_scaler.step(self.optimizer, **kwargs)
        self.loss_scaler.update(self._scale_update_param)

    def state_dict(self) -> dict[str, Any]:
        """The optimizer state dict, plus ``loss_scaler`` when a scaler is used."""
        state = super().state_dict()
        if self.loss_scaler is not None:
            state["loss_scaler"] = self.loss_scaler.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load the optimizer state and, when both sides have one, the scaler's.

        Args:
            state_dict: what :meth:`state_dict` returned (MMEngine's layout).
        """
        scaler_state = state_dict.pop("loss_scaler", None)
        if scaler_state is not None and self.loss_scaler is not None:
            self.loss_scaler.load_state_dict(scaler_state)
        super().load_state_dict(state_dict)

    @contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        """:meth:`OptimWrapper.optim_context` plus ``torch.autocast`` on the model's device.

        Args:
            model: the model run inside the context.
        """
        first = next(iter(model.parameters()), None)
        device_type = first.device.type if first is not None else self.device_type
        with super().optim_context(model), torch.autocast(device_type, dtype=self.cast_dtype):
            yield
