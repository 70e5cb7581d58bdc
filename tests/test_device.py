"""fengine.device reports the accelerator MMEngine-style code asks for."""

from __future__ import annotations

import torch

from fengine import device


def test_get_device_follows_what_is_available(monkeypatch):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device, "is_mps_available", lambda: False)
    assert device.get_device() == "cpu" and not device.is_cuda_available()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device.get_device() == "cuda" and device.is_cuda_available()
    assert not device.is_npu_available() and not device.is_mlu_available()
