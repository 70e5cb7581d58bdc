"""Model utilities: ``stack_batch``, ``merge_dict``, ``detect_anomalous_params``, sync BN conversion."""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.fx
from torch import Tensor, nn

from fengine.model.sync_batchnorm import _BatchNormXd, convert_sync_batchnorm, revert_sync_batchnorm

logger = logging.getLogger("fengine")


def padded_shape(shapes: Sequence[Sequence[int]], pad_size_divisor: int) -> tuple[int, ...]:
    """The smallest shape that holds every shape, trailing dims rounded up to the divisor.

    Dim 0 (channels) is never padded: all shapes must agree on it. Each later dim becomes
    ``ceil(max / d) * d``; a divisor of 0 or 1 means no rounding.

    Args:
        shapes: the shapes, all of the same length (at least 1).
        pad_size_divisor: ``d``.

    Returns:
        The common shape.
    """
    target = [max(sizes) for sizes in zip(*shapes)]
    if pad_size_divisor > 1:
        target[1:] = [math.ceil(size / pad_size_divisor) * pad_size_divisor for size in target[1:]]
    return tuple(target)


def stack_batch(
    tensor_list: list[Tensor], pad_size_divisor: int = 0, pad_value: float = 0
) -> Tensor:
    """Stack tensors of different trailing sizes into one batch, padding at the end of each dim.

    Every dim but the first is padded (right/bottom) with ``pad_value`` up to the largest size
    in the batch rounded up to a multiple of ``pad_size_divisor``, so even equal shapes are padded
    when they are not multiples: two (3, 10, 10) images with divisor 16 give (2, 3, 16, 16). Each
    input sits unchanged in the top-left corner of its slot. Inputs are not modified.

    Args:
        tensor_list: a non-empty list of tensors with the same ``ndim`` and the same first dim.
        pad_size_divisor: round padded sizes up to a multiple of this; 0 or 1 rounds nothing.
        pad_value: the fill value (cast to the result's dtype).

    Returns:
        A tensor of shape ``(len(tensor_list), C, *padded)`` with the inputs' promoted dtype.

    Raises:
        TypeError: ``tensor_list`` is not a list of tensors.
        ValueError: an empty list, a negative divisor, or tensors whose ``ndim`` or first dim
            differ.
    """
    if not isinstance(tensor_list, list) or not all(isinstance(t, Tensor) for t in tensor_list):
        kinds = (
            [type(t).__name__ for t in tensor_list] if isinstance(tensor_list, list | tuple) else []
        )
        raise TypeError(
            f"stack_batch expects a list of tensors, got {type(tensor_list).__name__} {kinds or tensor_list!r}"
        )
    if not tensor_list:
        raise ValueError("stack_batch expects a non-empty list of tensors, got []")
    if pad_size_divisor < 0:
        raise ValueError(
            f"pad_size_divisor must be >= 0 (0 or 1: no rounding), got {pad_size_divisor}"
        )
    shapes = [tuple(t.shape) for t in tensor_list]
    if len({len(shape) for shape in shapes}) != 1 or (
        shapes[0] and len({s[0] for s in shapes}) != 1
    ):
        raise ValueError(
            f"stack_batch expects tensors with the same ndim and the same size in dim 0 (only the "
            f"trailing dims are padded), got shapes {shapes}"
        )
    if not shapes[0]:
        return torch.stack(tensor_list)
    target = padded_shape(shapes, pad_size_divisor)
    if all(shape == target for shape in shapes):
        return torch.stack(tensor_list)
    dtype = functools.reduce(torch.promote_types, (t.dtype for t in tensor_list))
    batch = tensor_list[0].new_full((len(tensor_list), *target), pad_value, dtype=dtype)
    for slot, tensor in zip(batch, tensor_list):
        slot[tuple(slice(0, size) for size in tensor.shape)] = tensor
    return batch


def merge_dict(*dicts: dict[Any, Any]) -> dict[Any, Any]:
    """A new dict with the items of ``dicts`` in order; later keys win. Inputs are not modified.

    Opaque to ``torch.fx`` symbolic tracing (it is ``torch.fx.wrap``-ped).

    Args:
        *dicts: the dicts to merge; none gives ``{}``.

    Returns:
        The merged dict.

    Raises:
        TypeError: an argument that is not a dict.
    """
    merged: dict[Any, Any] = {}
    for index, item in enumerate(dicts):
        if not isinstance(item, dict):
            raise TypeError(
                f"merge_dict argument {index} must be a dict, got {type(item).__name__}: {item!r}"
            )
        merged.update(item)
    return merged


torch.fx.wrap("merge_dict")


def _params_in_graph(loss: Tensor) -> set[int]:
    found: set[int] = set()
    seen: set[Any] = set()
    pending = [loss.grad_fn] if loss.grad_fn is not None else []
    # Iterative, with a seen set: deep graphs would overflow recursion, shared nodes repeat work.
    while pending:
        node = pending.pop()
        if node in seen:
            continue
        seen.add(node)
        variable = getattr(node, "variable", None)
        if variable is not None:
            found.add(id(variable))
        pending.extend(parent for parent, _ in node.next_functions if parent is not None)
    return found


def detect_anomalous_params(loss: Tensor, model: nn.Module) -> dict[str, str]:
    """Find parameters that ``loss`` does not reach and parameters holding NaN or Inf.

    Walks ``loss``'s autograd graph from ``loss.grad_fn`` and collects the leaf tensors it
    accumulates gradients into. A parameter with ``requires_grad=True`` that is not among them
    gets no gradient from ``loss`` (DDP's "unused parameter" error). Every parameter whose
    values are not all finite is reported too. Each finding is logged at ERROR level to the
    ``'fengine'`` logger, as MMEngine logs the first kind.

    Args:
        loss: the loss tensor (its graph need not be retained: only its structure is walked).
        model: the model whose ``named_parameters()`` are checked (names carry ``module.`` when a
            wrapper is passed).

    Returns:
        Parameter name → reason (``'not in the computational graph'`` or ``'holds NaN or Inf'``,
        both joined by ``'; '`` when both apply); empty when nothing is anomalous.
    """
    reached = _params_in_graph(loss)
    found: dict[str, str] = {}
    for name, param in model.named_parameters():
        reasons = []
        if param.requires_grad and id(param) not in reached:
            reasons.append("not in the computational graph")
            logger.error(f"{name} with shape {param.size()} is not in the computational graph \n")
        if not bool(torch.isfinite(param.detach()).all()):
            reasons.append("holds NaN or Inf")
            logger.error(f"{name} with shape {param.size()} holds NaN or Inf values \n")
        if reasons:
            found[name] = "; ".join(reasons)
    return found


__all__ = [
    "_BatchNormXd",
    "convert_sync_batchnorm",
    "detect_anomalous_params",
    "merge_dict",
    "padded_shape",
    "revert_sync_batchnorm",
    "stack_batch",
]
