"""Build parameter schedulers from configs, as MMEngine's Runner does."""

from __future__ import annotations

import copy
import inspect
from collections.abc import Mapping, Sequence
from typing import Any

from fengine.core.schedule import ScheduleError
from fengine.optim.scheduler.base import _ParamScheduler
from fengine.registry import PARAM_SCHEDULERS, ConfigError

SchedulerCfg = _ParamScheduler | Mapping[str, Any]


def build_param_schedulers(
    optim_wrapper: Any,
    cfgs: SchedulerCfg | Sequence[SchedulerCfg] | Mapping[str, Any],
    *,
    epoch_length: int | None = None,
    max_epochs: int | None = None,
    max_iters: int | None = None,
) -> list[_ParamScheduler] | dict[str, list[_ParamScheduler]]:
    """Build the schedulers of one optimizer, or of each optimizer of an ``OptimWrapperDict``.

    Each config is a ``dict(type=..., **kwargs)`` built through ``PARAM_SCHEDULERS`` (a built
    scheduler passes through). A config without ``end`` ends with training: ``end = max_epochs``
    for ``by_epoch=True`` (the default), ``max_iters`` otherwise (left unset when that is
    ``None``). ``convert_to_iter_based=True`` converts an epoch-based config to iterations with
    ``epoch_length`` (after ``end`` is filled, so the window still spans the whole run).

    With several optimizers (``optim_wrapper`` has ``items()``), ``cfgs`` is either one config
    list used for every optimizer, or a dict ``{optimizer name: configs}``.

    Args:
        optim_wrapper: an ``OptimWrapper``/``torch.optim.Optimizer``, or an ``OptimWrapperDict``.
        cfgs: a config, a built scheduler, a list of those, or a dict of such lists by optimizer.
        epoch_length: iterations per epoch (``len(train_dataloader)``).
        max_epochs: the default ``end`` of epoch-based schedulers.
        max_iters: the default ``end`` of iteration-based schedulers.

    Returns:
        A list of schedulers, or a dict of lists keyed like ``optim_wrapper``.

    Raises:
        TypeError: an entry that is neither a config dict nor a scheduler.
        KeyError: an optimizer without configs in a dict of lists, or an unknown ``type``
            (the message lists close registered names).
        ValueError: ``convert_to_iter_based`` without ``epoch_length`` or with
            ``by_epoch=False``, and any invalid hyper-parameter (``begin >= end``, bad milestones).
    """
    options = {"epoch_length": epoch_length, "max_epochs": max_epochs, "max_iters": max_iters}
    by_name = cfgs if isinstance(cfgs, Mapping) and "type" not in cfgs else None
    if not callable(getattr(optim_wrapper, "items", None)):
        if by_name is not None:
            raise TypeError(
                "param_scheduler is a dict without `type` (schedulers by optimizer name), but "
                f"there is a single optimizer ({type(optim_wrapper).__name__}); give a config "
                "dict or a list of them"
            )
        return _build_list(optim_wrapper, cfgs, **options)
    wrappers = dict(optim_wrapper.items())
    if by_name is not None:
        missing = sorted(set(wrappers) - set(by_name))
        if missing:
            raise KeyError(
                f"param_scheduler has no schedulers for optimizer(s) {missing}; "
                f"its keys are {sorted(by_name)}, the optimizers are {sorted(wrappers)}"
            )
        return {name: _build_list(w, by_name[name], **options) for name, w in wrappers.items()}
    return {name: _build_list(w, cfgs, **options) for name, w in wrappers.items()}


def _build_list(optimizer: Any, cfgs: Any, **options: Any) -> list[_ParamScheduler]:
    entries = cfgs if isinstance(cfgs, Sequence) and not isinstance(cfgs, str) else [cfgs]
    return [_build_one(optimizer, entry, **options) for entry in entries]


def _build_one(
    optimizer: Any,
    cfg: Any,
    *,
    epoch_length: int | None,
    max_epochs: int | None,
    max_iters: int | None,
) -> _ParamScheduler:
    if isinstance(cfg, _ParamScheduler):
        return cfg
    if not isinstance(cfg, Mapping):
        raise TypeError(
            f"a param_scheduler entry must be a config dict or a built scheduler, "
            f"got {type(cfg).__name__}: {cfg!r}"
        )
    args = copy.deepcopy(dict(cfg))
    by_epoch = args.get("by_epoch", True)
    default_end = max_epochs if by_epoch else max_iters
    if default_end is not None:
        args.setdefault("end", default_end)
    if not args.pop("convert_to_iter_based", False):
        built: _ParamScheduler = PARAM_SCHEDULERS.build(args, default_args={"optimizer": optimizer})
        return built
    if "type" not in args:
        raise ConfigError(f"a param_scheduler config needs a `type` key, got keys {sorted(args)}")
    cls = PARAM_SCHEDULERS.resolve(args["type"])
    name = getattr(cls, "__name__", repr(cls))
    if epoch_length is None or not by_epoch:
        raise ScheduleError(
            f"{name}: convert_to_iter_based=True needs by_epoch=True and the epoch length "
            f"(got by_epoch={by_epoch}, epoch_length={epoch_length})"
        )
    if "convert_to_iter_based" in inspect.signature(cls).parameters:
        args.update(convert_to_iter_based=True, epoch_length=epoch_length)
        built = PARAM_SCHEDULERS.build(args, default_args={"optimizer": optimizer})
        return built
    build_iter = getattr(cls, "build_iter_from_epoch", None)
    if build_iter is None:
        raise TypeError(f"{name} cannot be converted to iterations (no build_iter_from_epoch)")
    del args["type"]
    converted: _ParamScheduler = build_iter(optimizer=optimizer, epoch_length=epoch_length, **args)
    return converted


__all__ = ["build_param_schedulers"]
