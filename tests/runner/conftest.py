"""Runner tests: a stand-in optimizer wrapper until ``fengine.optim.build_optim_wrapper`` exists."""

from __future__ import annotations

from typing import Any

import torch

import fengine.optim as _optim
from fengine.registry import OPTIMIZERS

if not hasattr(_optim, "build_optim_wrapper"):

    class _StandInWrapper:
        def __init__(self, optimizer: torch.optim.Optimizer) -> None:
            self.optimizer = optimizer

        def update_params(self, loss: torch.Tensor) -> None:
            loss.backward()
            self.optimizer.step()
            self.optimizer.zero_grad()

        def optim_context(self, model: Any) -> Any:
            import contextlib

            return contextlib.nullcontext()

        def get_lr(self) -> dict[str, list[float]]:
            return {"lr": [g["lr"] for g in self.optimizer.param_groups]}

        def get_momentum(self) -> dict[str, list[float]]:
            return {"momentum": [g.get("momentum", 0) for g in self.optimizer.param_groups]}

        def state_dict(self) -> dict[str, Any]:
            return self.optimizer.state_dict()

        def load_state_dict(self, state: dict[str, Any]) -> None:
            self.optimizer.load_state_dict(state)

        def initialize_count_status(self, model: Any, init: int, total: int) -> None:
            pass

        @property
        def param_groups(self) -> list[dict[str, Any]]:
            return self.optimizer.param_groups

    def _build(model: torch.nn.Module, cfg: Any) -> Any:
        if not isinstance(cfg, dict):
            return cfg
        opt = dict(cfg["optimizer"])
        cls = getattr(torch.optim, opt.pop("type"))
        return _StandInWrapper(cls(model.parameters(), **opt))

    _optim.build_optim_wrapper = _build  # type: ignore[attr-defined]
    if OPTIMIZERS.get("SGD") is None:
        OPTIMIZERS.register_module(name="SGD", module=torch.optim.SGD)
