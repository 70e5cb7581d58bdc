"""BaseTTAModel: views split, per-sample regrouping, merge_preds (spec §7.6 and the extra checks)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from fengine.model import BaseModel, BaseTTAModel
from fengine.model.test_time_aug import split_views
from fengine.registry import MODELS


class Echo(BaseModel):
    """Predicts ``'<input>|<sample>'`` for every sample of a batch."""

    def forward(self, inputs: Any, data_samples: Any = None, mode: str = "tensor") -> Any:
        return [f"{i}|{s}" for i, s in zip(inputs, data_samples)]


class JoinTTA(BaseTTAModel):
    def merge_preds(self, data_samples_list: list[Any]) -> list[str]:
        return [" + ".join(preds) for preds in data_samples_list]


def test_extra_check_dict_views() -> None:
    tta = JoinTTA(Echo())
    data = {
        "inputs": [["img1_a0", "img2_a0"], ["img1_a1", "img2_a1"]],
        "data_samples": [["s1_a0", "s2_a0"], ["s1_a1", "s2_a1"]],
    }
    assert tta.test_step(data) == ["img1_a0|s1_a0 + img1_a1|s1_a1", "img2_a0|s2_a0 + img2_a1|s2_a1"]


def test_list_views_go_positional() -> None:
    tta = JoinTTA(Echo())
    data = [[["a0"], ["a1"], ["a2"]], [["s0"], ["s1"], ["s2"]]]
    assert tta.test_step(data) == ["a0|s0 + a1|s1 + a2|s2"]


def test_split_views_shapes_and_errors() -> None:
    assert split_views({"x": [1, 2], "y": [3, 4]}) == [{"x": 1, "y": 3}, {"x": 2, "y": 4}]
    assert split_views(([1, 2], [3, 4])) == [[1, 3], [2, 4]]
    with pytest.raises(ValueError, match=r"one entry per view.*\{'x': 2, 'y': 1\}"):
        split_views({"x": [1, 2], "y": [3]})
    with pytest.raises(ValueError, match="one entry per view"):
        split_views({})
    with pytest.raises(TypeError, match="got str"):
        split_views("views")


MODELS.register_module(module=Echo, name="TestEchoModel", force=True)


def test_module_from_config_gets_the_preprocessor() -> None:
    cfg = dict(type="TestEchoModel")
    tta = JoinTTA(
        cfg, tta_cfg=dict(merge="join"), data_preprocessor=dict(type="ImgDataPreprocessor")
    )
    assert type(tta.module).__name__ == "Echo" and tta.tta_cfg == {"merge": "join"}
    assert type(tta.module.data_preprocessor).__name__ == "ImgDataPreprocessor"
    assert cfg == {"type": "TestEchoModel"}  # the caller's config is not modified


def test_bad_modules_and_unsupported_calls() -> None:
    with pytest.raises(TypeError, match=r"must be an nn\.Module or a config dict"):
        JoinTTA("Echo")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must have a `test_step`"):
        JoinTTA(nn.Linear(1, 1))
    tta = JoinTTA(Echo())
    with pytest.raises(NotImplementedError):
        tta.val_step({"inputs": [torch.zeros(1)]})
    with pytest.raises(NotImplementedError, match="merge_preds"):
        BaseTTAModel(Echo()).test_step({"inputs": [["x"]], "data_samples": [["s"]]})
