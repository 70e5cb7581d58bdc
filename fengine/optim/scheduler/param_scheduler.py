"""MMEngine's generic ``*ParamScheduler`` classes: any ``param_groups`` key, one family each.

Each class is its :mod:`fengine.core.schedule` family record plus MMEngine's stepping (the
formulas are documented with the records). :class:`FamilyScheduler` writes each class's
constructor from the record's attrs fields, so names and defaults have one source: MMEngine's
signature ``(optimizer, param_name, <the family's fields, in record order>, begin=0, end=INF,
last_step=-1, by_epoch=True, verbose=False, *, convert_to_iter_based=False, epoch_length=None)``
(the keyword-only pair is what MMEngine's registry passes on), or the order a class names where
MMEngine's differs. ``inspect.signature`` shows the real parameters; positional and keyword
arguments bind as in MMEngine.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, cast

import attrs

from fengine.core import schedule as fs
from fengine.optim.scheduler.base import ParamGroupsOwner, _ParamScheduler, check_optimizer
from fengine.optim.scheduler.plateau import ReduceOnPlateauParamScheduler
from fengine.registry import PARAM_SCHEDULERS

_P = inspect.Parameter
#: The fields every schedule record shares (its window).
_WINDOW = tuple(f.name for f in attrs.fields(fs.Schedule))
#: What follows a family's fields in MMEngine's usual order: the window and the scheduler's own.
_TAIL = ("begin", "end", "last_step", "by_epoch", "verbose")
#: Arguments of the scheduler itself (not of the schedule), with their types and defaults.
_OWN: dict[str, tuple[str, Any]] = {"last_step": ("int", -1), "verbose": ("bool", False)}
_KEYWORD_ONLY = (
    _P("convert_to_iter_based", _P.KEYWORD_ONLY, default=False, annotation="bool"),
    _P("epoch_length", _P.KEYWORD_ONLY, default=None, annotation="int | None"),
)


def family_fields(family: type[fs.Schedule]) -> tuple[str, ...]:
    """The hyper-parameters of ``family``: its record's fields less the window, in record order."""
    return tuple(f.name for f in attrs.fields(family) if f.name not in _WINDOW)


def family_signature(family: type[fs.Schedule], order: Sequence[str] | None = None) -> inspect.Signature:
    """The constructor signature of ``family``'s scheduler (``self`` first).

    Args:
        family: the schedule record.
        order: the positional parameters after ``param_name``, where MMEngine's order is not the
            family's fields followed by ``begin, end, last_step, by_epoch, verbose``.

    Returns:
        The signature; names, defaults and annotations of the family's fields and window come from
        the record's attrs fields.

    Raises:
        TypeError: ``order`` does not name exactly those parameters.
    """
    default = (*family_fields(family), *_TAIL)
    names = tuple(order) if order is not None else default
    if sorted(names) != sorted(default):
        raise TypeError(
            f"order for {family.__name__} must arrange {list(default)}, got {list(names)}"
        )
    fields = attrs.fields_dict(family)
    params = [
        _P("self", _P.POSITIONAL_OR_KEYWORD),
        _P("optimizer", _P.POSITIONAL_OR_KEYWORD, annotation="ParamGroupsOwner"),
        _P("param_name", _P.POSITIONAL_OR_KEYWORD, annotation="str"),
    ]
    for name in names:
        annotation: Any
        value: Any
        if name in _OWN:
            annotation, value = _OWN[name]
        else:
            annotation, value = fields[name].type, fields[name].default
        default_value = _P.empty if value is attrs.NOTHING else value
        params.append(_P(name, _P.POSITIONAL_OR_KEYWORD, default=default_value, annotation=annotation))
    return inspect.Signature([*params, *_KEYWORD_ONLY], return_annotation="None")


def _constructor(family: type[fs.Schedule], signature: inspect.Signature) -> Callable[..., None]:
    def __init__(self: FamilyScheduler, *args: Any, **kwargs: Any) -> None:
        try:
            bound = signature.bind(self, *args, **kwargs)
        except TypeError as error:  # name the class, as Python names the function
            raise TypeError(f"{type(self).__name__}(): {error}") from None
        bound.apply_defaults()
        given = dict(bound.arguments)
        del given["self"]
        optimizer, param_name = given.pop("optimizer"), given.pop("param_name")
        options = {key: given.pop(key) for key in (*_OWN, *(p.name for p in _KEYWORD_ONLY))}
        schedules = self._schedules_from(optimizer, param_name, given, options["last_step"])
        super(FamilyScheduler, self).__init__(optimizer, param_name, schedules, **options)

    __init__.__signature__ = signature  # type: ignore[attr-defined]
    __init__.__doc__ = (
        f"Schedule ``param_name`` with a :class:`fengine.core.schedule.{family.__name__}` built "
        "from the family's arguments and the window."
    )
    return __init__


class FamilyScheduler(_ParamScheduler):
    """A scheduler of one :mod:`fengine.core.schedule` family, its constructor written from the record.

    A subclass names the family (and, where MMEngine's positional order differs, the order) in
    its class statement: ``class StepParamScheduler(FamilyScheduler, family=fs.Step)``.
    """

    #: The schedule record this scheduler builds.
    family: ClassVar[type[fs.Schedule]]

    def __init_subclass__(
        cls,
        *,
        family: type[fs.Schedule] | None = None,
        order: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init_subclass__(**kwargs)
        if family is None:
            return
        cls.family = family
        init = _constructor(family, family_signature(family, order))
        init.__qualname__ = f"{cls.__qualname__}.__init__"
        init.__module__ = cls.__module__
        setattr(cls, "__init__", init)  # noqa: B010  (mypy sees _ParamScheduler's)

    def _schedules_from(
        self, optimizer: ParamGroupsOwner, param_name: str, fields: dict[str, Any], last_step: int
    ) -> fs.Schedule | list[fs.Schedule]:
        """The record (one for every group) from the family's and the window's arguments."""
        return self.family(**fields)


@PARAM_SCHEDULERS.register_module()
class StepParamScheduler(FamilyScheduler, family=fs.Step):
    """Multiply by ``gamma`` every ``step_size`` steps (:class:`fengine.core.schedule.Step`)."""


#: MMEngine's orders where they are not the family's fields followed by :data:`_TAIL`.
_MULTISTEP_ORDER = ("milestones", "gamma", "last_step", "begin", "end", "by_epoch", "verbose")
_COSINE_ORDER = ("T_max", "eta_min", *_TAIL, "eta_min_ratio")


@PARAM_SCHEDULERS.register_module()
class MultiStepParamScheduler(FamilyScheduler, family=fs.MultiStep, order=_MULTISTEP_ORDER):
    """Multiply by ``gamma`` at each milestone (:class:`fengine.core.schedule.MultiStep`)."""


@PARAM_SCHEDULERS.register_module()
class ConstantParamScheduler(FamilyScheduler, family=fs.Constant):
    """Multiply by ``factor`` until the window's last step (:class:`fengine.core.schedule.Constant`)."""


@PARAM_SCHEDULERS.register_module()
class ExponentialParamScheduler(FamilyScheduler, family=fs.Exponential):
    """Multiply by ``gamma`` every step (:class:`fengine.core.schedule.Exponential`)."""


@PARAM_SCHEDULERS.register_module()
class CosineAnnealingParamScheduler(FamilyScheduler, family=fs.Cosine, order=_COSINE_ORDER):
    """Cosine annealing to ``eta_min`` (or ``base·eta_min_ratio``) over ``T_max`` steps
    (:class:`fengine.core.schedule.Cosine`)."""

    @property
    def T_max(self) -> int:
        """Steps of the half cosine: the given ``T_max``, else the window's length."""
        schedule = self.schedules[0]
        assert isinstance(schedule, fs.Cosine)
        return schedule.T_max or (schedule.end - schedule.begin)


@PARAM_SCHEDULERS.register_module()
class LinearParamScheduler(FamilyScheduler, family=fs.Linear):
    """Scale linearly from ``start_factor`` to ``end_factor`` over the window
    (:class:`fengine.core.schedule.Linear`)."""


@PARAM_SCHEDULERS.register_module()
class PolyParamScheduler(FamilyScheduler, family=fs.Poly):
    """Polynomial decay to ``eta_min`` at the window's last step
    (:class:`fengine.core.schedule.Poly`)."""


@PARAM_SCHEDULERS.register_module()
class CosineRestartParamScheduler(FamilyScheduler, family=fs.CosineRestart):
    """Cosine annealing restarted every period, the peak scaled by ``restart_weights``
    (:class:`fengine.core.schedule.CosineRestart`)."""


@PARAM_SCHEDULERS.register_module()
class OneCycleParamScheduler(FamilyScheduler, family=fs.OneCycle):
    """The 1cycle learning-rate policy (:class:`fengine.core.schedule.OneCycle`); ``eta_max`` may
    be one value per parameter group. Only ``param_name='lr'`` is accepted, as in MMEngine.

    Raises:
        ValueError: another ``param_name``, or a list ``eta_max`` of the wrong length.
    """

    def _schedules_from(
        self, optimizer: ParamGroupsOwner, param_name: str, fields: dict[str, Any], last_step: int
    ) -> list[fs.Schedule]:
        """One record per group (``eta_max`` may differ), and MMEngine's bookkeeping keys."""
        if param_name != "lr":
            raise fs.ScheduleError(f"OneCycle schedules only 'lr', got param_name={param_name!r}")
        groups = check_optimizer(optimizer)
        peaks = _per_group(fields.pop("eta_max"), len(groups))
        if len(peaks) != len(groups):
            raise fs.ScheduleError(f"expected {len(groups)} values for eta_max, got {len(peaks)}")
        schedules: list[fs.Schedule] = [fs.OneCycle(eta_max=peak, **fields) for peak in peaks]
        if last_step == -1:  # MMEngine's bookkeeping keys; initial_lr becomes the cycle's start
            for group, peak in zip(groups, peaks):
                group["initial_lr"] = peak / fields["div_factor"]
                group["max_lr"] = peak
                group["min_lr"] = group["initial_lr"] / fields["final_div_factor"]
        return schedules

    def _hyper_params(self) -> dict[str, Any]:
        params = super()._hyper_params()
        peaks = [s.eta_max for s in self.schedules if isinstance(s, fs.OneCycle)]
        params["eta_max"] = peaks if len(set(peaks)) > 1 else peaks[0]
        return params

    def _load_hyper_params(self, state_dict: Any) -> None:
        eta_max = state_dict.get("eta_max")
        rest = {k: v for k, v in state_dict.items() if k != "eta_max"}
        super()._load_hyper_params(rest)
        if eta_max is not None:
            peaks = _per_group(eta_max, len(self.schedules))
            self._schedules = tuple(
                attrs.evolve(cast(fs.OneCycle, s), eta_max=p) for s, p in zip(self.schedules, peaks)
            )


def _per_group(value: float | Sequence[float], groups: int) -> list[float]:
    """One value per param group from a scalar or a per-group list."""
    return list(value) if isinstance(value, Sequence) else [value] * groups


__all__ = [
    "ConstantParamScheduler",
    "CosineAnnealingParamScheduler",
    "CosineRestartParamScheduler",
    "ExponentialParamScheduler",
    "FamilyScheduler",
    "LinearParamScheduler",
    "MultiStepParamScheduler",
    "OneCycleParamScheduler",
    "PolyParamScheduler",
    "ReduceOnPlateauParamScheduler",
    "StepParamScheduler",
]
