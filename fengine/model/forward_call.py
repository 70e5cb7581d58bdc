"""Calling a model on a preprocessed batch, and what a train step needs of an optimizer wrapper."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from torch import Tensor, nn


class OptimWrapperLike(Protocol):
    """What ``train_step`` needs of an optimizer wrapper (``fengine.optim.OptimWrapper``)."""

    def optim_context(self, model: nn.Module) -> Any:
        """A context manager the forward runs in (e.g. DDP's ``no_sync`` while accumulating)."""

    def update_params(self, loss: Tensor) -> None:
        """Backward ``loss`` and step when due."""


def run_forward(model: nn.Module, data: Any, mode: str) -> Any:
    """Call ``model`` on a preprocessed batch: ``model(**data, mode=mode)`` or ``model(*data, mode=mode)``.

    Args:
        model: the model (or its DDP wrapper, so gradient hooks fire).
        data: a dict of keyword arguments or a list/tuple of positional ones.
        mode: ``'loss'``, ``'predict'`` or ``'tensor'``.

    Returns:
        Whatever the forward returns.

    Raises:
        TypeError: ``data`` is neither a dict nor a list/tuple.
    """
    if isinstance(data, Mapping):
        return model(**data, mode=mode)
    if isinstance(data, list | tuple):
        return model(*data, mode=mode)
    raise TypeError(
        f"the preprocessed batch must be a dict (keyword arguments of forward) or a list/tuple "
        f"(positional arguments), got {type(data).__name__}"
    )
