"""fengine.runner.autocast: torch.autocast on the current device, MMEngine's signature."""

from __future__ import annotations

import torch
from torch import nn

from fengine.device import get_device
from fengine.runner import autocast


def test_cpu_autocast_runs_in_bfloat16_and_can_be_disabled() -> None:
    layer = nn.Linear(2, 2)
    x = torch.randn(3, 2)
    with autocast(device_type="cpu"):
        assert layer(x).dtype == torch.bfloat16
        with autocast(device_type="cpu", enabled=False):
            assert layer(x).dtype == torch.float32
    with autocast(device_type="cpu", dtype=torch.float16):
        assert layer(x).dtype == torch.float16
    assert layer(x).dtype == torch.float32


def test_the_default_device_is_the_current_one() -> None:
    device = get_device()
    layer = nn.Linear(2, 2).to(device)
    with autocast():
        assert layer(torch.randn(1, 2, device=device)).dtype == torch.get_autocast_dtype(device.split(":")[0])
