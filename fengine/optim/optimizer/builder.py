"""The ``OPTIMIZERS`` registry's torch optimizers, and ``build_optim_wrapper(model, cfg)``."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fengine.optim.optimizer.optimizer_wrapper import OptimWrapper
from fengine.optim.optimizer.pure_optimizers import SGD, Adam, AdamW
from fengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIMIZERS

#: torch classes replaced in the registry by their pure-stepping subclasses.
PURE_OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {"SGD": SGD, "Adam": Adam, "AdamW": AdamW}


def register_torch_optimizers() -> list[str]:
    """Register every ``torch.optim`` optimizer class in ``OPTIMIZERS`` under its class name.

    ``SGD``, ``Adam`` and ``AdamW`` are registered as fengine's subclasses that step with the
    pure transforms; torch's ``Adafactor`` is registered as ``'TorchAdafactor'`` (MMEngine's name,
    leaving ``'Adafactor'`` free).

    Returns:
        The registered names.
    """
    names = []
    for attr in dir(torch.optim):
        cls = getattr(torch.optim, attr)
        if not (inspect.isclass(cls) and issubclass(cls, torch.optim.Optimizer)) or cls is torch.optim.Optimizer:
            continue
        name = "TorchAdafactor" if attr == "Adafactor" else attr
        if OPTIMIZERS.get(name) is None:
            OPTIMIZERS.register_module(name=name, force=False, module=PURE_OPTIMIZERS.get(attr, cls))
        names.append(name)
    return names


TORCH_OPTIMIZERS = register_torch_optimizers()


def _copy_structure(value: Any) -> Any:
    # Configs are copied dict by dict; objects inside (a built optimizer, tensors) are shared.
    if isinstance(value, Mapping):
        return {k: _copy_structure(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_structure(v) for v in value]
    return value


def build_optim_wrapper(model: nn.Module, cfg: Mapping[str, Any]) -> OptimWrapper:
    """Build an optimizer wrapper for ``model`` from an MMEngine ``optim_wrapper`` config.

    ``cfg`` holds the wrapper's arguments and ``optimizer``; its ``constructor`` key (default
    ``'DefaultOptimWrapperConstructor'``) names the ``OPTIM_WRAPPER_CONSTRUCTORS`` entry that
    builds it, and ``paramwise_cfg`` is handed to that constructor. ``cfg`` is not modified.

    Args:
        model: the model whose parameters are optimised.
        cfg: e.g. ``dict(type='OptimWrapper', optimizer=dict(type='SGD', lr=0.01),
            clip_grad=dict(max_norm=1.0), paramwise_cfg=dict(norm_decay_mult=0.))``.

    Returns:
        The wrapper.

    Raises:
        TypeError: ``cfg`` is not a mapping.
    """
    if not isinstance(cfg, Mapping):
        raise TypeError(
            f"optimizer wrapper should be an OptimWrapper object or dict (an optim_wrapper config), "
            f"but got {type(cfg).__name__}: {cfg!r}"
        )
    wrapper_cfg = _copy_structure(cfg)
    constructor_type = wrapper_cfg.pop("constructor", "DefaultOptimWrapperConstructor")
    paramwise_cfg = wrapper_cfg.pop("paramwise_cfg", None)
    constructor = OPTIM_WRAPPER_CONSTRUCTORS.build(
        dict(type=constructor_type, optim_wrapper_cfg=wrapper_cfg, paramwise_cfg=paramwise_cfg)
    )
    wrapper: OptimWrapper = constructor(model)
    return wrapper
