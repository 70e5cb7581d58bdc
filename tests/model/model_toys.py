"""Models and stand-ins shared by the model tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from fengine.model import BaseDataPreprocessor, BaseModel
from fengine.optim import OptimWrapper


class RecordingOptimWrapper(OptimWrapper):
    """fengine's OptimWrapper, recording when a step enters its context and updates."""

    def __init__(self, optimizer: torch.optim.Optimizer, log: list[str], **kwargs: Any) -> None:
        super().__init__(optimizer, **kwargs)
        self.log = log

    @contextlib.contextmanager
    def optim_context(self, model: nn.Module) -> Iterator[None]:
        self.log.append("enter")
        with super().optim_context(model):
            yield
        self.log.append("exit")

    def update_params(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        self.log.append("update")
        super().update_params(loss, *args, **kwargs)


class RecordingPreprocessor(BaseDataPreprocessor):
    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    def forward(self, data: Any, training: bool = False) -> Any:
        self.log.append(f"preprocess training={training}")
        return super().forward(data, training)


class ToyModel(BaseModel):
    """The spec's toy model: Linear(2,2) -> Linear(2,1), 'loss' = (labels - out).sum()."""

    def __init__(self, data_preprocessor: Any = None, log: list[str] | None = None) -> None:
        super().__init__(data_preprocessor)
        self.linear1, self.linear2 = nn.Linear(2, 2), nn.Linear(2, 1)
        self.log = log if log is not None else []

    def forward(self, inputs: torch.Tensor, data_samples: Any = None, mode: str = "tensor") -> Any:
        self.log.append(f"forward {mode}")
        out = self.linear2(self.linear1(inputs))
        if mode == "loss":
            return {"loss": (data_samples - out).sum(), "acc": out.mean()}
        if mode == "predict":
            return [row for row in out]
        return out


def batches() -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [
        {
            "inputs": torch.randn(3, 2, generator=generator),
            "data_samples": torch.randn(3, 1, generator=generator),
        }
        for _ in range(4)
    ]
