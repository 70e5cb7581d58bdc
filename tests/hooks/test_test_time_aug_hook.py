"""PrepareTTAHook and build_runner_with_tta: testing runs on the TTA model built around the model."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch.utils.data import Dataset

from fengine.hooks import PrepareTTAHook, build_runner_with_tta
from fengine.model import BaseModel, BaseTTAModel
from fengine.registry import DATASETS, MODELS, TRANSFORMS
from fengine.testing import RunnerTestCase


class Views:
    """Two views of every sample: as it is, and doubled."""

    def __call__(self, sample: dict[str, Any]) -> dict[str, list[Any]]:
        return {key: [value, 2 * value] for key, value in sample.items()}


class ViewData(Dataset[dict[str, Any]]):
    def __init__(self, pipeline: Any = None) -> None:
        self.pipeline = TRANSFORMS.build(pipeline) if pipeline is not None else (lambda s: s)
        self.data = torch.arange(6, dtype=torch.float32).reshape(6, 1)

    metainfo: ClassVar[dict[str, Any]] = {}

    def __len__(self) -> int:
        return 6

    def __getitem__(self, index: int) -> Any:
        return self.pipeline({"inputs": self.data[index], "data_samples": self.data[index]})


class Echo(BaseModel):
    def __init__(self) -> None:
        super().__init__()
        self.linear = torch.nn.Linear(1, 1)

    def forward(self, inputs: Any, data_samples: Any = None, mode: str = "tensor") -> Any:
        return list(data_samples)


class SumViews(BaseTTAModel):
    merged: ClassVar[list[Any]] = []

    def merge_preds(self, data_samples_list: list[list[Any]]) -> list[Any]:
        result = [sum(views) for views in data_samples_list]
        SumViews.merged.extend(result)
        return result


class _Cases(RunnerTestCase):
    __test__ = False  # run by the tests below

    def setUp(self) -> None:
        super().setUp()
        for registry, cls in ((TRANSFORMS, Views), (DATASETS, ViewData), (MODELS, Echo), (MODELS, SumViews)):
            registry.register_module(module=cls, force=True)
        SumViews.merged = []

    def tearDown(self) -> None:
        for registry, name in ((TRANSFORMS, "Views"), (DATASETS, "ViewData"), (MODELS, "Echo"), (MODELS, "SumViews")):
            registry.module_dict.pop(name, None)
        super().tearDown()

    def test_hook(self) -> None:
        cfg = copy.deepcopy(self.epoch_based_cfg)
        cfg.model = {"type": "Echo"}
        cfg.test_dataloader.dataset = {"type": "ViewData", "pipeline": {"type": "Views"}}
        cfg.custom_hooks = [{"type": "PrepareTTAHook", "tta_cfg": {"type": "SumViews"}}]
        runner = self.build_runner(cfg)
        model = runner.model
        runner.test()
        assert isinstance(runner.model, SumViews) and runner.model.module is model
        assert [float(x) for x in SumViews.merged] == [3.0 * i for i in range(6)]

    def test_build_runner_with_tta(self) -> None:
        cfg = copy.deepcopy(self.epoch_based_cfg)
        cfg.model = {"type": "Echo"}
        cfg.test_dataloader.dataset = {"type": "ViewData"}
        cfg.tta_pipeline = {"type": "Views"}
        cfg.tta_model = {"type": "SumViews"}
        runner = build_runner_with_tta(cfg)
        assert "pipeline" not in cfg.test_dataloader.dataset
        runner.test()
        assert isinstance(runner.model, SumViews)
        assert [float(x) for x in SumViews.merged] == [3.0 * i for i in range(6)]


@pytest.mark.parametrize("name", ["test_hook", "test_build_runner_with_tta"])
def test_testing_runs_on_the_tta_model(name: str) -> None:
    import unittest

    result = unittest.TestResult()
    _Cases(name).run(result)
    assert result.wasSuccessful(), result.errors + result.failures


def test_build_runner_with_tta_needs_both_keys(tmp_path: Path) -> None:
    with pytest.raises(KeyError, match=r"needs \['tta_pipeline'\]"):
        build_runner_with_tta({"tta_model": {}, "model": {}})
    hook = PrepareTTAHook(tta_cfg={"type": "SumViews"})
    assert hook.tta_cfg == {"type": "SumViews"}
