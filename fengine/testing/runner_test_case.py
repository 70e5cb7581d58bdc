"""``RunnerTestCase``: a ``unittest.TestCase`` with tiny runner configs and clean global state.

Subclass it to test a hook, a loop or a metric inside a real :class:`~fengine.runner.Runner`::

    class TestMyHook(RunnerTestCase):
        def test_runs(self):
            cfg = copy.deepcopy(self.epoch_based_cfg)
            cfg.custom_hooks = [dict(type='MyHook')]
            self.build_runner(cfg).train()

Needs no hypothesis.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import tempfile
import time
import unittest
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from fengine.config import ConfigDict
from fengine.dist import is_distributed
from fengine.evaluator import BaseMetric
from fengine.logging import MessageHub, MMLogger
from fengine.model import BaseModel
from fengine.registry import DATASETS, METRICS, MODELS, DefaultScope, Registry
from fengine.runner import Runner
from fengine.visualization import Visualizer

__all__ = ["RunnerTestCase", "ToyDataset", "ToyMetric", "ToyModel"]


class ToyModel(BaseModel):
    """``Linear(2, 2)`` then ``Linear(2, 1)``; the loss is ``sum(data_samples - outputs)``.

    Args:
        data_preprocessor: the model's data preprocessor (config or module).
    """

    def __init__(self, data_preprocessor: Any = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        self.linear1 = nn.Linear(2, 2)
        self.linear2 = nn.Linear(2, 1)

    def forward(self, inputs: Any, data_samples: Any = None, mode: str = "tensor") -> Any:
        """``'loss'``: ``{'loss': ...}``; ``'tensor'`` and ``'predict'``: the outputs."""
        if isinstance(inputs, list):
            inputs = torch.stack(inputs)
        if isinstance(data_samples, list):
            data_samples = torch.stack(data_samples)
        outputs = self.outputs(inputs)
        if mode == "loss":
            return {"loss": (data_samples - outputs).sum()}
        return outputs

    def outputs(self, inputs: torch.Tensor) -> torch.Tensor:
        """The network's outputs for a batch of inputs."""
        return self.linear2(self.linear1(inputs))  # type: ignore[no-any-return]


class ToyDataset(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Twelve samples ``{'inputs': 2 random numbers, 'data_samples': 1.0}``, drawn once at import."""

    METAINFO: ClassVar[dict[str, Any]] = {}
    data = torch.randn(12, 2)
    label = torch.ones(12)

    @property
    def metainfo(self) -> dict[str, Any]:
        """The dataset's meta information (empty)."""
        return self.METAINFO

    def __len__(self) -> int:
        return int(self.data.size(0))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"inputs": self.data[index], "data_samples": self.label[index]}


class ToyMetric(BaseMetric):
    """A metric that always reports ``acc = 1``.

    Args:
        collect_device: where results are gathered.
        dummy_metrics: accepted and kept, for configs that pass it.
    """

    def __init__(self, collect_device: str = "cpu", dummy_metrics: Any = None) -> None:
        super().__init__(collect_device=collect_device)
        self.dummy_metrics = dummy_metrics

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Record one result per batch."""
        self.results.append({"acc": 1})

    def compute_metrics(self, results: list[Any]) -> dict[str, float]:
        """``{'acc': 1}``."""
        return {"acc": 1}


_TOYS: tuple[tuple[Registry, type], ...] = ((MODELS, ToyModel), (METRICS, ToyMetric), (DATASETS, ToyDataset))


def _loader(sampler: str, shuffle: bool) -> dict[str, Any]:
    return {
        "dataset": {"type": "ToyDataset"},
        "sampler": {"type": sampler, "shuffle": shuffle},
        "batch_size": 3,
        "num_workers": 0,
    }


class RunnerTestCase(unittest.TestCase):
    """A test case that builds small runners and leaves no global state behind.

    ``setUp`` makes a temporary work dir and registers :class:`ToyModel`, :class:`ToyMetric` and
    :class:`ToyDataset`; ``self.epoch_based_cfg`` (2 epochs of 4 iterations, validation every
    epoch) and ``self.iter_based_cfg`` (12 iterations, a checkpoint at the end) are configs whose
    keys read as attributes at every depth (``cfg.train_cfg.max_epochs = 3``).
    :meth:`build_runner` builds one with a unique experiment name. ``tearDown`` closes the log
    files, forgets every named logger, visualizer, message hub and default scope, restores the
    registries' previous entries for the toy names and removes the work dir.
    """

    dist_cfg: ClassVar[dict[str, Any]] = {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": 29600,
        "RANK": "0",
        "WORLD_SIZE": "1",
        "LOCAL_RANK": "0",
    }

    def setUp(self) -> None:
        """Create the work dir, register the toys and build the two configs."""
        self.temp_dir = tempfile.TemporaryDirectory()
        self._replaced = [(registry, toy.__name__, registry.module_dict.get(toy.__name__)) for registry, toy in _TOYS]
        for registry, toy in _TOYS:
            registry.register_module(module=toy, force=True)
        self.epoch_based_cfg = ConfigDict(
            work_dir=self.temp_dir.name,
            model={"type": "ToyModel"},
            train_dataloader=_loader("DefaultSampler", shuffle=True),
            val_dataloader=_loader("DefaultSampler", shuffle=False),
            val_evaluator=[{"type": "ToyMetric"}],
            test_dataloader=_loader("DefaultSampler", shuffle=False),
            test_evaluator=[{"type": "ToyMetric"}],
            optim_wrapper={"optimizer": {"type": "SGD", "lr": 0.1}},
            train_cfg={"by_epoch": True, "max_epochs": 2, "val_interval": 1},
            val_cfg={},
            test_cfg={},
            default_hooks={"logger": {"type": "LoggerHook", "interval": 1}},
            custom_hooks=[],
            env_cfg={"dist_cfg": {"backend": "nccl"}},
            experiment_name="test1",
        )
        self.iter_based_cfg = copy.deepcopy(self.epoch_based_cfg)
        self.iter_based_cfg.train_dataloader = _loader("InfiniteSampler", shuffle=True)
        self.iter_based_cfg.log_processor = {"by_epoch": False}
        self.iter_based_cfg.train_cfg = {"by_epoch": False, "max_iters": 12}
        self.iter_based_cfg.default_hooks = {
            "logger": {"type": "LoggerHook", "interval": 1},
            "checkpoint": {"type": "CheckpointHook", "interval": 12, "by_epoch": False},
        }

    def tearDown(self) -> None:
        """Close log files, clear named instances, restore the registries, remove the work dir."""
        logging.shutdown()  # closes the log files, so the folder can be removed everywhere
        for manager in (MMLogger, Visualizer, DefaultScope, MessageHub):
            manager._instance_dict.clear()
        for registry, name, previous in self._replaced:
            if previous is None:
                registry.module_dict.pop(name, None)
            else:
                registry.module_dict[name] = previous
        self.temp_dir.cleanup()
        if is_distributed():
            torch.distributed.destroy_process_group()

    @property
    def experiment_name(self) -> str:
        """A name no other runner of this process has (the test's name, the time, a UUID)."""
        return f"{self._testMethodName}_{time.time()}_{uuid.uuid4()}"

    def build_runner(self, cfg: Mapping[str, Any]) -> Runner:
        """``Runner.from_cfg(cfg)`` under a unique experiment name (set in ``cfg`` too)."""
        if isinstance(cfg, dict):
            cfg["experiment_name"] = self.experiment_name
        return Runner.from_cfg(cfg)

    def setup_dist_env(self) -> None:
        """Set the environment of a one-process distributed run on a port of its own."""
        self.dist_cfg["MASTER_PORT"] += 1
        for key, value in self.dist_cfg.items():
            os.environ[key] = str(value)

    def clear_work_dir(self) -> None:
        """Delete everything in the work dir (log files closed first)."""
        logging.shutdown()
        for entry in os.scandir(self.temp_dir.name):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.remove(entry.path)
