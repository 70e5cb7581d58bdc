"""A small run that exercises everything a resume must restore, and helpers to compare runs.

The model has dropout (so the generators matter) and BatchNorm (buffers); the data is shuffled
by a seeded sampler; the optimizer accumulates gradients over two iterations under a warm-up
then cosine schedule; EMA averages the weights and validation runs on the average; early
stopping (keeping the best weights) ends the run after three validations without improvement.
"""

from __future__ import annotations

import functools
import tempfile
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from fengine.evaluator import BaseMetric
from fengine.hooks import Hook
from fengine.model import BaseModel
from fengine.registry import DATASETS, METRICS, MODELS
from fengine.runner.runner import Runner

EPOCHS, ITERS = 4, 16  # by-epoch: 6 batches an epoch; early stopping ends it after 3 epochs


@MODELS.register_module(force=True)
class ResumeNet(BaseModel):
    """Linear(4, 8) -> BatchNorm -> ReLU -> Dropout(0.3) -> Linear(8, 1), mean squared error."""

    def __init__(self, data_preprocessor: Any = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        self.body = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Dropout(0.3))
        self.head = nn.Linear(8, 1)

    def forward(
        self, inputs: torch.Tensor, targets: torch.Tensor | None = None, mode: str = "tensor"
    ) -> Any:
        out = self.head(self.body(inputs)).squeeze(1)
        if mode == "loss":
            return {"loss": ((out - targets) ** 2).mean()}
        if mode == "predict":
            return [{"pred": p, "target": t} for p, t in zip(out, targets)]  # type: ignore[arg-type]
        return out


@DATASETS.register_module(force=True)
class ResumeData(Dataset[dict[str, torch.Tensor]]):
    """24 fixed samples; counts every ``__getitem__`` (to prove skipped batches are not fetched)."""

    metainfo: dict[str, Any] = {}  # noqa: RUF012

    def __init__(self, size: int = 24) -> None:
        generator = torch.Generator().manual_seed(0)
        self.x = torch.randn(size, 4, generator=generator)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 0.0]) + 0.1
        self.fetched: list[int] = []

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        self.fetched.append(index)
        return {"inputs": self.x[index], "targets": self.y[index]}


@METRICS.register_module(force=True)
class ResumeMSE(BaseMetric):
    """Validation mean squared error of the predictions."""

    def process(self, data_batch: Any, data_samples: Any) -> None:
        self.results.extend(float((s["pred"] - s["target"]) ** 2) for s in data_samples)

    def compute_metrics(self, results: list[Any]) -> dict[str, Any]:
        return {"mse": sum(results) / len(results)}


def _loader(shuffle: bool, infinite: bool) -> dict[str, Any]:
    sampler = {"type": "InfiniteSampler" if infinite else "DefaultSampler", "shuffle": shuffle}
    return {
        "dataset": {"type": "ResumeData"},
        "sampler": sampler,
        "batch_size": 4,
        "collate_fn": {"type": "default_collate"},
    }


def resume_kwargs(
    work_dir: Any, by_epoch: bool, optimizer: str, **overrides: Any
) -> dict[str, Any]:
    """Runner arguments of the run (checkpoint after every iteration, all kept)."""
    total = EPOCHS * 6 if by_epoch else ITERS
    optim = (
        {"type": "SGD", "lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4}
        if optimizer == "SGD"
        else {"type": "AdamW", "lr": 0.01, "weight_decay": 0.01}
    )
    train_cfg = (
        {"by_epoch": True, "max_epochs": EPOCHS, "val_interval": 1}
        if by_epoch
        else {"by_epoch": False, "max_iters": ITERS, "val_interval": 4}
    )
    kwargs: dict[str, Any] = {
        "model": {"type": "ResumeNet"},
        "work_dir": str(work_dir),
        "train_dataloader": _loader(shuffle=True, infinite=not by_epoch),
        "val_dataloader": _loader(shuffle=False, infinite=False),
        "val_evaluator": {"type": "ResumeMSE"},
        "train_cfg": train_cfg,
        "val_cfg": {},
        "optim_wrapper": {"optimizer": optim, "accumulative_counts": 2},
        "param_scheduler": [
            {"type": "LinearLR", "start_factor": 0.1, "by_epoch": False, "begin": 0, "end": 3},
            {
                "type": "CosineAnnealingLR",
                "T_max": total - 3,
                "by_epoch": False,
                "begin": 3,
                "end": total,
            },
        ],
        "default_hooks": {
            "checkpoint": {"type": "CheckpointHook", "by_epoch": False, "interval": 1},
            "logger": {"type": "LoggerHook", "interval": 5},
        },
        "custom_hooks": [
            {"type": "EMAHook", "momentum": 0.2},
            {
                "type": "EarlyStoppingHook",
                "monitor": "mse",
                "rule": "less",
                "min_delta": 100.0,
                "patience": 2,
                "restore_best_weights": True,
            },
        ],
        "randomness": {"seed": 3},
        "log_level": "WARNING",
    }
    kwargs.update(overrides)
    return kwargs


class Crash(RuntimeError):
    """What :class:`CrashAt` raises."""


class CrashAt(Hook):
    """Raises ``error`` before training iteration ``at`` (``runner.iter == at``): a dying process."""

    def __init__(self, at: int, error: type[BaseException] = Crash) -> None:
        self.at = at
        self.error = error

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        if runner.iter == self.at:
            raise self.error(f"crash before iteration {self.at}")


def _tensors(prefix: str, value: Any) -> dict[str, torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return {prefix: value}
    found: dict[str, torch.Tensor] = {}
    if isinstance(value, Mapping):
        for key, item in value.items():
            found.update(_tensors(f"{prefix}.{key}", item))
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            found.update(_tensors(f"{prefix}[{i}]", item))
    elif hasattr(value, "__attrs_attrs__"):
        for field in value.__attrs_attrs__:
            found.update(_tensors(f"{prefix}.{field.name}", getattr(value, field.name)))
    return found


def final_tensors(runner: Runner) -> dict[str, torch.Tensor]:
    """Every tensor of the run: weights, buffers, optimizer state, hook states (EMA, best weights)."""
    return {
        **_tensors("model", runner.model.state_dict()),
        **_tensors("optimizer", runner.optim_wrapper.state_dict()),
        **_tensors("hooks", runner.hook_states()),
    }


def final_numbers(runner: Runner) -> dict[str, Any]:
    """Counters, learning rates, scheduler states, the early-stopping record, logged histories."""
    stopper = runner.hook_states()["EarlyStoppingHook"]
    return {
        "counters": (runner.epoch, runner.iter),
        "lr": runner.optim_wrapper.get_lr(),
        "schedulers": [s.state_dict() for s in runner.param_schedulers],
        "stopping": (stopper.best_score, stopper.wait_count, stopper.best_iter),
        "ema_steps": runner.hook_states()["EMAHook"].ema.steps,
        "history": {
            key: runner.message_hub.get_scalar(key).data[0].tolist() for key in ("train/loss", "train/lr", "val/mse")
        },
    }


def assert_same_run(reference: Mapping[str, Any], resumed: Mapping[str, Any]) -> None:
    """``torch.equal`` on every tensor of two :func:`final_tensors` results (names reported)."""
    assert sorted(reference) == sorted(resumed)
    different = [name for name in reference if not torch.equal(reference[name], resumed[name])]
    assert not different, f"tensors differ after resume: {different}"


@functools.cache
def reference(by_epoch: bool, optimizer: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The uninterrupted run's final tensors and numbers (computed once per configuration)."""
    with tempfile.TemporaryDirectory() as work_dir:
        runner = Runner(**resume_kwargs(work_dir, by_epoch, optimizer))
        runner.train()
        return final_tensors(runner), final_numbers(runner)
