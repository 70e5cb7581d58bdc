"""``autocast``: MMEngine's device-agnostic mixed-precision context over ``torch.autocast``."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from fengine.device import get_device


@contextlib.contextmanager
def autocast(
    device_type: str | None = None,
    dtype: torch.dtype | None = None,
    enabled: bool = True,
    cache_enabled: bool | None = None,
) -> Iterator[None]:
    """Run the block under ``torch.autocast`` on ``device_type`` (the current device by default).

    Args:
        device_type: ``'cuda'``, ``'cpu'``, ``'npu'``, ...; ``None`` picks :func:`fengine.device.get_device`.
        dtype: the low-precision type; ``None`` is torch's default for the device (``bfloat16``
            on CPU, ``float16`` on CUDA).
        enabled: ``False`` runs the block in full precision (nested inside an enabled block too).
        cache_enabled: torch's weight-cast cache (``None``: torch's default).
    """
    device = device_type if device_type is not None else get_device()
    device = device.split(":")[0]
    if cache_enabled is None:
        cache_enabled = torch.is_autocast_cache_enabled()
    with torch.autocast(device_type=device, dtype=dtype, enabled=enabled, cache_enabled=cache_enabled):
        yield
