"""MMEngine's checkpoints load into fengine (safely), and fengine's load into MMEngine.

The fixtures ``tests/fixtures/mmengine/epoch_{1,2}.pth`` (6 KB each) were written by MMEngine
0.10.7 (torch 2.13, NumPy 2) running this script, whose model and data :class:`Net` and
:func:`data` below repeat exactly::

    import torch
    from torch import nn
    from torch.utils.data import DataLoader
    from mmengine.model import BaseModel
    from mmengine.runner import Runner

    class Net(BaseModel):
        def __init__(self):
            super().__init__()
            self.linear1 = nn.Linear(2, 2)
            self.linear2 = nn.Linear(2, 1)

        def forward(self, inputs, labels, mode="tensor"):
            out = self.linear2(self.linear1(inputs)).squeeze(1)
            if mode == "loss":
                return {"loss": ((out - labels) ** 2).mean()}
            return out

    def data():
        x = torch.linspace(-1, 1, 16).reshape(8, 2)
        y = x[:, 0] - 0.5 * x[:, 1]
        return [dict(inputs=a, labels=b) for a, b in zip(x, y)]

    Runner(
        model=Net(),
        work_dir="work",
        train_dataloader=DataLoader(data(), batch_size=2, shuffle=False),
        train_cfg=dict(by_epoch=True, max_epochs=2),
        optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.1, momentum=0.9)),
        param_scheduler=dict(type="MultiStepLR", milestones=[1], gamma=0.5, by_epoch=True),
        randomness=dict(seed=0),
        default_hooks=dict(logger=dict(type="LoggerHook", interval=1)),
    ).train()

(default hooks otherwise: ``CheckpointHook(interval=1)`` wrote ``epoch_1.pth`` and
``epoch_2.pth``). Their message hubs pickle MMEngine's ``HistoryBuffer`` objects (with NumPy
arrays) and the scheduler state a ``collections.Counter``; fengine reads them with
``weights_only=True`` through its allow-list (:mod:`fengine.core.mmengine_pickle`).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from fengine.model import BaseModel
from fengine.runner.checkpoint import CheckpointError, read_checkpoint
from fengine.runner.runner import Runner

FIXTURES = Path(__file__).parents[1] / "fixtures" / "mmengine"
EPOCH_1, EPOCH_2 = str(FIXTURES / "epoch_1.pth"), str(FIXTURES / "epoch_2.pth")
MMENGINE_PYTHON = Path("/tmp/mmenv/bin/python")


class Net(BaseModel):
    """The fixture's model (same names, same forward)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear1 = nn.Linear(2, 2)
        self.linear2 = nn.Linear(2, 1)

    def forward(self, inputs: torch.Tensor, labels: torch.Tensor, mode: str = "tensor") -> Any:  # type: ignore[override]
        out = self.linear2(self.linear1(inputs)).squeeze(1)
        if mode == "loss":
            return {"loss": ((out - labels) ** 2).mean()}
        return out


def data() -> list[dict[str, torch.Tensor]]:
    x = torch.linspace(-1, 1, 16).reshape(8, 2)
    y = x[:, 0] - 0.5 * x[:, 1]
    return [{"inputs": a, "labels": b} for a, b in zip(x, y)]


def runner_kwargs(work_dir: Path, **overrides: Any) -> dict[str, Any]:
    return {
        "model": Net(),
        "work_dir": str(work_dir),
        "train_dataloader": DataLoader(data(), batch_size=2, shuffle=False),  # type: ignore[arg-type]
        "train_cfg": {"by_epoch": True, "max_epochs": 2},
        "optim_wrapper": {"optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9}},
        "param_scheduler": {"type": "MultiStepLR", "milestones": [1], "gamma": 0.5, "by_epoch": True},
        "randomness": {"seed": 0},
        "default_hooks": {"logger": {"type": "LoggerHook", "interval": 1}},
        "log_level": "WARNING",
        **overrides,
    }


def test_the_fixture_reads_in_safe_mode_as_plain_data() -> None:
    checkpoint = read_checkpoint(EPOCH_1)  # weights_only=True
    assert list(checkpoint) == ["meta", "state_dict", "message_hub", "optimizer", "param_schedulers"]
    assert (checkpoint["meta"]["epoch"], checkpoint["meta"]["iter"], checkpoint["meta"]["mmengine_version"]) == (1, 4, "0.10.7")
    loss = checkpoint["message_hub"]["log_scalars"]["train/loss"]
    assert set(loss) == {"log_history", "count_history", "max_length"}
    assert len(loss["log_history"]) == 4 and loss["count_history"] == [1, 1, 1, 1]
    assert isinstance(checkpoint["message_hub"]["runtime_info"]["eta"], float)  # was a NumPy scalar
    assert checkpoint["param_schedulers"][0]["milestones"] == {1: 1} and checkpoint["param_schedulers"][0]["last_step"] == 1
    assert checkpoint["optimizer"]["param_groups"][0]["lr"] == 0.05


def test_the_allow_list_refuses_other_code() -> None:
    """``getattr`` is answered only for the HistoryBuffer stand-in; other globals stay refused."""
    import pickle

    from fengine.core.mmengine_pickle import LegacyHistoryBuffer, _legacy_getattr

    assert _legacy_getattr(LegacyHistoryBuffer, "mean") == "mean"
    with pytest.raises(pickle.UnpicklingError, match="refused"):
        _legacy_getattr(os, "system")


def test_load_from_takes_the_weights(tmp_path: Path) -> None:
    runner = Runner(**runner_kwargs(tmp_path, load_from=EPOCH_1))
    runner.train_loop  # noqa: B018
    runner.load_or_resume()
    saved = read_checkpoint(EPOCH_1)["state_dict"]
    assert runner.iter == 0
    assert all(torch.equal(saved[k], v) for k, v in runner.model.state_dict().items())


def test_resume_continues_mmengines_run_to_its_own_numbers(tmp_path: Path) -> None:
    """Resumed from MMEngine's epoch 1, fengine trains epoch 2 to MMEngine's epoch-2 tensors exactly."""
    runner = Runner(**runner_kwargs(tmp_path, resume=True, load_from=EPOCH_1))
    resumed_state: dict[str, Any] = {}
    original_run = runner.train_loop.run

    def run() -> Any:  # look at the runner right after the resume, before epoch 2
        resumed_state.update(
            counters=(runner.epoch, runner.iter),
            lr=runner.optim_wrapper.get_lr()["lr"],
            loss=runner.message_hub.get_scalar("train/loss").data[0].tolist(),
            last_step=runner.param_schedulers[0].last_step,
            momentum=[s["momentum_buffer"].clone() for s in runner.optim_wrapper.state_dict()["state"].values()],
        )
        return original_run()

    runner.train_loop.run = run
    runner.train()
    first = read_checkpoint(EPOCH_1)
    assert resumed_state["counters"] == (1, 4) and resumed_state["lr"] == [0.05]
    assert resumed_state["loss"] == first["message_hub"]["log_scalars"]["train/loss"]["log_history"]
    assert resumed_state["last_step"] == 1
    saved_momentum = [s["momentum_buffer"] for s in first["optimizer"]["state"].values()]
    assert all(torch.equal(a, b) for a, b in zip(resumed_state["momentum"], saved_momentum))
    second = read_checkpoint(EPOCH_2)
    for name, tensor in runner.model.state_dict().items():
        assert torch.equal(tensor, second["state_dict"][name]), name
    ours = runner.optim_wrapper.state_dict()["state"]
    for key, state in second["optimizer"]["state"].items():
        assert torch.equal(ours[key]["momentum_buffer"], state["momentum_buffer"])
    assert (runner.epoch, runner.iter) == (second["meta"]["epoch"], second["meta"]["iter"])


def test_a_damaged_mmengine_file_is_named(tmp_path: Path) -> None:
    broken = tmp_path / "epoch_1.pth"
    broken.write_bytes(Path(EPOCH_1).read_bytes()[:3000])
    with pytest.raises(CheckpointError, match=r"epoch_1\.pth': the file is truncated or corrupted"):
        read_checkpoint(str(broken))


_MMENGINE_READS = """
import sys, torch
from torch import nn
from mmengine.runner import load_checkpoint, CheckpointLoader
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear1 = nn.Linear(2, 2)
        self.linear2 = nn.Linear(2, 1)
model = Net()
checkpoint = CheckpointLoader.load_checkpoint(sys.argv[1], map_location="cpu")
assert list(checkpoint)[:4] == ["meta", "state_dict", "message_hub", "optimizer"], list(checkpoint)
load_checkpoint(model, sys.argv[1], map_location="cpu", strict=True)
torch.save(model.state_dict(), sys.argv[2])
"""


def _mmengine_available() -> bool:
    site = MMENGINE_PYTHON.parents[1] / "lib"
    return MMENGINE_PYTHON.exists() and any(site.glob("python3*/site-packages/mmengine/__init__.py"))


@pytest.mark.skipif(not _mmengine_available(), reason="MMEngine is not installed in /tmp/mmenv")
def test_mmengine_reads_the_weights_of_a_fengine_checkpoint(tmp_path: Path) -> None:
    """Differential: MMEngine's ``CheckpointLoader`` and ``load_checkpoint`` (strict) read our file."""
    runner = Runner(**runner_kwargs(tmp_path, train_cfg={"by_epoch": True, "max_epochs": 1}))
    runner.train()
    ours = tmp_path / "epoch_1.pth"
    loaded = tmp_path / "loaded_by_mmengine.pth"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [str(MMENGINE_PYTHON), "-c", _MMENGINE_READS, str(ours), str(loaded)], capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    weights = torch.load(loaded, weights_only=True)
    assert weights.keys() == runner.model.state_dict().keys()
    assert all(torch.equal(weights[k], v) for k, v in runner.model.state_dict().items())
