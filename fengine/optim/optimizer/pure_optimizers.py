"""``torch.optim.SGD``/``Adam``/``AdamW`` whose ``step()`` runs the pure transforms of ``fengine.core.optim``.

They are real ``torch.optim`` optimizers (subclasses): ``param_groups`` is the list of dicts that
parameter schedulers read and write (views of the record: a write changes it at once), ``state_dict()``/``load_state_dict()`` use torch's format
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
from fengine.optim.optimizer.pure_step import PureStepOptimizer, torch_only


class SGD(PureStepOptimizer, torch.optim.SGD):
    """``torch.optim.SGD`` stepping with :func:`fengine.core.optim.sgd` (bit-identical numbers).

    Same arguments as torch's, except that ``lr`` is required (as MMEngine's configs always give
    it): a config without it fails at build time with a message naming ``lr``.
    """

    _torch_base = torch.optim.SGD
    _transform = fo.sgd(0.0)
    _hyper_type = fo.SGDHyper
    _export_keys = ("momentum_buffer",)

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

    def _torch_only_group(self, group: Mapping[str, Any]) -> bool:
        return torch_only(group) or isinstance(group["weight_decay"], Tensor)

    def _empty_record(self, names: tuple[str, ...], groups: tuple[ParamGroup[Any], ...]) -> fo.SGDState:
        return fo.SGDState(names, groups, (None,) * len(names))

    def _import(self, record: fo.SGDState, entries: Mapping[int, Mapping[str, Any]]) -> fo.SGDState:
        if not entries:
            return record
        buffers = list(record.momentum_buffer)
        for i, entry in entries.items():
            buffers[i] = entry.get("momentum_buffer")
        return attrs.evolve(record, momentum_buffer=tuple(buffers))

    def _export(self, record: fo.SGDState, i: int, on_device: bool) -> dict[str, Any]:
        buf = record.momentum_buffer[i]
        return {} if buf is None else {"momentum_buffer": buf}


class _AdamBase(PureStepOptimizer):
    _complex_ok = False
    _transform = fo.adam()
    _hyper_type = fo.AdamHyper
    _export_keys = ("step", "exp_avg", "exp_avg_sq", "max_exp_avg_sq")

    def _torch_only_group(self, group: Mapping[str, Any]) -> bool:
        return torch_only(group) or any(isinstance(b, Tensor) for b in group["betas"])

    def _empty_record(self, names: tuple[str, ...], groups: tuple[ParamGroup[Any], ...]) -> fo.AdamState:
        empty: tuple[Tensor | None, ...] = (None,) * len(names)
        return fo.AdamState(names, groups, (0,) * len(names), empty, empty, empty)

    def _import(self, record: fo.AdamState, entries: Mapping[int, Mapping[str, Any]]) -> fo.AdamState:
        if not entries:
            return record
        count = list(record.count)
        moments: list[list[Tensor | None]] = [list(record.exp_avg), list(record.exp_avg_sq), list(record.max_exp_avg_sq)]
        for i, entry in entries.items():
            count[i] = int(entry["step"]) if "step" in entry else 0
            for field, key in zip(moments, ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")):
                field[i] = entry.get(key)
        exp_avg, exp_avg_sq, max_exp_avg_sq = (tuple(m) for m in moments)
        return attrs.evolve(record, count=tuple(count), exp_avg=exp_avg, exp_avg_sq=exp_avg_sq,
                            max_exp_avg_sq=max_exp_avg_sq)

    def _export(self, record: fo.AdamState, i: int, on_device: bool) -> dict[str, Any]:
        if record.count[i] == 0:
            return {}
        # torch keeps the step as a float tensor: on the parameter's device (float32) for fused
        # or capturable groups, else on the CPU in the default float dtype.
        exp_avg = record.exp_avg[i]
        if on_device and exp_avg is not None:
            step = torch.tensor(float(record.count[i]), dtype=torch.float32, device=exp_avg.device)
        else:
            dtype = torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32
            step = torch.tensor(float(record.count[i]), dtype=dtype)
        entry = {"step": step, "exp_avg": exp_avg, "exp_avg_sq": record.exp_avg_sq[i]}
        if record.max_exp_avg_sq[i] is not None:
            entry["max_exp_avg_sq"] = record.max_exp_avg_sq[i]
        return entry


class Adam(_AdamBase, torch.optim.Adam):
    """``torch.optim.Adam`` stepping with :func:`fengine.core.optim.adam` (bit-identical numbers)."""

    _torch_base = torch.optim.Adam


class AdamW(_AdamBase, torch.optim.AdamW):
    """``torch.optim.AdamW`` stepping with :func:`fengine.core.optim.adamw` (bit-identical numbers)."""

    _torch_base = torch.optim.AdamW
