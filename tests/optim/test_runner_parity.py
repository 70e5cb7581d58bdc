"""A Runner with an optim wrapper and schedulers equals the same run written with torch.optim.

Issue "OptimWrapper and parameter schedulers", done-when: several epochs through
``Runner(optim_wrapper=..., param_scheduler=...)`` end with parameters bit-identical to a hand
loop over ``torch.optim.SGD`` and ``torch.optim.lr_scheduler``, and the wrapper's state dict
round-trips through the checkpoint.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fengine import Runner
from fengine.dataset import InMemoryDataset
from fengine.model import BaseModel


class Regressor(BaseModel):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1))

    def forward(self, inputs: torch.Tensor, targets: Any = None, mode: str = "tensor") -> Any:
        out = self.net(inputs)
        return {"loss": F.mse_loss(out, targets)} if mode == "loss" else out


def _data() -> InMemoryDataset:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(24, 3, generator=g)
    return InMemoryDataset(inputs=x, targets=x.sum(1, keepdim=True).sin())


@pytest.mark.parametrize(
    ("optimizer", "torch_cls"),
    [
        (dict(type="SGD", lr=0.05, momentum=0.9, weight_decay=1e-3, nesterov=True), torch.optim.SGD),
        (dict(type="AdamW", lr=0.01, weight_decay=0.05), torch.optim.AdamW),
    ],
)
def test_runner_training_is_bit_identical_to_torch(tmp_path: Path, optimizer: dict[str, Any], torch_cls: Any) -> None:
    torch.manual_seed(0)
    model = Regressor()
    reference = copy.deepcopy(model.net)
    loader = dict(dataset=_data(), sampler=dict(type="DefaultSampler", shuffle=False),
                  collate_fn=dict(type="default_collate"), batch_size=6)
    epochs, per_epoch = 3, 4
    runner = Runner(
        model=model,
        work_dir=str(tmp_path),
        train_dataloader=loader,
        optim_wrapper=dict(optimizer=optimizer),
        param_scheduler=[
            dict(type="LinearLR", start_factor=0.2, end=5, by_epoch=False),
            dict(type="MultiStepLR", milestones=[1, 2], gamma=0.5, by_epoch=True),
        ],
        train_cfg=dict(by_epoch=True, max_epochs=epochs),
        randomness=dict(seed=0),
    )
    runner.train()

    kwargs = {k: v for k, v in optimizer.items() if k != "type"}
    opt = torch_cls(reference.parameters(), foreach=True, **kwargs)
    # MMEngine's LinearLR(end=5) reaches the full lr at its last step: torch's total_iters = end - 1.
    warmup = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.2, total_iters=4)
    decay = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[1, 2], gamma=0.5)
    data = _data()
    for _ in range(epochs):
        for b in range(per_epoch):
            x, y = data.tensors["inputs"][b * 6:(b + 1) * 6], data.tensors["targets"][b * 6:(b + 1) * 6]
            opt.zero_grad()
            F.mse_loss(reference(x), y).backward()
            opt.step()
            warmup.step()
        decay.step()

    for (name, got), want in zip(model.net.state_dict().items(), reference.state_dict().values(), strict=True):
        assert torch.equal(got, want), name
    assert runner.optim_wrapper.get_lr()["lr"][0] == opt.param_groups[0]["lr"]

    # The wrapper's state round-trips through the checkpoint the run wrote.
    checkpoint = torch.load(tmp_path / f"epoch_{epochs}.pth", weights_only=True)
    restored = Runner(
        model=Regressor(), work_dir=str(tmp_path / "again"), train_dataloader=loader,
        optim_wrapper=dict(optimizer=optimizer), train_cfg=dict(by_epoch=True, max_epochs=epochs),
    )
    restored.optim_wrapper = restored.build_optim_wrapper(restored.optim_wrapper)
    restored.optim_wrapper.load_state_dict(checkpoint["optimizer"])
    saved, again = runner.optim_wrapper.state_dict(), restored.optim_wrapper.state_dict()
    assert saved["param_groups"] == again["param_groups"]
    for key, state in saved["state"].items():
        for field, value in state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(again["state"][key][field])), (key, field)
