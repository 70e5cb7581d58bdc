"""The machinery shared by fengine's ``torch.optim`` subclasses: the record, its torch view, the step.

Between steps the optimizer state lives in one record of ``fengine.core.optim`` that each step
donates to the transform; torch's per-parameter ``state`` dict is produced from it whenever
someone reads it. Each step reuses the group records of an earlier step unless a value the
optimizer reads is no longer the very object it was built from, or a group's parameters changed
(a scheduler's new ``lr`` takes effect at once). torch's step hooks and profiler ranges run as
for ``torch.optim``; with none of them active the step skips torch's hook runner.
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
#: Values whose identity shows they did not change: immutable scalars (and tuples of them).
_IMMUTABLE = (int, float, str, type(None))
#: Group keys that decide whether torch's own implementation must step a group (with ``lr``).
TORCH_ONLY_KEYS = ("foreach", "fused", "differentiable", "capturable")

#: Per param group, what the cached step plan was built from: the values of the group's keys
#: that the optimizer reads, and its parameters.
_Plan = tuple[tuple[tuple[Any, ...], tuple[Tensor, ...]], ...]


def _immutable(value: object) -> bool:
    return isinstance(value, _IMMUTABLE) or (
        type(value) is tuple and all(isinstance(v, _IMMUTABLE) for v in value)
    )


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
    """Shared machinery: the state record, its torch-format view, and the donated step."""

    _torch_base: type[torch.optim.Optimizer]
    #: Only ``update`` is used: hyper-parameters come from the record, not from the factory.
    _transform: fo.GradientTransform[Any]
    _complex_ok = True
    #: Every group key that :meth:`_hyper_of` and :func:`torch_only` read.
    _group_keys: tuple[str, ...]

    def _hyper_of(self, group: Mapping[str, Any]) -> Any | None:
        """The group's hyper-parameter record, or ``None`` if only torch can step this group."""
        raise NotImplementedError

    def _empty_record(self, names: tuple[str, ...], groups: tuple[ParamGroup[Any], ...]) -> Any:
        raise NotImplementedError

    def _import(self, record: Any, states: list[dict[str, Any]]) -> Any:
        """``record`` filled with torch-format per-parameter states (aligned with ``names``)."""
        raise NotImplementedError

    def _export(self, record: Any, i: int) -> dict[str, Any]:
        """Parameter ``i``'s torch-format state from ``record`` (empty if it has none)."""
        raise NotImplementedError

    @property
    def record(self) -> Any | None:
        """The pure state record, if the last step ran the transform.

        ``None`` before the first step, after torch's own implementation stepped (torch's dict
        is then the truth until the next pure step), and after ``load_state_dict``.
        """
        return self.__dict__.get("_record")

    # -- torch's ``state`` as a view of the record ---------------------------------------------
    @property
    def state(self) -> defaultdict[Tensor, Any]:
        """torch's per-parameter state dict, materialised from the record on access.

        The record stays the truth: the next step reads it unless an entry of the dict handed
        out was replaced meanwhile (then the dict is imported back; see :attr:`opt_state`).
        """
        record = self.__dict__.get("_record")
        if record is not None and self.__dict__.get("_view_of") is not record:
            flat = self.__dict__["_layout"][1]
            view: defaultdict[Tensor, Any] = defaultdict(dict)
            for i, p in enumerate(flat):
                entry = self._export(record, i)
                if entry:
                    view[p] = entry
            self.__dict__["_torch_state"] = view
            self.__dict__["_view_of"] = record
        return self.__dict__["_torch_state"]  # type: ignore[no-any-return]

    @state.setter
    def state(self, value: defaultdict[Tensor, Any]) -> None:
        self.__dict__["_torch_state"] = value
        self.__dict__["_record"] = None
        self.__dict__["_view_of"] = None

    def _torch_owns_state(self) -> None:
        """Make torch's dict the truth (before torch's own step or a change of layout)."""
        _ = self.state
        self.__dict__["_record"] = None

    def _view_replaced(self, record: Any) -> bool:
        """Whether an entry of the dict handed out for ``record`` no longer is the record's."""
        view = self.__dict__["_torch_state"]
        for i, p in enumerate(self.__dict__["_layout"][1]):
            ours, theirs = self._export(record, i), view.get(p, {})
            if ours.keys() != theirs.keys():
                return True
            for key, value in ours.items():
                other = theirs[key]
                if other is value:
                    continue
                # Exported scalars (Adam's step) are made afresh: compare their values.
                if not (isinstance(other, Tensor) and isinstance(value, Tensor) and value.numel() == 1
                        and other.numel() == 1 and float(other) == float(value)):
                    return True
        return False

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = dict(state)
        # Route ``state`` through the property (torch's ``__setstate__`` writes ``__dict__``
        # directly, and Adam's reads ``self.state`` while it runs).
        self.__dict__["_layout"] = None
        self.state = state.pop("state", None) or defaultdict(dict)
        super().__setstate__(state)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """torch's ``add_param_group``; the record is rebuilt on the next step."""
        self._torch_owns_state()
        _ADD_PARAM_GROUP(self, param_group)  # see _undecorated
        self.__dict__["_layout"] = None

    def state_dict(self) -> dict[str, Any]:
        """torch's ``state_dict`` (without TorchDynamo's wrapper: see :func:`_undecorated`)."""
        state: dict[str, Any] = _STATE_DICT(self)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """torch's ``load_state_dict`` (without TorchDynamo's wrapper: see :func:`_undecorated`)."""
        _LOAD_STATE_DICT(self, state_dict)

    def _record_for(self, hypers: list[Any]) -> Any:
        layout = self.__dict__.get("_layout")
        if layout is not None and not _same(layout[1], [p for g in self.param_groups for p in g["params"]]):
            self._torch_owns_state()  # the record is laid out by the old parameter list
            layout = None
        if layout is None:
            flat = [p for g in self.param_groups for p in g["params"]]
            keys = tuple(str(i) for i in range(len(flat)))
            layout = self.__dict__["_layout"] = (keys, flat, dict(zip(keys, flat)))
        record = self.__dict__.get("_record")
        keys, flat, params = layout
        if record is None:
            specs, start = [], 0
            for group, hyper in zip(self.param_groups, hypers):
                specs.append({"params": keys[start : start + len(group["params"])], **attrs.asdict(hyper, recurse=False)})
                start += len(group["params"])
            groups = build_groups(keys, params, hypers[0], specs, _no_check)
            torch_state = self.__dict__["_torch_state"]
            return self._import(self._empty_record(keys, groups), [torch_state.get(p, {}) for p in flat])
        if any(h != g.hyper for h, g in zip(hypers, record.groups)):
            groups = tuple(attrs.evolve(g, hyper=h) for h, g in zip(hypers, record.groups))
            record = attrs.evolve(record, groups=groups)
        return record

    def _eligible(self) -> list[Any] | None:
        hypers = [self._hyper_of(g) for g in self.param_groups]
        if any(h is None for h in hypers):
            return None
        if not self._complex_ok and any(p.is_complex() for g in self.param_groups for p in g["params"]):
            return None
        return hypers

    def _plan_holds(self, plan: _Plan) -> bool:
        """Whether no group's read values (by identity) nor parameters changed since ``plan``."""
        groups = self.param_groups
        if len(groups) != len(plan):
            return False
        keys = self._group_keys
        for group, (values, params) in zip(groups, plan):
            if not all(map(is_, map(group.get, keys), values)) or not _same(group["params"], params):
                return False
        return True

    def _plan_now(self) -> _Plan | None:
        """What :meth:`_plan_holds` compares against; ``None`` if a value may change in place."""
        plan = []
        for group in self.param_groups:
            values = tuple(map(group.get, self._group_keys))
            if not all(map(_immutable, values)):
                return None
            plan.append((values, tuple(group["params"])))
        return tuple(plan)

    @property
    def opt_state(self) -> Any | None:
        """The optimizer's state as one pure record, hyper-parameters as the groups hold them now.

        A scheduler's (or a user's) new ``param_groups`` value is in the record returned. ``None``
        when only torch's own implementation can step the groups (see :func:`torch_only`).
        Assigning a record (from :attr:`transform`'s ``update``) makes it the optimizer's state.
        """
        state = self.__dict__
        record, plan = state.get("_record"), state.get("_plan")
        if record is not None and state.get("_view_of") is record:
            state["_view_of"] = None
            if self._view_replaced(record):  # someone wrote into the dict handed out
                record = state["_record"] = None
        if (record is None or plan is None or not self._plan_holds(plan)
                # A parameter's dtype may change in place (``p.data = ...``): recheck each step.
                or (not self._complex_ok and any(map(Tensor.is_complex, state["_layout"][1])))):
            state["_plan"] = None
            hypers = self._eligible()
            if hypers is None:
                return None
            record = state["_record"] = self._record_for(hypers)
            state["_plan"] = self._plan_now()
        return record

    @opt_state.setter
    def opt_state(self, record: Any) -> None:
        self.__dict__["_record"] = record

    @property
    def flat_params(self) -> list[Tensor]:
        """The parameters the record stands for, in ``param_groups`` order (the order of
        :meth:`step_record`'s gradients). Valid after :attr:`opt_state` was read.
        """
        flat: list[Tensor] = self.__dict__["_layout"][1]
        return flat

    def step_hooks_active(self) -> bool:
        """Whether torch's step hooks (this optimizer's or global) or the profiler want this step."""
        return bool(self._optimizer_step_pre_hooks or self._optimizer_step_post_hooks
                    or _GLOBAL_HOOKS[0] or _GLOBAL_HOOKS[1] or _profiler_enabled())

    def step_record(
        self, grads: list[Tensor | None], prepare: Callable[[list[Tensor | None]], None] | None = None
    ) -> bool:
        """Step the record (read :attr:`opt_state` first) with the transform, donated.

        Args:
            grads: one gradient (or ``None``) per parameter of :attr:`flat_params`.
            prepare: called with ``grads`` once they are known to suit the transform, before
                the update (the optimizer wrapper clips them there).

        Returns:
            ``False``, with nothing done, when a gradient is sparse (only torch can step it).
        """
        state = self.__dict__
        if any(g is not None and g.is_sparse for g in grads):
            state["_plan"] = None
            return False
        if prepare is not None:
            prepare(grads)
        keys, _, params = state["_layout"]
        _, state["_record"] = self._transform.update(dict(zip(keys, grads)), state["_record"], params, donate=True)
        return True

    def _pure_step(self) -> bool:
        """Step with the transform; ``False`` (nothing done) if only torch can step now.

        The record carries each group's hyper-parameters. It is rebuilt from the groups only
        when a value this optimizer reads is no longer the very object it was built from, or
        the parameters changed; a scheduler writing a new ``lr`` thus takes effect at once.
        """
        if self.opt_state is None:
            return False
        return self.step_record([p.grad for p in self.flat_params])

    def _step(self, closure: Callable[[], float] | None = None) -> float | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        if not self._pure_step():
            self._torch_owns_state()
            _torch_step(self._torch_base)(self)
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
            self._torch_owns_state()
            _torch_step(self._torch_base)(self)
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
