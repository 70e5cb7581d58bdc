"""``BaseOptimWrapper``: what every optimizer wrapper shares (state dicts, param groups, lr/momentum)."""

from __future__ import annotations

import logging
import warnings
from abc import ABCMeta, abstractmethod
from typing import Any

import torch


class OptimWrapperError(ValueError, AssertionError):
    """A bad wrapper argument or counter state.

    A ``ValueError`` by fengine's convention, and an ``AssertionError`` because MMEngine raises one
    in these places (so code written against MMEngine catches it).
    """


def message_hub() -> Any | None:
    """The current ``fengine.logging.MessageHub``, or ``None`` where logging is unavailable."""
    try:
        from fengine.logging import MessageHub
    except ImportError:
        return None
    return MessageHub.get_current_instance()


def warn(message: str) -> None:
    """Log a warning through fengine's current logger (Python's ``warnings`` without one)."""
    try:
        from fengine.logging import print_log
    except ImportError:
        warnings.warn(message, stacklevel=3)
        return
    print_log(message, logger="current", level=logging.WARNING)


class BaseOptimWrapper(metaclass=ABCMeta):
    """The part of an optimizer wrapper that only reads and writes the optimizer's settings.

    With more than one param group, ``base_param_settings`` (the optimizer's defaults plus a
    dummy ``params`` tensor) is kept as an extra pseudo-group: it is appended to
    :attr:`param_groups` so parameter schedulers move a ``base_lr`` too, and it is saved in the
    state dict, as MMEngine does.

    Args:
        optimizer: the ``torch.optim.Optimizer`` to wrap.
    """

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        self.base_param_settings: dict[str, Any] | None = None
        if len(optimizer.param_groups) > 1:
            self.base_param_settings = {"params": torch.tensor([0.0], dtype=torch.float)}
            self.base_param_settings.update(**optimizer.defaults)

    @abstractmethod
    def update_params(self, *args: Any, **kwargs: Any) -> None:
        """Backward, step and zero the gradients as the wrapper decides."""

    @abstractmethod
    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        """Back-propagate ``loss``."""

    @abstractmethod
    def zero_grad(self, **kwargs: Any) -> None:
        """Clear the gradients."""

    @abstractmethod
    def step(self, **kwargs: Any) -> None:
        """Update the parameters."""

    def state_dict(self) -> dict[str, Any]:
        """The optimizer's state dict (torch format), plus ``base_param_settings`` if kept."""
        state = self.optimizer.state_dict()
        if self.base_param_settings is not None:
            state["base_param_settings"] = self.base_param_settings
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load what :meth:`state_dict` returned (the ``base_param_settings`` key is popped).

        Args:
            state_dict: an optimizer state dict in torch's format.
        """
        base = state_dict.pop("base_param_settings", None)
        if base is not None:
            self.base_param_settings = base
        self.optimizer.load_state_dict(state_dict)

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        """The optimizer's param groups (the dicts themselves), plus the base pseudo-group."""
        if self.base_param_settings is not None:
            return [*self.optimizer.param_groups, self.base_param_settings]
        return self.optimizer.param_groups

    @property
    def defaults(self) -> dict[str, Any]:
        """The optimizer's default hyper-parameters."""
        return self.optimizer.defaults

    def get_lr(self) -> dict[str, list[float]]:
        """``{'lr': [each group's lr]}``, led by ``'base_lr'`` when there are several groups."""
        result: dict[str, list[float]] = {}
        if self.base_param_settings is not None:
            result["base_lr"] = [self.base_param_settings["lr"]]
        result["lr"] = [group["lr"] for group in self.optimizer.param_groups]
        return result

    def get_momentum(self) -> dict[str, list[float]]:
        """``{'momentum': [...]}``: each group's ``momentum``, else ``betas[0]``, else 0."""
        momentum: list[float] = []
        for group in self.optimizer.param_groups:
            if "momentum" in group:
                momentum.append(group["momentum"])
            elif "betas" in group:
                momentum.append(group["betas"][0])
            else:
                momentum.append(0)
        return {"momentum": momentum}
