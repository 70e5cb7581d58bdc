"""Swap BatchNorm layers for SyncBatchNorm and back, keeping parameters and running statistics."""

from __future__ import annotations

import logging
from typing import Any

from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

logger = logging.getLogger("fengine")


class _BatchNormXd(_BatchNorm):
    """A BatchNorm for inputs of any rank (what a reverted ``SyncBatchNorm`` becomes)."""

    def _check_input_dim(self, input: Tensor) -> None:
        # SyncBatchNorm accepts any rank >= 2, so its replacement must too.
        return


def _move_state(source: _BatchNorm, target: _BatchNorm) -> _BatchNorm:
    # Share the Parameter and buffer objects, so optimizers and EMA copies holding them stay valid.
    if source.affine:
        target.weight = source.weight
        target.bias = source.bias
    target.running_mean = source.running_mean
    target.running_var = source.running_var
    target.num_batches_tracked = source.num_batches_tracked
    target.training = source.training
    if hasattr(source, "qconfig"):
        target.qconfig = source.qconfig
    return target


def _replace_children(module: nn.Module, swap: Any) -> None:
    for name, child in module.named_children():
        new = swap(child)
        if new is not child:
            try:
                module.add_module(name, new)
            except (RuntimeError, TypeError, AttributeError, KeyError) as error:
                # Some containers (scripted modules, frozen wrappers) refuse new children.
                logger.warning(f"Failed to replace {name} ({type(child).__name__}): {error}")


def convert_sync_batchnorm(
    model: nn.Module, process_group: Any = None, implementation: str = "torch"
) -> nn.Module:
    """Replace every BatchNorm layer in ``model`` by ``torch.nn.SyncBatchNorm``.

    The new layers share the old ones' weight/bias Parameters and running-statistics buffers
    (``num_batches_tracked`` included) and keep their ``training`` flag and ``qconfig``
    (MMEngine leaves a converted layer in training mode). Layers that already are
    ``SyncBatchNorm`` are kept. Children are replaced in place.

    Args:
        model: the model (a BatchNorm itself is replaced and returned).
        process_group: the group statistics are synchronised over; ``None`` = the default group.
        implementation: ``'torch'`` (the only one available).

    Returns:
        ``model``, or its replacement when ``model`` is itself a BatchNorm.

    Raises:
        ValueError: another ``implementation``.
        TypeError: a ``str`` passed as ``process_group`` (MMEngine's second argument is
            ``implementation``: pass it by keyword).
    """
    if implementation != "torch":
        raise ValueError(f"implementation must be 'torch', got {implementation!r}")
    if isinstance(process_group, str):
        raise TypeError(
            f"process_group must be a torch.distributed ProcessGroup or None, got the str "
            f"{process_group!r}; pass implementation= by keyword"
        )

    def swap(module: nn.Module) -> nn.Module:
        out = module
        if isinstance(module, _BatchNorm) and not isinstance(module, nn.SyncBatchNorm):
            out = _move_state(
                module,
                nn.SyncBatchNorm(
                    module.num_features,
                    module.eps,
                    module.momentum,
                    module.affine,
                    module.track_running_stats,
                    process_group,
                ),
            )
        _replace_children(out, swap)
        return out

    return swap(model)


def revert_sync_batchnorm(model: nn.Module) -> nn.Module:
    """Replace every ``SyncBatchNorm`` in ``model`` by a BatchNorm that accepts any input rank.

    The new layers share the old ones' Parameters and buffers and keep ``training`` and
    ``qconfig``. A child its parent refuses to replace is skipped with a warning.

    Args:
        model: the model (a SyncBatchNorm itself is replaced and returned).

    Returns:
        ``model``, or its replacement when ``model`` is itself a SyncBatchNorm.
    """

    def swap(module: nn.Module) -> nn.Module:
        out = module
        if isinstance(module, nn.SyncBatchNorm):
            out = _move_state(
                module,
                _BatchNormXd(
                    module.num_features,
                    module.eps,
                    module.momentum,
                    module.affine,
                    module.track_running_stats,
                ),
            )
        _replace_children(out, swap)
        return out

    return swap(model)
