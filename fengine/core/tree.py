"""Flat tensor trees: ``dict[str, Tensor]`` keyed like ``named_parameters()``, and foreach helpers.

A tree maps one-to-one onto a ``state_dict`` and onto ``torch.func.functional_call``. Hot paths turn a
tree into lists aligned with a fixed tuple of names once, then run one ``torch._foreach_*`` call per
(device, dtype) bucket, as ``torch.optim`` does.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, TypeGuard

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from torch.distributed.tensor import DTensor

#: A flat tensor tree: parameter (or buffer) name → tensor.
TensorTree = dict[str, Tensor]


def is_dtensor(value: object) -> TypeGuard[DTensor]:
    """Whether ``value`` is a ``DTensor`` (an FSDP2 shard).

    Asked without importing ``torch.distributed.tensor`` (tens of MiB and a second of start-up):
    no ``DTensor`` exists before that module is imported.
    """
    module = sys.modules.get("torch.distributed.tensor")
    return module is not None and isinstance(value, module.DTensor)


def is_fsdp_module(module: nn.Module) -> bool:
    """Whether ``fully_shard`` was applied to ``module`` (without importing FSDP, as :func:`is_dtensor`)."""
    fsdp = sys.modules.get("torch.distributed.fsdp")
    return fsdp is not None and isinstance(module, fsdp.FSDPModule)


def group_by_device_dtype(tensors: Sequence[Tensor]) -> tuple[tuple[int, ...], ...]:
    """Split positions into buckets of equal (device, dtype), as ``torch.optim`` does.

    Uses torch's own grouping routine, so the buckets come out in the same order as torch's
    (which matters where results are stacked, e.g. the total gradient norm). Within a bucket the
    positions keep their input order.

    Args:
        tensors: the tensors to group (no ``None``).

    Returns:
        One tuple of positions into ``tensors`` per (device, dtype) bucket.
    """
    if not tensors:
        return ()
    grouped = torch._C._group_tensors_by_device_and_dtype([list(tensors)], True)
    return tuple(tuple(indices) for _, indices in grouped.values())


def take(values: Sequence[Tensor | None], positions: Sequence[int]) -> list[Tensor]:
    """The entries of ``values`` at ``positions`` (callers guarantee none of them is ``None``)."""
    return [values[i] for i in positions]  # type: ignore[misc]


def global_norm(tensors: Sequence[Tensor], norm_type: float = 2.0) -> Tensor:
    """The p-norm of all ``tensors`` viewed as one vector, with ``clip_grad_norm_``'s op order.

    Per (device, dtype) bucket, ``torch._foreach_norm`` gives each tensor's norm; the norms are
    moved to the first tensor's device, stacked in bucket order and reduced with
    ``torch.linalg.vector_norm``. This is exactly how ``torch.nn.utils.clip_grad_norm_`` computes
    its total, so the result is bit-identical to it. No host synchronisation.

    Args:
        tensors: the tensors; an empty sequence has norm ``tensor(0.)``.
        norm_type: the p of the p-norm; ``float('inf')`` for the max-norm.

    Returns:
        A 0-dim tensor on the first tensor's device.
    """
    if not tensors:
        return torch.tensor(0.0)
    norm_type = float(norm_type)
    first_device = tensors[0].device
    norms: list[Tensor] = []
    for bucket in group_by_device_dtype(tensors):
        norms.extend(torch._foreach_norm(take(tensors, bucket), norm_type))
    total: Tensor = torch.linalg.vector_norm(torch.stack([n.to(first_device) for n in norms]), norm_type)
    return total


def versions(tree: Mapping[str, Tensor | None]) -> dict[str, int]:
    """Each tensor's in-place write counter (``_version``); equal before and after means untouched."""
    return {name: t._version for name, t in tree.items() if t is not None}
