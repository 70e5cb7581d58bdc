"""The machinery shared by fengine's ``torch.optim`` subclasses: one record, torch's views of it, the step.

The optimizer's whole state is one record of ``fengine.core.optim`` (:attr:`opt_state`): each
group's hyper-parameters and every parameter's state. torch's ``param_groups`` and ``state`` are
views of it (:mod:`fengine.optim.optimizer.record_views`): ``opt.param_groups[0]['lr'] = 0.05``
(what schedulers do) changes the record at once, and ``opt.opt_state = record`` changes what the
groups hold at once. Keys the record does not know (``params``, ``foreach``, ``initial_lr``, ...)
stay in the group dicts. A step donates the record to the transform and keeps the new one.

Only a change of the groups' parameter lists (edited in place, as torch allows) is found by
looking: each step compares them with the record's layout and, when they differ, lays the record
out again, each parameter keeping its state.

When torch's own ``step`` must run (options no transform covers, sparse gradients, complex Adam
parameters, step hooks or the profiler), it runs on torch's per-parameter dict exported from the
record, which is read back into the record right after (:meth:`PureStepOptimizer._torch_step`, the
one place torch's dict flows back): the record stays the truth. ``state_dict``, pickling and
``load_state_dict`` pass through the same torch-format dict. For ``capturable``/``fused`` Adam this
means fresh ``step`` tensors every step, so capturing the step in a CUDA graph needs
``torch.optim``'s own class.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from operator import is_
from typing import Any

import attrs
import torch
from torch import Tensor
from torch.optim import optimizer as torch_optimizer

from fengine.core import optim as fo
from fengine.core.optim.base import ParamGroup, build_groups
from fengine.optim.optimizer.record_views import ParamGroupView, StateView

#: torch's step hooks for every optimizer (empty dicts unless someone registered one). Should a
#: later torch move them, a non-empty stand-in sends every step through torch's hook runner.
_GLOBAL_HOOKS = tuple(
    getattr(torch_optimizer, name, {None: None})
    for name in ("_global_optimizer_pre_hooks", "_global_optimizer_post_hooks")
)
_profiler_enabled = torch._C._autograd._profiler_enabled


def _undecorated(name: str) -> Callable[..., Any]:
    """torch's ``Optimizer.<name>`` without its ``torch._disable_dynamo`` wrapper.

    The wrapper's first call imports TorchDynamo, seconds of a run's set-up (and of its first
    checkpoint); fengine never traces an optimizer, so its optimizers call the plain functions.
    """
    method = getattr(torch.optim.Optimizer, name)
    return getattr(method, "__wrapped__", method)  # type: ignore[no-any-return]


_ADD_PARAM_GROUP, _STATE_DICT, _LOAD_STATE_DICT = map(_undecorated, ("add_param_group", "state_dict", "load_state_dict"))


@attrs.frozen(eq=False)
class _Layout:
    """Where the record's parameters come from: names, tensors, and each group's list."""

    keys: tuple[str, ...]
    flat: list[Tensor]
    params: dict[str, Tensor]
    groups: tuple[tuple[Tensor, ...], ...]


def _same(a: Any, b: Any) -> bool:
    """Whether two sequences hold the very same objects, in order."""
    return len(a) == len(b) and all(map(is_, a, b))


def _no_check(hyper: object) -> None:
    """torch validated the defaults at construction; later group values are the user's."""


def _torch_step(cls: type[torch.optim.Optimizer]) -> Callable[..., Any]:
    # torch wraps ``step`` with its hook runner once per class; call the inner function so that
    # step hooks do not run twice when this class falls back to torch's implementation.
    step = cls.step
    return getattr(step, "__wrapped__", step) if getattr(step, "hooked", False) else step


class PureStepOptimizer(torch.optim.Optimizer):
    """Shared machinery: the state record, torch's views of it, and the donated step."""

    _torch_base: type[torch.optim.Optimizer]
    #: Only ``update`` is used: hyper-parameters come from the record, not from the factory.
    _transform: fo.GradientTransform[Any]
    #: The record's per-group hyper-parameters (``SGDHyper``, ``AdamHyper``).
    _hyper_type: type
    _hyper_keys: frozenset[str]
    _complex_ok = True
    #: Whether every group can be stepped by the transform (``None``: not known since a write).
    _steppable: bool | None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_hyper_type" in vars(cls):
            cls._hyper_keys = frozenset(attrs.fields_dict(cls._hyper_type))

    def _torch_only_group(self, group: Mapping[str, Any]) -> bool:
        """Whether only torch's implementation can step ``group`` (see :func:`torch_only`)."""
        raise NotImplementedError

    def _empty_record(self, names: tuple[str, ...], groups: tuple[ParamGroup[Any], ...]) -> Any:
        raise NotImplementedError

    def _import(self, record: Any, entries: Mapping[int, Mapping[str, Any]]) -> Any:
        """``record`` with parameter ``i``'s state replaced by torch-format ``entries[i]``."""
        raise NotImplementedError

    def _export(self, record: Any, i: int, on_device: bool) -> dict[str, Any]:
        """Parameter ``i``'s torch-format state from ``record`` (empty if it has none).

        ``on_device``: its group is ``fused`` or ``capturable`` (torch keeps counters on the device).
        """
        raise NotImplementedError

    # -- the record and its layout ---------------------------------------------------------------
    def _adopt(self, groups: list[dict[str, Any]], state: Mapping[Tensor, Mapping[str, Any]]) -> None:
        """Make torch-format ``groups`` and per-parameter ``state`` the optimizer's record.

        Groups that already are this optimizer's views stay the same objects.
        """
        flat = [p for g in groups for p in g["params"]]
        keys = tuple(map(str, range(len(flat))))
        params = dict(zip(keys, flat))
        hypers = [self._hyper_from(g, i) for i, g in enumerate(groups)]
        specs, start = [], 0
        for group, hyper in zip(groups, hypers):
            specs.append({"params": keys[start : start + len(group["params"])], **attrs.asdict(hyper, recurse=False)})
            start += len(group["params"])
        built = build_groups(keys, params, hypers[0], specs, _no_check) if groups else ()
        record = self._empty_record(keys, built)
        record = self._import(record, {i: state[p] for i, p in enumerate(flat) if p in state})
        views = []
        for i, group in enumerate(groups):
            if isinstance(group, ParamGroupView) and group._owner() is self:
                group._index = i
            else:
                group = ParamGroupView(self, i, group)
            views.append(group)
        self.__dict__.update(
            param_groups=views, _record=record, _steppable=None, _torch_dict=None,
            _layout=_Layout(keys, flat, params, tuple(tuple(g["params"]) for g in groups)),
        )

    def _hyper_from(self, group: Mapping[str, Any], index: int) -> Any:
        missing = sorted(self._hyper_keys - group.keys())
        if missing:
            raise KeyError(
                f"param_groups[{index}] lacks {missing}; a {type(self).__name__} group holds "
                f"{sorted(self._hyper_keys)}"
            )
        return self._hyper_type(**{k: group[k] for k in self._hyper_keys})

    def _torch_format(self) -> defaultdict[Tensor, Any]:
        """torch's per-parameter dict, exported from the record (the tensors are the record's)."""
        out: defaultdict[Tensor, Any] = defaultdict(dict)
        record, flat = self.__dict__["_record"], self.__dict__["_layout"].flat
        start = 0
        for group, members in zip(self.param_groups, self.__dict__["_layout"].groups):
            on_device = bool(group.get("fused") or group.get("capturable"))
            for i in range(start, start + len(members)):
                entry = self._export(record, i, on_device)
                if entry:
                    out[flat[i]] = entry
            start += len(members)
        return out

    def _check_layout(self) -> None:
        """Lay the record out again if a group's parameter list changed (torch allows edits)."""
        groups, layout = self.param_groups, self.__dict__["_layout"]
        if len(groups) != len(layout.groups) or not all(
            map(_same, (g["params"] for g in groups), layout.groups)
        ):
            self._adopt(groups, self._torch_format())

    def _group_written(self, index: int, key: str, value: Any) -> None:
        """A group's ``key`` was set: a hyper-parameter goes into the record."""
        self.__dict__["_steppable"] = None
        if key == "params" or key not in self._hyper_keys:
            return
        record = self.__dict__.get("_record")
        if record is None or index >= len(record.groups):
            return  # a group torch is still adding: the record is built from it next
        group = record.groups[index]
        if getattr(group.hyper, key) is value:
            return
        new = ParamGroup(group.indices, group.buckets, attrs.evolve(group.hyper, **{key: value}))
        groups = (*record.groups[:index], new, *record.groups[index + 1 :])
        self.__dict__["_record"] = attrs.evolve(record, groups=groups)

    def _position_of(self, param: object) -> int | None:
        for i, p in enumerate(self.flat_params):
            if p is param:
                return i
        return None

    def _export_entry(self, index: int) -> dict[str, Any]:
        return self._export(self.__dict__["_record"], index, False)

    def _import_entry(self, index: int, entry: Mapping[str, Any], strict: bool) -> None:
        if strict:
            known = set(self._export_keys)
            unknown = sorted(set(entry) - known)
            if unknown:
                raise KeyError(
                    f"{type(self).__name__}'s record holds {sorted(known)} per parameter, got {unknown}"
                )
        self.__dict__["_record"] = self._import(self.__dict__["_record"], {index: entry})

    #: The keys of one parameter's torch-format state.
    _export_keys: tuple[str, ...] = ()

    # -- torch's ``state`` -----------------------------------------------------------------------
    @property
    def state(self) -> Any:
        """torch's per-parameter state: a view of the record (writes reach it).

        While torch's own code runs on this optimizer (its step, ``state_dict``,
        ``load_state_dict``), a plain torch-format dict exported from the record instead.
        """
        plain = self.__dict__.get("_torch_dict")
        if plain is not None or "_record" not in self.__dict__:
            return plain if plain is not None else defaultdict(dict)
        return StateView(self)

    @state.setter
    def state(self, value: Mapping[Tensor, Any]) -> None:
        if "_layout" in self.__dict__:
            self._adopt(self.param_groups, value)
        # Before the first group exists (torch's ``__init__``) there is nothing to hold.

    def __getstate__(self) -> dict[str, Any]:
        return {"defaults": self.defaults, "state": self._torch_format(),
                "param_groups": [dict(g) for g in self.param_groups]}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # torch's ``__setstate__`` (and Adam's, which reads ``self.state``) runs on plain data;
        # the record is then built from it.
        state = dict(state)
        plain = state.pop("state", None) or defaultdict(dict)
        state["param_groups"] = [dict(g) for g in state.get("param_groups", [])]
        replaced = self.__dict__.get("param_groups", [])
        self.__dict__["_torch_dict"] = plain
        try:
            super().__setstate__(state)
        finally:
            self.__dict__["_torch_dict"] = None
        self._adopt(self.__dict__["param_groups"], plain)
        for group in replaced:  # (``load_state_dict``) plain dicts from now on, as torch's old ones
            if isinstance(group, ParamGroupView):
                group.detach()

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's ``add_param_group``; the record is laid out again with the new group."""
        state = self._torch_format() if "_layout" in self.__dict__ else {}
        _ADD_PARAM_GROUP(self, param_group)  # see _undecorated
        self._adopt(self.param_groups, state)

    def state_dict(self) -> dict[str, Any]:
        """torch's ``state_dict`` of the record (without TorchDynamo's wrapper: see :func:`_undecorated`)."""
        self.__dict__["_torch_dict"] = self._torch_format()
        try:
            state: dict[str, Any] = _STATE_DICT(self)
        finally:
            self.__dict__["_torch_dict"] = None
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict`` (without TorchDynamo's wrapper: see :func:`_undecorated`)."""
        _LOAD_STATE_DICT(self, state_dict)

    # -- the record ------------------------------------------------------------------------------
    @property
    def opt_state(self) -> Any | None:
        """The optimizer's state as one pure record, hyper-parameters included.

        ``None`` when only torch's own implementation can step the groups (see
        :func:`torch_only`). Assigning a record (say from ``set_hyperparams`` or the transform's
        ``update``) makes it the optimizer's state; ``param_groups`` hold its values at once.
        """
        state = self.__dict__
        self._check_layout()
        steppable = state["_steppable"]
        if steppable is None:
            steppable = state["_steppable"] = not any(map(self._torch_only_group, self.param_groups))
        # A parameter's dtype may change in place (``p.data = ...``): recheck each step.
        if not steppable or (not self._complex_ok and any(map(Tensor.is_complex, state["_layout"].flat))):
            return None
        return state["_record"]

    @opt_state.setter
    def opt_state(self, record: Any) -> None:
        self._check_layout()
        current = self.__dict__["_record"]
        if type(record) is not type(current) or record.names != current.names or [
            g.indices for g in record.groups
        ] != [g.indices for g in current.groups]:
            raise ValueError(
                f"opt_state must be a {type(current).__name__} laid out as this optimizer's "
                f"({len(current.names)} parameters in groups of "
                f"{[len(g.indices) for g in current.groups]}), got {type(record).__name__}"
            )
        self.__dict__["_record"] = record
        self.__dict__["_steppable"] = None
        for view, group in zip(self.param_groups, record.groups):
            dict.update(view, attrs.asdict(group.hyper, recurse=False))

    @property
    def flat_params(self) -> list[Tensor]:
        """The parameters the record stands for, in ``param_groups`` order (the order of
        :meth:`step_record`'s gradients). Valid after :attr:`opt_state` was read.
        """
        flat: list[Tensor] = self.__dict__["_layout"].flat
        return flat

    def step_hooks_active(self) -> bool:
        """Whether torch's step hooks (this optimizer's or global) or the profiler want this step."""
        return bool(self._optimizer_step_pre_hooks or self._optimizer_step_post_hooks
                    or _GLOBAL_HOOKS[0] or _GLOBAL_HOOKS[1] or _profiler_enabled())

    def step_record(
        self, grads: list[Tensor | None], prepare: Callable[[list[Tensor | None]], None] | None = None
    ) -> Any | None:
        """Step the record (read :attr:`opt_state` first) with the transform, donated.

        Args:
            grads: one gradient (or ``None``) per parameter of :attr:`flat_params`.
            prepare: called with ``grads`` once they are known to suit the transform, before
                the update (the optimizer wrapper clips them there).

        Returns:
            The new record (the new :attr:`opt_state`); ``None``, with nothing done, when a
            gradient is sparse (only torch can step it).
        """
        state = self.__dict__
        if any(g is not None and g.is_sparse for g in grads):
            return None
        if prepare is not None:
            prepare(grads)
        params = state["_layout"].params
        _, record = self._transform.update(dict(zip(params, grads)), state["_record"], params, donate=True)
        state["_record"] = record
        return record

    def _pure_step(self) -> bool:
        """Step with the transform; ``False`` (nothing done) if only torch can step now."""
        if self.opt_state is None:
            return False
        return self.step_record([p.grad for p in self.flat_params]) is not None

    def _torch_step(self) -> None:
        """torch's own step, on torch's dict exported from the record; the record then reads it back."""
        self._check_layout()
        plain = self.__dict__["_torch_dict"] = self._torch_format()
        try:
            _torch_step(self._torch_base)(self)
        finally:
            self.__dict__["_torch_dict"] = None
            flat = self.flat_params
            self.__dict__["_record"] = self._import(self.__dict__["_record"], {i: plain.get(p, {}) for i, p in enumerate(flat)})

    def _step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if not self._pure_step():
            self._torch_step()
        return loss

    def step(self, *args: Any, **kwargs: Any) -> float | None:  # type: ignore[override]
        """One optimisation step: the pure transform, donated, on the parameters' ``.grad``.

        torch's step hooks (global and this optimizer's) and the profiler's
        ``Optimizer.step#...`` range run exactly as for ``torch.optim``; when there is none of
        them (and no closure) the step goes straight to the transform, skipping the hook
        runner's own cost.

        Args:
            *args: ``closure``, which re-evaluates the model and returns the loss (run with
                gradients enabled).
            **kwargs: ``closure`` by name.

        Returns:
            The closure's loss, or ``None``.
        """
        if args or kwargs or self.step_hooks_active():
            if type(self).step is PureStepOptimizer.step:
                return _hooked_step(self, *args, **kwargs)
            # A subclass's own ``step`` (which torch wrapped with the hooks) called this one.
            return self._step(*args, **kwargs)
        if not self._pure_step():
            self._torch_step()
        return None

    # torch wraps the ``step`` of each optimizer class with its hook runner unless it is
    # marked as already hooked; this one runs the hooks itself (above).
    step.hooked = True  # type: ignore[attr-defined]

    def zero_grad(self, set_to_none: bool = True) -> None:
        """``torch.optim.Optimizer.zero_grad``: gradients to ``None`` (or zeroed in place).

        Setting them to ``None`` outside the profiler is a plain loop; zeroing in place, or
        under the profiler (for its ``Optimizer.zero_grad#...`` range), is torch's own.

        Args:
            set_to_none: drop the gradients instead of zeroing them.
        """
        if not set_to_none or _profiler_enabled():
            super().zero_grad(set_to_none)
            return
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None


#: The step with torch's hook runner and profiler range around it, as torch wraps ``step``.
_hooked_step = torch.optim.Optimizer.profile_hook_step(PureStepOptimizer._step)


def torch_only(group: Mapping[str, Any]) -> bool:
    """Whether only torch's own implementation can step ``group`` (options no transform covers).

    Args:
        group: a ``param_groups`` entry.

    Returns:
        ``True`` for ``foreach=False``, ``fused``, ``differentiable``, ``capturable`` or a
        tensor ``lr``.
    """
    return (
        group.get("foreach") is False
        or bool(group.get("fused"))
        or bool(group.get("differentiable"))
        or bool(group.get("capturable"))
        or isinstance(group["lr"], Tensor)
    )
