"""Which accelerator this process can use (MMEngine's ``mmengine.device`` queries).

fengine trains on CPUs and CUDA GPUs; the other back-ends MMEngine names (NPU, MLU, MUSA) are
reported as available only when their torch extension is loaded.
"""

from __future__ import annotations

import torch


def is_cuda_available() -> bool:
    """Whether a CUDA device is usable."""
    return torch.cuda.is_available()


def is_mps_available() -> bool:
    """Whether Apple's MPS back-end is usable."""
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _extension_available(name: str) -> bool:
    backend = getattr(torch, name, None)
    is_available = getattr(backend, "is_available", None)
    return bool(is_available is not None and is_available())


def is_npu_available() -> bool:
    """Whether an Ascend NPU is usable (needs ``torch_npu``)."""
    return _extension_available("npu")


def is_mlu_available() -> bool:
    """Whether a Cambricon MLU is usable (needs ``torch_mlu``)."""
    return _extension_available("mlu")


def is_musa_available() -> bool:
    """Whether a Moore Threads MUSA device is usable (needs ``torch_musa``)."""
    return _extension_available("musa")


def get_device() -> str:
    """The device kind tensors should go to: ``'cuda'``, ``'npu'``, ``'mlu'``, ``'musa'``,
    ``'mps'`` or ``'cpu'``, the first available in that order."""
    for kind, available in (
        ("npu", is_npu_available),
        ("cuda", is_cuda_available),
        ("mlu", is_mlu_available),
        ("musa", is_musa_available),
        ("mps", is_mps_available),
    ):
        if available():
            return kind
    return "cpu"


__all__ = [
    "get_device",
    "is_cuda_available",
    "is_mlu_available",
    "is_mps_available",
    "is_musa_available",
    "is_npu_available",
]
