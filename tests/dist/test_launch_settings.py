"""Launcher, env_cfg and sync_bn settings in one process: checked before any process group exists."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.distributed as torch_dist
from dist_toys import make_model
from torch import nn

from fengine import dist
from fengine.runner import Runner
from fengine.runner.distributed import setup_process_group

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "SLURM_PROCID", "SLURM_NTASKS")


@pytest.fixture(autouse=True)
def no_group_left(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in TORCHRUN_VARIABLES:
        monkeypatch.delenv(key, raising=False)
    yield
    assert not torch_dist.is_initialized()


def _runner(tmp_path: Any, **kwargs: Any) -> Runner:
    return Runner(model=make_model(), work_dir=str(tmp_path), log_level="WARNING", **kwargs)


BAD: list[tuple[dict[str, Any], type[Exception], str]] = [
    ({"launcher": "pbs"}, ValueError, "launcher must be one of ['none', 'pytorch', 'slurm', 'mpi']"),
    ({"launcher": "pytorch", "env_cfg": ["gloo"]}, TypeError, "env_cfg must be a dict"),
    (
        {"launcher": "pytorch", "env_cfg": {"dist_cfg": "gloo"}},
        TypeError,
        "env_cfg['dist_cfg'] must be a dict of init_process_group arguments, got 'gloo'",
    ),
    ({"cfg": {"sync_bn": "mmcv"}}, ValueError, "cfg.sync_bn should be 'torch'"),
    (
        {"launcher": "pytorch", "cfg": {"sync_bn": "torch"}},
        ValueError,
        "cfg.sync_bn='torch' needs CUDA",
    ),
    ({"launcher": "pytorch"}, KeyError, "torchrun environment variables ['RANK', 'WORLD_SIZE'"),
    ({"launcher": "slurm"}, KeyError, "Slurm (srun) environment variables ['SLURM_PROCID', 'SLURM_NTASKS'"),
]


@pytest.mark.parametrize(("kwargs", "error", "message"), BAD)
def test_bad_settings_fail_before_a_group_exists(tmp_path, kwargs, error, message):
    if torch.cuda.is_available() and kwargs.get("cfg") == {"sync_bn": "torch"}:
        pytest.skip("SyncBatchNorm is allowed where CUDA is available")
    with pytest.raises(error, match=re.escape(message)):
        _runner(tmp_path, **kwargs)


def test_launcher_none_stays_one_process_and_unwrapped(tmp_path):
    model = make_model()
    model.norm = nn.SyncBatchNorm(8)  # reverted to a plain BatchNorm in one process
    runner = Runner(
        model=model, work_dir=str(tmp_path), cfg={"sync_bn": "torch"}, log_level="WARNING"
    )
    assert (runner.distributed, runner.rank, runner.world_size) == (False, 0, 1)
    assert runner.model is model and not isinstance(model.norm, nn.SyncBatchNorm)
    assert not dist.is_distributed()


def test_setup_without_a_launcher_does_nothing():
    assert setup_process_group("none", {"dist_cfg": {"backend": "gloo"}}) is False
    assert not dist.is_distributed()


def test_reducer_in_one_process_returns_its_input():
    grads = {"w": torch.ones(2)}
    averaged = dist.grad_all_reduce_mean(grads)
    assert averaged == grads and averaged["w"] is grads["w"] and averaged is not grads
