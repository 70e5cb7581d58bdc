"""Checks of the Runner's arguments made at construction, before anything is built or trained.

Configs are only inspected here: registered types are resolved (an unknown name lists the close
matches) and the loop arguments validated, so a typo fails in seconds instead of after the
datasets are loaded or an epoch is trained. Building stays lazy, in MMEngine's order.
"""

from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch.utils.data
from torch import nn

from fengine.registry import (
    DATA_SAMPLERS,
    DATASETS,
    EVALUATOR,
    FUNCTIONS,
    LOOPS,
    METRICS,
    MODELS,
    OPTIM_WRAPPER_CONSTRUCTORS,
    OPTIM_WRAPPERS,
    OPTIMIZERS,
    PARAM_SCHEDULERS,
    ConfigError,
    Registry,
)
from fengine.runner.base_loop import check_schedule

_LOADER_KEYS = frozenset(inspect.signature(torch.utils.data.DataLoader).parameters) | {"num_batch_per_epoch"}
_EPOCH_KEYS = ("max_epochs", "val_begin", "val_interval", "dynamic_intervals", "check_finite")
_ITER_KEYS = ("max_iters", "val_begin", "val_interval", "dynamic_intervals", "check_finite")


_RANDOMNESS_KEYS = ("seed", "deterministic", "diff_rank_seed")


class LoopConfigError(ValueError, RuntimeError):
    """A ``train_cfg`` with both ``type`` and ``by_epoch`` (MMEngine raises a ``RuntimeError``)."""


class SchedulerGroupError(ConfigError, AssertionError):
    """A value of a by-optimizer ``param_scheduler`` dict that is no scheduler (MMEngine asserts it)."""


def check_loop_kind(cfg: Mapping[str, Any]) -> None:
    """A train loop config names its loop by ``type`` or by ``by_epoch``, not both.

    Raises:
        LoopConfigError: both are given, naming them.
    """
    if "type" in cfg and "by_epoch" in cfg:
        raise LoopConfigError(
            f"train_cfg: Only one of `type` or `by_epoch` can be given, got type={cfg['type']!r} and "
            f"by_epoch={cfg['by_epoch']!r}; drop `by_epoch` when the loop is named by `type`"
        )


def named_wrappers(cfg: Mapping[str, Any]) -> dict[str, Any] | None:
    """The built wrappers of an ``optim_wrapper`` dict that holds one per sub-model, else ``None``.

    A dict without ``optimizer`` and ``constructor`` whose values are all built optimizer
    wrappers is such a dict (MMEngine makes an ``OptimWrapperDict`` of it).

    Raises:
        ValueError: some values are built wrappers and others are not, naming the first other.
    """
    if "optimizer" in cfg or "constructor" in cfg:
        return None
    built = {name: callable(getattr(value, "update_params", None)) for name, value in cfg.items()}
    if not any(built.values()):
        return None
    other = next(name for name, is_built in built.items() if not is_built) if not all(built.values()) else None
    if other is not None:
        # "mush be" is MMEngine's wording, kept so that code matching its message keeps working.
        raise ValueError(
            "optim_wrapper without `optimizer` or `constructor` is a dict of built optimizer wrappers "
            f"by name, so each item mush be an optimizer object (an OptimWrapper), but got "
            f"{other}={cfg[other]!r}; build it, or give a `constructor` that builds them all"
        )
    return dict(cfg)


def check_runner_arguments(
    model: Any,
    work_dir: Any,
    data_preprocessor: Any,
    train_dataloader: Any,
    train_cfg: Any,
    optim_wrapper: Any,
    param_scheduler: Any,
    val_dataloader: Any,
    val_cfg: Any,
    val_evaluator: Any,
    test_dataloader: Any,
    test_cfg: Any,
    test_evaluator: Any,
) -> None:
    """Check the Runner's component arguments (each check below), before anything is built.

    Raises:
        ValueError, TypeError, KeyError: the first bad argument, naming it and what is accepted.
    """
    check_together("training", train_dataloader=train_dataloader, train_cfg=train_cfg, optim_wrapper=optim_wrapper)
    check_together("validation", val_dataloader=val_dataloader, val_cfg=val_cfg, val_evaluator=val_evaluator)
    check_together("testing", test_dataloader=test_dataloader, test_cfg=test_cfg, test_evaluator=test_evaluator)
    if param_scheduler is not None and optim_wrapper is None:
        raise ValueError(f"param_scheduler should be None when optim_wrapper is None, but got {param_scheduler!r}")
    check_work_dir(work_dir)
    check_model(model, data_preprocessor)
    check_train_cfg(train_cfg)
    for name, loader in (("train_dataloader", train_dataloader), ("val_dataloader", val_dataloader), ("test_dataloader", test_dataloader)):
        check_dataloader(loader, name)
    check_evaluator(val_evaluator, "val_evaluator")
    check_evaluator(test_evaluator, "test_evaluator")
    check_optim_wrapper(optim_wrapper)
    check_param_scheduler(param_scheduler)


def randomness_setting(randomness: Mapping[str, Any] | None) -> dict[str, Any]:
    """``Runner(randomness=...)`` as a dict (``{'seed': None}`` by default).

    Raises:
        ValueError: a key other than ``seed``, ``deterministic``, ``diff_rank_seed``.
    """
    setting = {"seed": None} if randomness is None else dict(randomness)
    unknown = sorted(set(setting) - set(_RANDOMNESS_KEYS))
    if unknown:
        raise ValueError(f"randomness: unknown keys {unknown}; accepted: {', '.join(_RANDOMNESS_KEYS)}")
    return setting


def compile_setting(compile: Any) -> bool | Mapping[str, Any]:
    """``Runner(compile=...)`` checked: a bool or a dict of ``torch.compile`` options.

    Raises:
        TypeError: anything else.
    """
    if not isinstance(compile, bool | Mapping):
        raise TypeError(
            f"compile must be a bool or a dict of torch.compile options (e.g. "
            f"dict(backend='inductor')), got {compile!r}"
        )
    return compile


def check_together(stage: str, **items: Any) -> None:
    """``items`` must be all ``None`` or all given (e.g. a dataloader, its loop config, ...).

    Raises:
        ValueError: naming the given and the missing ones.
    """
    given = [name for name, value in items.items() if value is not None]
    if given and len(given) != len(items):
        missing = [name for name in items if name not in given]
        raise ValueError(
            f"{', '.join(items)} should be either all None or not None (all set) for {stage}, but "
            f"{', '.join(given)} {'is' if len(given) == 1 else 'are'} set and "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} None"
        )


def check_type(cfg: Any, registry: Registry, where: str) -> None:
    """Resolve ``cfg['type']`` in ``registry`` when ``cfg`` is a config dict with a ``type``.

    Raises:
        KeyError: an unknown type (naming ``where`` and the close registered names).
    """
    if isinstance(cfg, Mapping) and "type" in cfg:
        try:
            registry.resolve(cfg["type"])
        except KeyError as error:
            raise type(error)(f"{where}: {error}") from None


def check_work_dir(work_dir: Any) -> None:
    """``work_dir`` must be ``None`` (a fresh folder), a str or a path.

    Raises:
        TypeError: naming the value and its type.
    """
    if work_dir is not None and not isinstance(work_dir, (str, os.PathLike)):
        raise TypeError(
            f"work_dir must be a str, an os.PathLike or None (a fresh folder under ./work_dirs), "
            f"got {work_dir!r} of type {type(work_dir).__name__}"
        )


def check_model(model: Any, data_preprocessor: Any) -> None:
    """Resolve the registered types of a model config and of its data preprocessor.

    The preprocessor's type is checked here because a model class may take the config and not
    build it (or build it only on first use); ``data_preprocessor`` given to the Runner with a
    model *object* is ignored (MMEngine's rule), which is warned about.

    Raises:
        KeyError: an unknown model or preprocessor type (naming the close registered names).
    """
    check_type(model, MODELS, "model")
    if isinstance(model, Mapping):
        check_type(model.get("data_preprocessor"), MODELS, "model.data_preprocessor")
    check_type(data_preprocessor, MODELS, "data_preprocessor")
    if isinstance(model, nn.Module) and data_preprocessor is not None:
        warnings.warn(
            f"data_preprocessor={data_preprocessor!r} is ignored: the model is given as an "
            f"{type(model).__name__} object, which keeps its own preprocessor; pass a model config "
            "dict, or give the preprocessor to the model's constructor",
            stacklevel=3,
        )


def check_train_cfg(train_cfg: Any) -> None:
    """Validate ``train_cfg`` (``by_epoch`` + loop arguments, or a registered ``type``).

    Raises:
        TypeError: not a dict (or loop), or a value of the wrong type.
        ValueError: both ``type`` and ``by_epoch``, neither ``by_epoch`` nor a length, an
            unknown key (the accepted ones are listed) or a value out of range.
        KeyError: an unknown loop ``type``.
    """
    if train_cfg is None or not isinstance(train_cfg, Mapping):
        if train_cfg is not None and not callable(getattr(train_cfg, "run", None)):
            raise TypeError(f"train_cfg should be a dict or a loop object, got {train_cfg!r}")
        return
    cfg = dict(train_cfg)
    check_loop_kind(cfg)
    if "type" in cfg:
        check_type(cfg, LOOPS, "train_cfg")
        return
    by_epoch = cfg.pop("by_epoch", None)
    if by_epoch is None:
        by_epoch = "max_epochs" in cfg or "max_iters" not in cfg
    if not isinstance(by_epoch, bool):
        raise TypeError(f"train_cfg: `by_epoch` must be a bool, got {by_epoch!r}")
    accepted = _EPOCH_KEYS if by_epoch else _ITER_KEYS
    unknown = sorted(set(cfg) - set(accepted))
    if unknown:
        kind = "an epoch-based" if by_epoch else "an iteration-based"
        raise ValueError(f"train_cfg: unknown keys {unknown} for {kind} loop; accepted: by_epoch, {', '.join(accepted)}")
    limit = accepted[0]
    if limit not in cfg:
        raise ValueError(f"train_cfg needs `{limit}` for {'by_epoch=True' if by_epoch else 'by_epoch=False'}")
    check_schedule(
        limit,
        cfg[limit],
        cfg.get("val_begin", 1),
        cfg.get("val_interval", 1 if by_epoch else 1000),
        cfg.get("dynamic_intervals"),
        cfg.get("check_finite", True),
    )


def check_dataloader(cfg: Any, name: str) -> None:
    """Validate a dataloader config (or accept any iterable dataloader object).

    Raises:
        TypeError: neither a dict nor an iterable with ``len``; a non-int ``batch_size``.
        KeyError: a dict without ``dataset`` or ``sampler``, or an unknown dataset/sampler/collate
            type.
        ValueError: an unknown DataLoader keyword, or ``batch_size <= 0``.
    """
    if cfg is None:
        return
    if not isinstance(cfg, Mapping):
        if not hasattr(cfg, "__iter__"):
            raise TypeError(f"{name} should be a DataLoader or a config dict, got {cfg!r}")
        return
    for key, example in (("dataset", "an object or a dict with `type`"), ("sampler", "e.g. dict(type='DefaultSampler', shuffle=True)")):
        if key not in cfg:
            raise KeyError(f"{name} config needs a `{key}` ({example}); got keys {sorted(cfg)}")
    unknown = sorted(set(cfg) - _LOADER_KEYS)
    if unknown:
        raise ValueError(f"{name}: unknown keys {unknown}; accepted: {', '.join(sorted(_LOADER_KEYS))}")
    batch_size = cfg.get("batch_size", 1)
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)):
        raise TypeError(f"{name}: `batch_size` must be an int, got {batch_size!r}")
    if batch_size is not None and batch_size <= 0:
        raise ValueError(f"{name}: `batch_size` must be > 0, got {batch_size!r}")
    check_type(cfg["dataset"], DATASETS, f"{name}.dataset")
    for key in ("sampler", "batch_sampler"):
        check_type(cfg.get(key), DATA_SAMPLERS, f"{name}.{key}")
    collate = cfg.get("collate_fn")
    if collate is not None and not callable(collate) and not isinstance(collate, Mapping):
        raise TypeError(f"{name}: `collate_fn` must be a callable or a dict(type=...), got {collate!r}")
    check_type(collate, FUNCTIONS, f"{name}.collate_fn")


def check_evaluator(cfg: Any, name: str) -> None:
    """Validate an evaluator: an object, a metric config, ``dict(metrics=...)`` or a list.

    Raises:
        TypeError: another kind of value.
        KeyError: an unknown metric or evaluator type.
    """
    if cfg is None or (not isinstance(cfg, (Mapping, list, tuple)) and callable(getattr(cfg, "evaluate", None))):
        return
    if isinstance(cfg, Mapping):
        if "metrics" in cfg:
            check_type(cfg, EVALUATOR, name)
            metrics = cfg["metrics"]
            for i, metric in enumerate(metrics if isinstance(metrics, (list, tuple)) else [metrics]):
                check_type(metric, METRICS, f"{name}.metrics[{i}]")
        else:
            check_type(cfg, METRICS, name)
        return
    if isinstance(cfg, (list, tuple)):
        for i, metric in enumerate(cfg):
            check_type(metric, METRICS, f"{name}[{i}]")
        return
    raise TypeError(f"{name} should be an Evaluator, a metric config dict or a list of them, got {cfg!r}")


def check_optim_wrapper(cfg: Any) -> None:
    """Validate an optimizer-wrapper config (single or one per sub-model).

    Raises:
        TypeError: not a dict or wrapper object.
        KeyError: unknown wrapper, constructor or optimizer types; a single-optimizer config
            without ``optimizer``.
    """
    if cfg is None or not isinstance(cfg, Mapping):
        if not (cfg is None or callable(getattr(cfg, "update_params", None)) or isinstance(cfg, torch.optim.Optimizer)):
            raise TypeError(f"optim_wrapper should be an OptimWrapper, an optimizer or a config dict, got {cfg!r}")
        return
    if named_wrappers(cfg) is not None:
        return
    check_type(cfg, OPTIM_WRAPPERS, "optim_wrapper")
    constructor = cfg.get("constructor")
    if constructor is not None:
        check_type({"type": constructor}, OPTIM_WRAPPER_CONSTRUCTORS, "optim_wrapper.constructor")
        return
    if "optimizer" not in cfg:
        raise KeyError(
            "optim_wrapper config needs an `optimizer` (e.g. dict(type='SGD', lr=0.01)), "
            f"got keys {sorted(cfg)}"
        )
    check_type(cfg["optimizer"], OPTIMIZERS, "optim_wrapper.optimizer")


def check_param_scheduler(cfg: Any) -> None:
    """Validate scheduler configs: a dict, a list of dicts/schedulers, or a dict of such lists.

    Raises:
        KeyError: an unknown scheduler type.
        SchedulerGroupError: a value of a by-optimizer dict that is neither a scheduler, a config
            nor a list of them (an ``AssertionError`` too, as in MMEngine).
        ConfigError: another entry that is neither a config nor a scheduler object.
    """
    if cfg is None:
        return
    if isinstance(cfg, Mapping) and "type" not in cfg:
        for name, group in cfg.items():
            _check_scheduler_list(group, f"param_scheduler[{name!r}]", SchedulerGroupError, "Each value of `param_scheduler`")
        return
    _check_scheduler_list(cfg, "param_scheduler", ConfigError, "`param_scheduler`")


_SCHEDULER_FORMS = (
    "should be a scheduler, a config dict with `type` or a list of them (a dict without `type` "
    "holds such lists by optimizer name)"
)


def _check_scheduler_list(cfg: Any, where: str, error: type[ConfigError], subject: str) -> None:
    entries = cfg if isinstance(cfg, Sequence) and not isinstance(cfg, str) else [cfg]
    for i, entry in enumerate(entries):
        if isinstance(entry, Mapping):
            if "type" not in entry:
                raise ConfigError(f"{where}[{i}] needs a `type`, got {dict(entry)!r}")
            check_type(entry, PARAM_SCHEDULERS, f"{where}[{i}]")
        elif not callable(getattr(entry, "step", None)):
            raise error(f"{subject} {_SCHEDULER_FORMS}, but {where}[{i}] is {entry!r}")
