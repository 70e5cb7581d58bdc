"""``torch.optim.SGD``/``Adam``/``AdamW`` whose ``step()`` runs the pure transforms of ``fengine.core.optim``.

They are real ``torch.optim`` optimizers (subclasses), so ``param_groups`` stays the list of dicts
that parameter schedulers read and write, ``state_dict()``/``load_state_dict()`` use torch's format
(MMEngine checkpoints load), and step hooks, ``GradScaler`` and ``zero_grad`` work unchanged. Between
steps the optimizer state lives in one record (:class:`~fengine.core.optim.SGDState` or
:class:`~fengine.core.optim.AdamState`; see :mod:`fengine.optim.optimizer.pure_step`). Options the transforms do
not cover (``foreach=False``, ``fused``, ``differentiable``, ``capturable``, tensor hyper-parameters,
sparse gradients, complex Adam parameters) run torch's own implementation instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import torch
from torch import Tensor

from fengine.core import optim as fo
from fengine.core.optim.base import ParamGroup
from fengine.optim.optimizer.pure_step import TORCH_ONLY_KEYS, PureStepOptimizer, torch_only


class SGD(PureStepOptimizer, torch.optim.SGD):
    """``torch.optim.SGD`` stepping with :func:`fengine.core.optim.sgd` (bit-identical numbers).

    Same arguments as torch's, except that ``lr`` is required (as MMEngine's configs always give
    it): a config without it fails at build time with a message naming ``lr``.
    """

    _torch_base = torch.optim.SGD
    _transform = fo.sgd(0.0)
    _group_keys = ("lr", "momentum", "dampening", "weight_decay", "nesterov", "maximize", *TORCH_ONLY_KEYS)

    def __init__(
        self,
        params: Any,
        lr: float,
        momentum: float = 0,
        dampening: float = 0,
        weight_decay: float = 0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        differentiable: bool = False,
        fused: bool | None = None,
    ) -> None:
        super().__init__(
            params, lr, momentum, dampening, weight_decay, nesterov,
            maximize=maximize, foreach=foreach, differentiable=differentiable, fused=fused,
        )

    def _hyper_of(self, group: Mapping[str, Any]) -> fo.SGDHyper | None:
        if torch_only(group) or isinstance(group["weight_decay"], Tensor):
            return None
        return fo.SGDHyper(group["lr"], group["momentum"], group["dampening"], group["weight_decay"],
                           group["nesterov"], group["maximize"])

    def _empty_record(self, names: tuple[str, ...], groups: tuple[ParamGroup[Any], ...]) -> fo.SGDState:
        return fo.SGDState(names, groups, (None,) * len(names))

    def _import(self, record: fo.SGDState, states: list[dict[str, Any]]) -> fo.SGDState:
        return attrs.evolve(record, momentum_buffer=tuple(s.get("momentum_buffer") for s in states))

    def _export(self, record: fo.SGDState, i: int) -> dict[str, Any]:
        buf = record.momentum_buffer[i]
        return {} if buf is None else {"momentum_buffer": buf}


class _AdamBase(PureStepOptimizer):
    _complex_ok = False
    _transform = fo.adam()
    _group_keys = ("lr", "betas", "eps", "weight_decay", "amsgrad", "maximize", "decoupled_weight_decay",
                   *TORCH_ONLY_KEYS)

    def _hyper_of(self, group: Mapping[str, Any]) -> fo.AdamHyper | None:
        betas = tuple(group["betas"])
        if torch_only(group) or any(isinstance(b, Tensor) for b in betas):
            return None
        return fo.AdamHyper(group["lr"], betas, group["eps"], group["weight_decay"],
                            group["amsgrad"], group["maximize"], group["decoupled_weight_decay"])

    def _empty_record(self, names: tuple[str, ...], groups: tuple[ParamGroup[Any], ...]) -> fo.AdamState:
        empty: tuple[Tensor | None, ...] = (None,) * len(names)
        return fo.AdamState(names, groups, (0,) * len(names), empty, empty, empty)

    def _import(self, record: fo.AdamState, states: list[dict[str, Any]]) -> fo.AdamState:
        return attrs.evolve(
            record,
            count=tuple(int(s["step"]) if "step" in s else 0 for s in states),
            exp_avg=tuple(s.get("exp_avg") for s in states),
            exp_avg_sq=tuple(s.get("exp_avg_sq") for s in states),
            max_exp_avg_sq=tuple(s.get("max_exp_avg_sq") for s in states),
        )

    def _export(self, record: fo.AdamState, i: int) -> dict[str, Any]:
        if record.count[i] == 0:
            return {}
        # torch keeps the step as a CPU float tensor of the default float dtype.
        dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
        entry = {"step": torch.tensor(float(record.count[i]), dtype=dtype),
                 "exp_avg": record.exp_avg[i], "exp_avg_sq": record.exp_avg_sq[i]}
        if record.max_exp_avg_sq[i] is not None:
            entry["max_exp_avg_sq"] = record.max_exp_avg_sq[i]
        return entry


class Adam(_AdamBase, torch.optim.Adam):
    """``torch.optim.Adam`` stepping with :func:`fengine.core.optim.adam` (bit-identical numbers)."""

    _torch_base = torch.optim.Adam


class AdamW(_AdamBase, torch.optim.AdamW):
    """``torch.optim.AdamW`` stepping with :func:`fengine.core.optim.adamw` (bit-identical numbers)."""

    _torch_base = torch.optim.AdamW
