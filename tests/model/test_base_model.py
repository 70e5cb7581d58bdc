"""BaseModel: construction, train/val/test steps, device moves, the seed's examples (spec §7.5)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from model_toys import RecordingOptimWrapper, RecordingPreprocessor, ToyModel, batches
from torch import nn

from fengine.model import BaseDataPreprocessor, BaseModel, ImgDataPreprocessor
from fengine.optim import OptimWrapper


def test_train_step_order_and_numbers_match_a_plain_loop() -> None:
    log: list[str] = []
    torch.manual_seed(0)
    model = ToyModel(RecordingPreprocessor(log), log)
    torch.manual_seed(0)
    reference = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))
    wrapper = RecordingOptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1), log)
    ref_opt = torch.optim.SGD(reference.parameters(), lr=0.1)
    for batch in batches():
        log.clear()
        log_vars = model.train_step(batch, wrapper)
        assert log == ["enter", "preprocess training=True", "forward loss", "exit", "update"]
        ref_loss = (batch["data_samples"] - reference(batch["inputs"])).sum()
        ref_loss.backward()
        ref_opt.step()
        ref_opt.zero_grad()
        assert list(log_vars) == ["loss", "acc"]
        assert (
            torch.equal(log_vars["loss"], ref_loss.detach()) and not log_vars["loss"].requires_grad
        )
    for ours, theirs in zip(model.parameters(), reference.parameters()):
        assert torch.equal(ours, theirs)


def test_val_and_test_step_predict_without_training_flag() -> None:
    log: list[str] = []
    model = ToyModel(RecordingPreprocessor(log), log)
    batch = batches()[0]
    for step in (model.val_step, model.test_step):
        log.clear()
        preds = step(batch)
        assert log == ["preprocess training=False", "forward predict"]
        assert len(preds) == 3 and torch.equal(torch.stack(preds), model(batch["inputs"]))


def test_positional_batches_and_bad_batches() -> None:
    model = ToyModel()
    batch = batches()[0]
    preds = model.val_step([batch["inputs"], batch["data_samples"]])
    assert len(preds) == 3
    with pytest.raises(TypeError, match=r"must be a dict .* or a list/tuple .*got Tensor"):
        model.val_step(batch["inputs"])


def test_seed_example_builds_preprocessor_from_config() -> None:
    model = BaseModel(
        data_preprocessor=dict(
            type="ImgDataPreprocessor",
            mean=[123.675, 116.28, 103.53],
            std=[58.395, 57.12, 57.375],
            bgr_to_rgb=True,
            pad_size_divisor=32,
        )
    )
    assert isinstance(model.data_preprocessor, ImgDataPreprocessor)
    assert model.data_preprocessor.pad_size_divisor == 32
    out = model.data_preprocessor({"inputs": [torch.zeros(3, 20, 40, dtype=torch.uint8)]})
    assert out["inputs"].shape == (1, 3, 32, 64)
    with pytest.raises(NotImplementedError, match="forward"):
        model(torch.zeros(1))
    with pytest.raises(NotImplementedError):
        model.val_step({"inputs": [torch.zeros(3, 2, 2)]})


def test_data_preprocessor_forms() -> None:
    assert type(BaseModel().data_preprocessor) is BaseDataPreprocessor
    module = ImgDataPreprocessor()
    assert BaseModel(data_preprocessor=module).data_preprocessor is module
    with pytest.raises(
        TypeError,
        match=r"^data_preprocessor should be a `dict` or `nn.Module` instance, but got str",
    ):
        BaseModel(data_preprocessor="ImgDataPreprocessor")  # type: ignore[arg-type]


class Wrapper(BaseModel):
    def __init__(self) -> None:
        super().__init__()
        self.inner = ToyModel()


def test_to_and_cpu_move_every_preprocessor_inside() -> None:
    model = Wrapper()
    assert model.device == torch.device("cpu")
    model.to("meta")
    assert (
        model.data_preprocessor.device
        == model.inner.data_preprocessor.device
        == torch.device("meta")
    )
    assert model.device == torch.device("meta")
    model.to(torch.float64)  # a dtype-only move keeps the device
    assert model.inner.data_preprocessor.device == torch.device("meta")
    model = Wrapper()
    model.inner.data_preprocessor._device = torch.device("meta")
    model.cpu()
    assert (
        model.data_preprocessor.device
        == model.inner.data_preprocessor.device
        == torch.device("cpu")
    )
    assert BaseModel().device == torch.device("cpu")


def test_parse_losses_is_the_core_function() -> None:
    loss, log_vars = BaseModel().parse_losses(
        {"loss_a": torch.tensor([1.0, 3.0]), "top1": torch.tensor(5.0)}
    )
    assert float(loss) == 2.0 and [float(v) for v in log_vars.values()] == [2.0, 2.0, 5.0]


class SeedModel(BaseModel):
    """The seed's "Basic Model Implementation", verbatim apart from the import."""

    def __init__(self, num_classes: int = 10, init_cfg: Any = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1)
        )
        self.head = nn.Linear(64, num_classes)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        x = self.backbone(inputs)
        x = x.flatten(1)
        return self.head(x)

    def train_step(self, data: Any, optim_wrapper: Any) -> dict[str, Any]:  # type: ignore[override]
        inputs = data["inputs"]
        labels = data["labels"]
        logits = self(inputs)
        loss = nn.CrossEntropyLoss()(logits, labels)
        parsed_loss, log_vars = self.parse_losses({"loss": loss})
        optim_wrapper.update_params(parsed_loss)
        return {"loss": parsed_loss, "log_vars": log_vars}


def test_seed_basic_model_trains() -> None:
    torch.manual_seed(0)
    model = SeedModel(num_classes=3, init_cfg=dict(type="Kaiming", layer="Conv2d"))
    model.init_weights()
    wrapper = OptimWrapper(torch.optim.SGD(model.parameters(), lr=1.0))
    data = {"inputs": torch.randn(6, 3, 8, 8), "labels": torch.tensor([0, 1, 2, 0, 1, 2])}
    losses = [float(model.train_step(data, wrapper)["loss"].detach()) for _ in range(30)]
    assert losses[-1] < 0.4 * losses[0]
    final = F.cross_entropy(model(data["inputs"]), data["labels"]).detach()
    assert float(final) < losses[0]
