"""``Runner(compile=...)`` / ``cfg.compile``: the model's forward under ``torch.compile``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from fengine.dataset import DefaultSampler, InMemoryDataset, default_collate
from fengine.model import BaseModel
from fengine.runner import Runner


class MLP(BaseModel):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))

    def forward(self, inputs: torch.Tensor, data_samples: torch.Tensor, mode: str = "tensor") -> Any:
        logits = self.net(inputs)
        if mode == "loss":
            return {"loss": F.cross_entropy(logits, data_samples)}
        return logits


def train(work_dir: Path, **kwargs: Any) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    dataset = InMemoryDataset(
        inputs=torch.randn(80, 8, generator=generator),
        data_samples=torch.randint(0, 4, (80,), generator=generator),
    )
    loader = DataLoader(dataset, batch_size=8, sampler=DefaultSampler(dataset, seed=0), collate_fn=default_collate)
    runner = Runner(
        model=MLP(),
        work_dir=str(work_dir),
        train_dataloader=loader,
        train_cfg={"by_epoch": True, "max_epochs": 5},  # 50 steps
        optim_wrapper={"optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9}},
        default_hooks={"checkpoint": None, "logger": None},
        randomness={"seed": 0},
        **kwargs,
    )
    runner.train()
    assert runner.iter == 50
    return {k: v.detach().clone() for k, v in runner.model.state_dict().items()}


def test_compiled_training_matches_eager_after_50_steps(tmp_path: Path) -> None:
    eager = train(tmp_path / "eager")
    compiled = train(tmp_path / "compiled", compile=True)
    assert eager.keys() == compiled.keys()
    for name, tensor in eager.items():
        torch.testing.assert_close(compiled[name], tensor, rtol=1e-5, atol=1e-7, msg=name)
    assert any(not torch.equal(t, MLP().state_dict()[n]) for n, t in eager.items())  # it trained


def test_cfg_compile_takes_torch_compile_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []
    original = nn.Module.compile

    def spy(self: nn.Module, *args: Any, **kwargs: Any) -> None:
        seen.append(kwargs)
        original(self, *args, **kwargs)

    monkeypatch.setattr(nn.Module, "compile", spy)
    train(tmp_path / "cfg", cfg={"compile": {"backend": "eager"}})
    assert seen == [{"backend": "eager"}]
    train(tmp_path / "off")
    assert len(seen) == 1  # not compiled by default
    log = next((tmp_path / "cfg").glob("*/*.log")).read_text()
    assert 'Model has been "compiled".' in log


@pytest.mark.parametrize("value", ["yes", 1, ["inductor"]])
def test_compile_must_be_a_bool_or_a_dict(tmp_path: Path, value: Any) -> None:
    with pytest.raises(TypeError, match=r"compile must be a bool or a dict .* got"):
        Runner(model=MLP(), work_dir=str(tmp_path), compile=value)
