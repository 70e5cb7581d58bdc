"""``DefaultOptimWrapperConstructor``: optimizer + wrapper from configs, with ``paramwise_cfg``."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fengine.optim.optimizer.base import OptimWrapperError, warn
from fengine.optim.optimizer.optimizer_wrapper import OptimWrapper
from fengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIM_WRAPPERS, OPTIMIZERS

_NORMS = (nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm, nn.GroupNorm, nn.LayerNorm)
_DECAY_KEYS = ("bias_decay_mult", "norm_decay_mult", "dwconv_decay_mult")
_KEYS = ("custom_keys", "bias_lr_mult", *_DECAY_KEYS, "flat_decay_mult", "dcn_offset_lr_mult",
         "bypass_duplicate", "strict_custom_keys")


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class DefaultOptimWrapperConstructor:
    """Build the optimizer (one param group per parameter when ``paramwise_cfg`` is given) and wrapper.

    ``paramwise_cfg`` keys, as in MMEngine:

    - ``custom_keys``: ``{key: dict(lr_mult=, decay_mult=, ...)}``. A parameter whose full name
      (``'<module path>.<name>'``) contains ``key`` gets ``lr = lr * lr_mult`` and
      ``weight_decay = weight_decay * decay_mult``, plus every item of the dict in its group; the
      longest matching key wins (ties: alphabetical), and the options below are then skipped.
    - ``bias_lr_mult``: multiplies the lr of every ``bias`` outside normalisation layers.
    - ``norm_decay_mult``, else ``bias_decay_mult`` (biases), else ``dwconv_decay_mult``
      (depthwise ``Conv2d``), else ``flat_decay_mult`` (1-d parameters): weight-decay multipliers.
    - ``bypass_duplicate``: skip a parameter already in a group (shared weights).
    - ``dcn_offset_lr_mult``: accepted for MMEngine configs; fengine has no deformable convolution,
      so it never applies.
    - ``strict_custom_keys`` (fengine): every custom key must match some parameter.

    Frozen parameters (``requires_grad=False``) are left out, with a warning.

    Args:
        optim_wrapper_cfg: the wrapper config with its ``optimizer`` config (or a built
            ``torch.optim.Optimizer`` when there is no ``paramwise_cfg``).
        paramwise_cfg: per-parameter options (above), or ``None``.

    Raises:
        TypeError: ``optim_wrapper_cfg``, ``paramwise_cfg`` or ``custom_keys`` of the wrong type.
        OptimWrapperError: no ``optimizer`` in ``optim_wrapper_cfg``.
        ValueError: an unknown ``paramwise_cfg`` key, or a multiplier whose base ``lr`` or
            ``weight_decay`` the optimizer config lacks.
    """

    def __init__(self, optim_wrapper_cfg: dict[str, Any], paramwise_cfg: dict[str, Any] | None = None) -> None:
        if not isinstance(optim_wrapper_cfg, Mapping):
            raise TypeError(f"optim_wrapper_cfg must be a dict, got {type(optim_wrapper_cfg).__name__}")
        if "optimizer" not in optim_wrapper_cfg:
            raise OptimWrapperError(
                f"optim_wrapper_cfg must contain an 'optimizer' config, got keys {sorted(optim_wrapper_cfg)}"
            )
        self.optim_wrapper_cfg = dict(optim_wrapper_cfg)
        self.optimizer_cfg = self.optim_wrapper_cfg.pop("optimizer")
        self.paramwise_cfg: dict[str, Any] = {} if paramwise_cfg is None else paramwise_cfg
        is_cfg = isinstance(self.optimizer_cfg, Mapping)
        self.base_lr = self.optimizer_cfg.get("lr") if is_cfg else None
        self.base_wd = self.optimizer_cfg.get("weight_decay") if is_cfg else None
        self._matched: set[str] = set()  # custom keys that matched a parameter
        self._validate_cfg()

    def _validate_cfg(self) -> None:
        cfg = self.paramwise_cfg
        if not isinstance(cfg, Mapping):
            raise TypeError(f"paramwise_cfg must be None or a dict, got {type(cfg).__name__}")
        # A subclass may read keys of its own (MMEngine's layer-decay example: `decay_factor`).
        strict = type(self) is DefaultOptimWrapperConstructor
        for key in cfg:
            if strict and key not in _KEYS:
                close = difflib.get_close_matches(key, _KEYS, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"unknown paramwise_cfg key {key!r}{hint}; accepted: {list(_KEYS)}")
        custom = cfg.get("custom_keys", {})
        if not isinstance(custom, Mapping) or not all(isinstance(v, Mapping) for v in custom.values()):
            raise TypeError(f"paramwise_cfg['custom_keys'] must be a dict of dicts, got {custom!r}")
        if cfg and not isinstance(self.optimizer_cfg, Mapping):
            raise TypeError("paramwise_cfg needs an optimizer config dict, not a built optimizer")
        lr_users = [k for k in ("custom_keys", "bias_lr_mult", "dcn_offset_lr_mult") if cfg.get(k)]
        if lr_users and self.base_lr is None:
            raise ValueError(f"the optimizer config has no 'lr', but paramwise_cfg {lr_users} multiplies it")
        wd_users = [k for k in _DECAY_KEYS if k in cfg]
        wd_users += [f"custom_keys[{k!r}]" for k, v in custom.items() if "decay_mult" in v]
        if wd_users and self.base_wd is None:
            raise ValueError(f"the optimizer config has no 'weight_decay', but paramwise_cfg {wd_users} multiplies it")

    def add_params(self, params: list[dict[str, Any]], module: nn.Module, prefix: str = "",
                   is_dcn_module: int | float | None = None) -> None:
        """Append one param group per parameter of ``module`` and its children (depth first).

        Args:
            params: the groups so far; extended in place.
            module: the module whose parameters are added.
            prefix: the module's path in the model (``''`` for the model itself).
            is_dcn_module: kept for MMEngine's signature (always false in fengine).
        """
        cfg = self.paramwise_cfg
        custom: Mapping[str, Mapping[str, Any]] = cfg.get("custom_keys", {})
        keys = sorted(sorted(custom), key=len, reverse=True)
        is_norm = isinstance(module, _NORMS)
        is_dwconv = isinstance(module, nn.Conv2d) and module.in_channels == module.groups
        for name, param in module.named_parameters(recurse=False):
            full_name = f"{prefix}.{name}"  # MMEngine matches custom keys against this form
            if cfg.get("bypass_duplicate", False) and any(param is p for g in params for p in g["params"]):
                warn(f"{prefix} is duplicate. It is skipped since bypass_duplicate=True")
                continue
            if not param.requires_grad:
                warn(f"{full_name} is skipped since its requires_grad=False")
                continue
            group: dict[str, Any] = {"params": [param]}
            key = next((k for k in keys if k in full_name), None)
            if key is not None:
                self._matched.add(key)
                group["lr"] = self.base_lr * custom[key].get("lr_mult", 1.0)
                if self.base_wd is not None:
                    group["weight_decay"] = self.base_wd * custom[key].get("decay_mult", 1.0)
                group.update(custom[key])
            else:
                if name == "bias" and not is_norm and cfg.get("bias_lr_mult") is not None:
                    group["lr"] = self.base_lr * cfg["bias_lr_mult"]
                if self.base_wd is not None:
                    mult = self._decay_mult(name, param, is_norm, is_dwconv)
                    if mult is not None:
                        group["weight_decay"] = self.base_wd * mult
            params.append(group)
        for child_name, child in module.named_children():
            self.add_params(params, child, f"{prefix}.{child_name}" if prefix else child_name, is_dcn_module=False)

    def _decay_mult(self, name: str, param: nn.Parameter, is_norm: bool, is_dwconv: bool) -> float | None:
        cfg = self.paramwise_cfg
        if is_norm and cfg.get("norm_decay_mult") is not None:
            return float(cfg["norm_decay_mult"])
        if name == "bias" and cfg.get("bias_decay_mult") is not None:
            return float(cfg["bias_decay_mult"])
        if is_dwconv and cfg.get("dwconv_decay_mult") is not None:
            return float(cfg["dwconv_decay_mult"])
        if param.ndim == 1 and cfg.get("flat_decay_mult") is not None:
            return float(cfg["flat_decay_mult"])
        return None

    def __call__(self, model: nn.Module) -> OptimWrapper:
        """Build the optimizer over ``model``'s parameters (its ``.module`` if wrapped) and the wrapper.

        Raises:
            fengine.registry.RegistryError: an unknown optimizer or wrapper type (close names listed).
            fengine.registry.ConfigError: arguments the optimizer rejects (e.g. SGD without ``lr``).
            ValueError: with ``strict_custom_keys``, a custom key that matches no parameter.
        """
        inner = getattr(model, "module", None)  # a DDP-style wrapper
        if isinstance(inner, nn.Module):
            model = inner
        wrapper_cfg = dict(self.optim_wrapper_cfg)
        wrapper_cfg.setdefault("type", "OptimWrapper")
        if isinstance(self.optimizer_cfg, torch.optim.Optimizer):
            optimizer = self.optimizer_cfg
        else:
            optimizer_cfg = dict(self.optimizer_cfg)
            optimizer_cls = OPTIMIZERS.resolve(optimizer_cfg.get("type"))
            first_arg = next(iter(inspect.signature(optimizer_cls).parameters))
            if not self.paramwise_cfg:
                optimizer_cfg[first_arg] = model.parameters()
            else:
                groups: list[dict[str, Any]] = []
                self._matched = set()
                self.add_params(groups, model)
                self._check_strict()
                optimizer_cfg[first_arg] = groups
            optimizer = OPTIMIZERS.build(optimizer_cfg)
        wrapper: OptimWrapper = OPTIM_WRAPPERS.build(wrapper_cfg, default_args=dict(optimizer=optimizer))
        return wrapper

    def _check_strict(self) -> None:
        unmatched = sorted(set(self.paramwise_cfg.get("custom_keys", {})) - self._matched)
        if unmatched and self.paramwise_cfg.get("strict_custom_keys", False):
            raise ValueError(
                f"paramwise_cfg custom_keys {unmatched} match no trainable parameter "
                "(strict_custom_keys=True); keys match substrings of '<module path>.<param name>'"
            )
