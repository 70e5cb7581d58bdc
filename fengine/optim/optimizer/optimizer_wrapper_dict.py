"""``OptimWrapperDict``: several named optimizer wrappers (e.g. a GAN's generator and discriminator)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NoReturn

import torch
from torch import nn

from fengine.optim.optimizer.optimizer_wrapper import OptimWrapper


class OptimWrapperDictTypeError(TypeError, AssertionError):
    """A value of :class:`OptimWrapperDict` that is not an :class:`OptimWrapper` (an assertion in MMEngine)."""


class OptimWrapperDict(OptimWrapper):
    """A name → :class:`OptimWrapper` container that saves, loads and reports them together.

    ``update_params``, ``backward``, ``step`` and ``optim_context`` would be ambiguous over
    several optimizers and raise ``NotImplementedError``: call them on one wrapper
    (``wrappers['generator'].update_params(loss)``). ``zero_grad`` clears every wrapper;
    ``initialize_count_status`` does nothing (each wrapper is initialised by its user).

    Args:
        **optim_wrappers: the wrappers by name.

    Raises:
        OptimWrapperDictTypeError: a value that is not an :class:`OptimWrapper` (a ``TypeError``,
            and an ``AssertionError`` as MMEngine raises).
    """

    def __init__(self, **optim_wrappers: OptimWrapper) -> None:
        for name, wrapper in optim_wrappers.items():
            if not isinstance(wrapper, OptimWrapper):
                raise OptimWrapperDictTypeError(
                    f"`OptimWrapperDict` only accepts OptimWrapper instances, got {name}={type(wrapper).__name__}"
                )
        self.optim_wrappers = optim_wrappers

    def update_params(self, loss: torch.Tensor, step_kwargs: dict[str, Any] | None = None,
                      zero_kwargs: dict[str, Any] | None = None) -> None:
        """Not defined for several optimizers: call ``update_params`` on one wrapper."""
        raise NotImplementedError("`update_params` should be called by each optimizer wrapper separately")

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        """Not defined for several optimizers: call ``backward`` on one wrapper."""
        raise NotImplementedError("`backward` should be called by each optimizer wrapper separately")

    def step(self, **kwargs: Any) -> None:
        """Not defined for several optimizers: call ``step`` on one wrapper."""
        raise NotImplementedError("`step` should be called by each optimizer wrapper separately")

    def zero_grad(self, **kwargs: Any) -> None:
        """Clear the gradients of every wrapper."""
        for wrapper in self.optim_wrappers.values():
            wrapper.zero_grad()

    def optim_context(self, model: nn.Module) -> NoReturn:
        """Not defined for several optimizers: use one wrapper's ``optim_context``."""
        raise NotImplementedError("`optim_context` should be called by each optimizer wrapper separately")

    def initialize_count_status(self, model: nn.Module, init_counts: int, max_counts: int) -> None:
        """Nothing: the container does not know which model goes with which wrapper."""

    @property
    def param_groups(self) -> dict[str, list[dict[str, Any]]]:  # type: ignore[override]
        """Each wrapper's param groups, by name."""
        return {name: wrapper.param_groups for name, wrapper in self.optim_wrappers.items()}

    def get_lr(self) -> dict[str, list[float]]:
        """Every wrapper's lr (and base lr), keyed ``'<name>.lr'`` / ``'<name>.base_lr'``."""
        result: dict[str, list[float]] = {}
        for name, wrapper in self.optim_wrappers.items():
            lrs = wrapper.get_lr()
            if "base_lr" in lrs:
                result[f"{name}.base_lr"] = lrs["base_lr"]
            result[f"{name}.lr"] = lrs["lr"]
        return result

    def get_momentum(self) -> dict[str, list[float]]:
        """Every wrapper's momentum, keyed ``'<name>.momentum'``."""
        return {f"{name}.momentum": w.get_momentum()["momentum"] for name, w in self.optim_wrappers.items()}

    def state_dict(self) -> dict[str, Any]:
        """``{name: that wrapper's state dict}``."""
        return {name: wrapper.state_dict() for name, wrapper in self.optim_wrappers.items()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Load each named entry into the wrapper of that name.

        Raises:
            KeyError: a name that is not in the container (the known names are listed).
        """
        unknown = sorted(set(state_dict) - set(self.optim_wrappers))
        if unknown:
            raise KeyError(f"state dict has wrappers {unknown} that OptimWrapperDict lacks; it has {list(self.optim_wrappers)}")
        for name, sub in state_dict.items():
            self.optim_wrappers[name].load_state_dict(sub)

    def items(self) -> Iterator[tuple[str, OptimWrapper]]:
        """(name, wrapper) pairs."""
        yield from self.optim_wrappers.items()

    def values(self) -> Iterator[OptimWrapper]:
        """The wrappers."""
        yield from self.optim_wrappers.values()

    def keys(self) -> Iterator[str]:
        """The names."""
        yield from self.optim_wrappers.keys()

    def __getitem__(self, key: str) -> OptimWrapper:
        if key not in self.optim_wrappers:
            raise KeyError(f"no optimizer wrapper named {key!r}; names: {list(self.optim_wrappers)}")
        return self.optim_wrappers[key]

    def __contains__(self, key: str) -> bool:
        return key in self.optim_wrappers

    def __len__(self) -> int:
        return len(self.optim_wrappers)

    def __repr__(self) -> str:
        return "".join(f"name: {name}\n{wrapper!r}" for name, wrapper in self.optim_wrappers.items())
