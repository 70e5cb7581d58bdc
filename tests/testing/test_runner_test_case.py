"""RunnerTestCase: real runs from its configs, and no global state left behind."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import unittest

import torch

from fengine.logging import MessageHub, MMLogger
from fengine.registry import DATASETS, METRICS, MODELS, DefaultScope
from fengine.testing import RunnerTestCase, assert_dict_has_keys, assert_keys_equal
from fengine.testing.runner_test_case import ToyDataset, ToyMetric, ToyModel
from fengine.visualization import Visualizer


class _Cases(RunnerTestCase):
    __test__ = False  # run by the tests below, which check what it leaves behind

    def test_epoch_based(self) -> None:
        cfg = copy.deepcopy(self.epoch_based_cfg)
        cfg.train_cfg.max_epochs = 3
        runner = self.build_runner(cfg)
        assert runner.experiment_name.startswith("test_epoch_based_")
        runner.train()
        assert (runner.epoch, runner.iter) == (3, 12)
        assert os.path.isfile(os.path.join(self.temp_dir.name, "epoch_3.pth"))
        assert runner.message_hub.get_scalar("val/acc").current() == 1

    def test_iter_based(self) -> None:
        runner = self.build_runner(copy.deepcopy(self.iter_based_cfg))
        runner.train()
        assert runner.iter == 12
        assert os.path.isfile(os.path.join(self.temp_dir.name, "iter_12.pth"))
        self.clear_work_dir()
        assert os.listdir(self.temp_dir.name) == []


def _run(name: str) -> unittest.TestCase:
    case = _Cases(name)
    result = unittest.TestResult()
    case.run(result)
    assert result.wasSuccessful(), result.errors + result.failures
    return case


def test_runs_train_and_leaves_no_global_state() -> None:
    before = {registry.name: registry.module_dict.get(name) for registry, name in ((MODELS, "ToyModel"), (METRICS, "ToyMetric"), (DATASETS, "ToyDataset"))}
    for name in ("test_epoch_based", "test_iter_based"):
        case = _run(name)
        assert not os.path.exists(case.temp_dir.name)  # type: ignore[attr-defined]
        for manager in (MMLogger, Visualizer, DefaultScope, MessageHub):
            assert manager._instance_dict == {}
    after = {registry.name: registry.module_dict.get(name) for registry, name in ((MODELS, "ToyModel"), (METRICS, "ToyMetric"), (DATASETS, "ToyDataset"))}
    assert after == before


def test_the_toys() -> None:
    model = ToyModel()
    inputs = [ToyDataset()[i]["inputs"] for i in range(3)]
    labels = [ToyDataset()[i]["data_samples"] for i in range(3)]
    out = model(inputs, labels, mode="tensor")
    loss = model(inputs, labels, mode="loss")["loss"]
    assert torch.equal(loss, (torch.stack(labels) - out).sum())
    assert torch.equal(model(inputs, mode="predict"), out)
    assert len(ToyDataset()) == 12 and ToyDataset().metainfo == {}
    metric = ToyMetric()
    metric.process({}, [])
    assert metric.compute_metrics(metric.results) == {"acc": 1}


def test_key_checks() -> None:
    assert assert_dict_has_keys({"a": 1, "b": 2}, ["a"]) and not assert_dict_has_keys({"a": 1}, ["a", "c"])
    assert assert_keys_equal(["a", "b"], ["b", "a"]) and not assert_keys_equal(["a"], ["a", "b"])


def test_importable_without_hypothesis() -> None:
    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "from fengine.testing import RunnerTestCase, assert_allclose, Simulation\n"
        "import fengine.testing as t\n"
        "try:\n    t.check_hook\nexcept ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "fengine.testing.check_hook needs hypothesis" in out
