"""The spec's "toy runner" fixture: a two-layer model, 12-sample datasets, an accuracy metric."""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from fengine.evaluator import BaseMetric
from fengine.hooks import Hook
from fengine.registry import DATASETS, METRICS, MODELS
from fengine.testing import runner_test_case as testing_toys


@MODELS.register_module(force=True)
class ToyModel(testing_toys.ToyModel):
    """Linear(2, 2) -> Dropout -> Linear(2, 1); ``loss`` mode returns ``{'loss': (labels - out).sum()}``."""

    def __init__(self, data_preprocessor: Any = None, dropout: float = 0.0) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        self.dropout = nn.Dropout(dropout)

    def outputs(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(self.linear1(inputs)))  # type: ignore[no-any-return]


@DATASETS.register_module(force=True)
class ToyDataset(Dataset[dict[str, torch.Tensor]]):
    """12 fixed samples of 2 features with label 1."""

    metainfo: ClassVar[dict[str, Any]] = {}

    def __init__(self, size: int = 12) -> None:
        generator = torch.Generator().manual_seed(0)
        self.data = torch.randn(size, 2, generator=generator)
        self.label = torch.ones(size)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"inputs": self.data[index], "data_samples": self.label[index]}


@METRICS.register_module(force=True)
class ToyMetric(BaseMetric):
    """Accuracy 1 for every sample (or the scores of ``values``, one per evaluation)."""

    def __init__(self, values: list[float] | None = None, collect_device: str = "cpu", prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.values = list(values) if values is not None else None
        self.calls = 0

    def process(self, data_batch: Any, data_samples: Any) -> None:
        self.results.append({"acc": 1})

    def compute_metrics(self, results: list[Any]) -> dict[str, Any]:
        self.calls += 1
        if self.values is not None:
            return {"acc": self.values[(self.calls - 1) % len(self.values)]}
        return {"acc": 1}


def loader(size: int = 12, batch_size: int = 3, shuffle: bool = False) -> DataLoader[Any]:
    """A DataLoader over :class:`ToyDataset` (4 batches by default)."""
    return DataLoader(ToyDataset(size), batch_size=batch_size, shuffle=shuffle)


def toy_kwargs(tmp_path: Any, **overrides: Any) -> dict[str, Any]:
    """Runner arguments of the toy runner: 2 epochs, validation every epoch, SGD lr 0.1."""
    kwargs: dict[str, Any] = {
        "model": ToyModel(),
        "work_dir": str(tmp_path),
        "train_dataloader": loader(),
        "val_dataloader": loader(),
        "train_cfg": {"by_epoch": True, "max_epochs": 2, "val_interval": 1},
        "val_cfg": {},
        "val_evaluator": ToyMetric(),
        "optim_wrapper": {"optimizer": {"type": "SGD", "lr": 0.1}},
        "randomness": {"seed": 0},
    }
    kwargs.update(overrides)
    return kwargs


_STAGES = (
    "before_run", "after_run", "before_train", "after_train", "before_val", "after_val",
    "before_test", "after_test", "before_train_epoch", "after_train_epoch", "before_val_epoch",
    "before_test_epoch",
)


class Recorder(Hook):
    """Records ``(stage, runner.epoch, runner.iter[, batch_idx])`` for every event (LOWEST priority)."""

    priority = "LOWEST"

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.outputs: list[Any] = []
        self.metrics: list[Any] = []
        self.checkpoint_keys: list[list[str]] = []

    def _record(self, runner: Any, stage: str, *extra: Any) -> None:
        self.calls.append((stage, runner.epoch, runner.iter, *extra))

    def before_save_checkpoint(self, runner: Any, checkpoint: dict[str, Any]) -> None:
        self.checkpoint_keys.append(list(checkpoint))
        self._record(runner, "before_save_checkpoint")

    def after_load_checkpoint(self, runner: Any, checkpoint: dict[str, Any]) -> None:
        self._record(runner, "after_load_checkpoint")

    def after_val_epoch(self, runner: Any, metrics: Any = None) -> None:
        self.metrics.append(metrics)
        self._record(runner, "after_val_epoch")

    def after_test_epoch(self, runner: Any, metrics: Any = None) -> None:
        self.metrics.append(metrics)
        self._record(runner, "after_test_epoch")

    def _before_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, mode: str = "train") -> None:
        self._record(runner, f"before_{mode}_iter", batch_idx)

    def _after_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None, mode: str = "train") -> None:
        if mode == "train":
            self.outputs.append(outputs)
        self._record(runner, f"after_{mode}_iter", batch_idx)


def _stage_method(stage: str) -> Any:
    def method(self: Recorder, runner: Any) -> None:
        self._record(runner, stage)

    method.__name__ = stage
    return method


for _stage in _STAGES:
    setattr(Recorder, _stage, _stage_method(_stage))
