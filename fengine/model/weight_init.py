"""``initialize(module, init_cfg)``: apply ``init_cfg`` dicts, with MMEngine's ``override`` rules.

Also the MMEngine import path for every initialiser (``fengine.model.weight_init.ConstantInit``,
``constant_init``, ``update_init_info``, ...).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from fengine.model.init_functions import (
    bias_init_with_prob,
    caffe2_xavier_init,
    constant_init,
    kaiming_init,
    normal_init,
    trunc_normal_,
    trunc_normal_init,
    uniform_init,
    xavier_init,
)
from fengine.model.init_info import update_init_info
from fengine.model.initializers import (
    BaseInit,
    Caffe2XavierInit,
    ConstantInit,
    KaimingInit,
    NormalInit,
    TruncNormalInit,
    UniformInit,
    XavierInit,
)
from fengine.model.pretrained import PretrainedInit
from fengine.registry import WEIGHT_INITIALIZERS

InitCfg = Mapping[str, Any] | Sequence[Mapping[str, Any]]


def _as_list(value: Any, what: str) -> list[dict[str, Any]]:
    if isinstance(value, Mapping):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(item, Mapping) for item in value):
        raise TypeError(
            f"{what} must be a dict or a list of dicts, got {type(value).__name__}: {value!r}"
        )
    return [copy.deepcopy(dict(item)) for item in value]


def _build(target: nn.Module, cfg: Mapping[str, Any], wholemodule: bool) -> tuple[nn.Module, Any]:
    initializer = WEIGHT_INITIALIZERS.build(cfg)
    initializer.wholemodule = wholemodule
    return target, initializer


def _override_plan(
    module: nn.Module, override: Any, outer: Mapping[str, Any]
) -> list[tuple[nn.Module, Any]]:
    plan = []
    for item in _as_list(override, "`override`"):
        name = item.pop("name", None)
        if name is None:
            raise ValueError(f'`override` must contain the key "name", got {item!r}')
        if not item:
            # An override with only a name reuses the outer config (its `layer` already removed).
            item = dict(outer)
        elif "type" not in item:
            raise ValueError(
                f'`override` for {name!r} needs a "type" key (or only "name", to reuse the outer '
                f"init_cfg), got {item!r}"
            )
        child = getattr(module, name, None)
        if not isinstance(child, nn.Module):
            children = [child_name for child_name, _ in module.named_children()]
            raise ValueError(
                f"`override` names {name!r}, but {type(module).__name__} has no submodule of that "
                f"name (its children: {children}); init_cfg {item!r}"
            )
        plan.append(_build(child, item, wholemodule=True))
    return plan


def initialize(module: nn.Module, init_cfg: InitCfg) -> None:
    """Initialise ``module`` according to ``init_cfg``.

    For each config, in order: build the initialiser from :data:`WEIGHT_INITIALIZERS` and apply
    it to the modules whose class (or a direct base class) is named in ``layer``; then apply each
    ``override`` entry to the child ``module.<name>`` as a whole (every descendant with a
    ``weight``/``bias``, whatever its class). An override holding only ``name`` reuses the outer
    config without its ``layer``. A config with neither ``layer`` nor ``override`` touches
    nothing. Every config is checked and built before any weight is written, so a bad entry
    leaves the module untouched. ``init_cfg`` is not modified.

    Args:
        module: the module to initialise in place.
        init_cfg: a dict or a list of dicts, e.g.
            ``dict(type='Constant', val=1, layer='Conv2d', override=dict(name='reg', val=3))``.

    Raises:
        TypeError: ``init_cfg`` (or an ``override``) is not a dict or a list of dicts.
        ValueError: an ``override`` without ``name``, with other keys but no ``type``, or naming
            a child that does not exist.
        fengine.registry.RegistryError: an unknown initialiser ``type``.
    """
    plan: list[tuple[nn.Module, Any]] = []
    for cfg in _as_list(init_cfg, "init_cfg"):
        override = cfg.pop("override", None)
        plan.append(_build(module, cfg, wholemodule=False))
        if override is not None:
            outer = {key: value for key, value in cfg.items() if key != "layer"}
            plan.extend(_override_plan(module, override, outer))
    for target, initializer in plan:
        initializer(target)


__all__ = [
    "BaseInit",
    "Caffe2XavierInit",
    "ConstantInit",
    "KaimingInit",
    "NormalInit",
    "PretrainedInit",
    "TruncNormalInit",
    "UniformInit",
    "XavierInit",
    "bias_init_with_prob",
    "caffe2_xavier_init",
    "constant_init",
    "initialize",
    "kaiming_init",
    "normal_init",
    "trunc_normal_",
    "trunc_normal_init",
    "uniform_init",
    "update_init_info",
    "xavier_init",
]
