"""``Pretrained`` initialisation from a local checkpoint file (spec §7.2)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from fengine.logging import MMLogger
from fengine.model import BaseModule, initialize
from fengine.model.pretrained import read_state_dict, select_prefix


class Backbone(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 1)
        self.bn = nn.BatchNorm2d(2)


def saved(tmp_path: Path, state: dict[str, torch.Tensor], wrap: bool = True) -> Path:
    path = tmp_path / "ckpt.pth"
    torch.save({"meta": {"epoch": 3}, "state_dict": state} if wrap else state, path)
    return path


def detector_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(7)
    source = nn.Module()
    source.backbone = Backbone()
    source.head = nn.Linear(2, 2)
    return {k: v.clone() for k, v in source.state_dict().items()}


def test_prefix_selects_and_strips(tmp_path: Path) -> None:
    state = detector_state()
    path = saved(tmp_path, state)
    model = Backbone()
    initialize(model, dict(type="Pretrained", checkpoint=str(path), prefix="backbone"))
    loaded = model.state_dict()
    assert all(torch.equal(loaded[k], state[f"backbone.{k}"]) for k in loaded)


def test_without_prefix_strips_ddp_module_prefix_and_loads_non_strictly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = {f"module.{k}": v for k, v in detector_state().items() if k.startswith("head")}
    state["module.extra"] = torch.zeros(1)
    path = saved(tmp_path, state, wrap=False)
    model = nn.Module()
    model.head, model.other = nn.Linear(2, 2), nn.Linear(1, 1)
    with caplog.at_level(logging.WARNING, logger="fengine"):
        initialize(model, dict(type="Pretrained", checkpoint=path))
    assert torch.equal(model.head.weight, state["module.head.weight"])
    warning = "\n".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "unexpected key in source state_dict: extra" in warning
    assert "missing keys in source state_dict: other.weight, other.bias" in warning


def test_shape_mismatch_skipped_with_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = saved(tmp_path, {"weight": torch.ones(3, 3), "bias": torch.full((2,), 5.0)})
    linear = nn.Linear(2, 2)
    before = linear.weight.clone()
    with caplog.at_level(logging.WARNING, logger="fengine"):
        initialize(linear, dict(type="Pretrained", checkpoint=path))
    assert torch.equal(linear.weight, before) and linear.bias.eq(5).all()
    assert "size mismatch (not loaded): weight: checkpoint (3, 3) vs model (2, 2)" in caplog.text


def test_pretrained_runs_after_children_and_records_info(tmp_path: Path) -> None:
    state = detector_state()
    path = saved(tmp_path, state)

    class Child(BaseModule):
        def __init__(self) -> None:
            super().__init__(dict(type="Constant", val=9, layer="Linear"))
            self.head = nn.Linear(2, 2)

    class Model(BaseModule):
        def __init__(self) -> None:
            super().__init__(
                [
                    dict(type="Pretrained", checkpoint=str(path)),
                    dict(type="Constant", val=1, layer="Conv2d"),
                ]
            )
            self.backbone = Backbone()
            self.child = Child()

    model = Model()
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    # A new MMLogger without a log file is the current one: the table is logged to it at INFO.
    logger = MMLogger.get_instance(f"pretrained-{tmp_path.name}")
    logger.addHandler(handler)
    try:
        model.init_weights()
    finally:
        logger.removeHandler(handler)
        MMLogger._instance_dict.pop(logger.instance_name)
    assert torch.equal(
        model.backbone.conv.weight, state["backbone.conv.weight"]
    )  # Pretrained beat Constant
    assert model.child.head.weight.eq(
        9
    ).all()  # "head" is not a key under the child: untouched by loading
    assert (
        f"\nbackbone.conv.weight - torch.Size([2, 1, 1, 1]): \nPretrainedInit: load from {path} \n"
        in lines
    )


def test_prefix_absent_is_key_error(tmp_path: Path) -> None:
    path = saved(tmp_path, detector_state())
    with pytest.raises(
        KeyError, match=r"prefix 'neck' is not in the pretrained model.*\['backbone', 'head'\]"
    ):
        initialize(Backbone(), dict(type="Pretrained", checkpoint=path, prefix="neck"))


def test_select_prefix_is_pure() -> None:
    state = {"a.x": torch.ones(1), "ab.y": torch.zeros(1), "a.z.w": torch.ones(2)}
    assert set(select_prefix(state, "a.")) == {"x", "z.w"} and set(state) == {
        "a.x",
        "ab.y",
        "a.z.w",
    }


def test_only_weights_are_loaded(tmp_path: Path) -> None:
    path = tmp_path / "unsafe.pth"
    torch.save({"state_dict": {}, "obj": Backbone}, path)
    with pytest.raises(ValueError, match="weights_only=True"):
        read_state_dict(path)
    with pytest.raises(FileNotFoundError):
        read_state_dict(tmp_path / "missing.pth")
