"""How the runner turns objects-or-configs into components (MMEngine's ``Runner.build_*``).

Each function passes a built object through unchanged; the runner's ``build_*`` methods call them.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fengine import dist
from fengine.dataset import build_dataloader, check_not_empty
from fengine.evaluator import Evaluator
from fengine.logging import MessageHub, MMLogger
from fengine.model.utils import revert_sync_batchnorm
from fengine.model.wrappers import MMDistributedDataParallel, is_model_wrapper
from fengine.optim import OptimWrapperDict, build_optim_wrapper
from fengine.optim.scheduler import build_param_schedulers
from fengine.registry import (
    EVALUATOR,
    LOG_PROCESSORS,
    LOOPS,
    MODEL_WRAPPERS,
    MODELS,
    OPTIM_WRAPPERS,
    VISUALIZERS,
)
from fengine.runner import config_checks
from fengine.runner.base_loop import BaseLoop
from fengine.runner.distributed import apply_sync_bn, refuse_sharding_in_one_process
from fengine.runner.eval_loops import TestLoop, ValLoop
from fengine.runner.log_processor import LogProcessor
from fengine.runner.loops import EpochBasedTrainLoop, IterBasedTrainLoop
from fengine.visualization import Visualizer


class ScaleLrConfigError(KeyError, AssertionError):
    """``auto_scale_lr`` enabled without ``base_batch_size`` (MMEngine asserts it)."""


class UnbuiltOptimWrapperError(TypeError, AssertionError):
    """Schedulers asked for while the optimizer wrapper is still a config (MMEngine asserts it)."""


class MissingStepError(TypeError, AssertionError):
    """The model lacks the ``train_step``/``val_step`` a run needs (MMEngine asserts ``val_step``)."""


def alias_of(name: str) -> property:
    """A property reading and writing the attribute ``name`` (MMEngine's private spelling of it)."""
    return property(lambda owner: getattr(owner, name), lambda owner, value: setattr(owner, name, value))


def compile_model(model: nn.Module, setting: bool | Mapping[str, Any], logger: Any) -> None:
    """Put ``model``'s forward under ``torch.compile`` (``setting``: ``True`` or its options).

    The module's ``__call__`` is compiled (``nn.Module.compile``), so the forward pass and the
    loss of ``train_step`` run as compiled graphs whose backward is compiled with them; the
    optimizer step and the hooks stay eager. Numbers match eager training to rounding.
    """
    options = dict(setting) if isinstance(setting, Mapping) else {}
    model.compile(**options)
    logger.info('Model has been "compiled". The first few iterations will be slow, please be patient.')


def check_steps(model: nn.Module, validate: bool) -> None:
    """``model`` has ``train_step``, and ``val_step`` when training validates.

    Raises:
        MissingStepError: naming the missing method.
    """
    if not callable(getattr(model, "train_step", None)):
        raise MissingStepError(f"{type(model).__name__} has no `train_step`; train() needs it")
    if validate and not callable(getattr(model, "val_step", None)):
        raise MissingStepError(
            f"{type(model).__name__} has no `val_step`. If you want to validate during training, the "
            "model needs a `val_step`; else give no val_dataloader, val_cfg and val_evaluator"
        )


def build_logger(
    name: str, log_dir: str, timestamp: str, log_level: int | str = "INFO", log_file: str | None = None, /, **kwargs: Any
) -> MMLogger:
    """The logger instance ``kwargs['name']`` (default ``name``) writing to ``log_file`` (MMEngine's rules).

    ``log_file`` defaults to ``<log_dir>/<timestamp>.log`` and the file is appended to.
    """
    options: dict[str, Any] = {
        "name": name,
        "file_mode": "a",
        **kwargs,
        "log_level": log_level,
        "log_file": os.path.join(log_dir, f"{timestamp}.log") if log_file is None else log_file,
    }
    return MMLogger.get_instance(**options)


def build_message_hub(message_hub: Mapping[str, Any] | None, name: str) -> MessageHub:
    """The message hub instance built from ``message_hub``'s arguments (``name`` by default).

    Raises:
        TypeError: ``message_hub`` is neither a dict nor ``None``.
    """
    if message_hub is not None and not isinstance(message_hub, Mapping):
        raise TypeError(f"message_hub should be dict or None, but got {message_hub!r}")
    return MessageHub.get_instance(**{"name": name, **(message_hub or {})})


def build_visualizer(visualizer: Any, name: str, log_dir: str) -> Any:
    """A visualizer as given, built from a config (``name``/``save_dir`` by default), or the default one.

    ``None`` is the instance ``name`` with a ``LocalVisBackend`` saving under ``log_dir``.

    Raises:
        TypeError: neither a visualizer (an object with ``add_scalars``), a dict nor ``None``.
    """
    if visualizer is None:
        return Visualizer.get_instance(name=name, vis_backends=[{"type": "LocalVisBackend"}], save_dir=log_dir)
    if isinstance(visualizer, Mapping):
        return VISUALIZERS.build({"name": name, "save_dir": log_dir, **visualizer})
    if isinstance(visualizer, Visualizer) or callable(getattr(visualizer, "add_scalars", None)):
        return visualizer
    raise TypeError(f"visualizer should be Visualizer object, a dict or None, but got {visualizer!r}")


def device_name() -> str:
    """``'cuda'`` when a GPU is visible, else ``'cpu'``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def dataloader_of(dataloader: Any, seed: int | None = None, diff_rank_seed: bool = False) -> Any:
    """A dataloader from a config dict (``fengine.dataset.build_dataloader``), or as given."""
    if not isinstance(dataloader, Mapping):
        return dataloader
    return build_dataloader(copy.deepcopy(dict(dataloader)), seed=seed, diff_rank_seed=diff_rank_seed)


def build_model(model: nn.Module | Mapping[str, Any]) -> nn.Module:
    """An ``nn.Module`` as given, or built from a config through ``MODELS``.

    Raises:
        TypeError: neither a module nor a dict, or the config builds something else.
    """
    if isinstance(model, nn.Module):
        return model
    if not isinstance(model, Mapping):
        raise TypeError(f"model should be a nn.Module object or dict, but got {model!r}")
    built = MODELS.build(dict(model))
    if not isinstance(built, nn.Module):
        raise TypeError(f"model config {dict(model)!r} built a {type(built).__name__}, not an nn.Module")
    return built


def wrap_model(
    model_wrapper_cfg: Mapping[str, Any] | None, model: nn.Module, distributed: bool, cfg: Mapping[str, Any]
) -> nn.Module:
    """Move the model to the device and wrap it for distributed training (MMEngine's rules).

    Not distributed: SyncBatchNorm layers are reverted to BatchNorm and the model is used
    as is. Distributed: BatchNorm layers become SyncBatchNorm when ``cfg.sync_bn='torch'``,
    then ``MMDistributedDataParallel`` (or ``model_wrapper_cfg``'s type) wraps the model.
    """
    if is_model_wrapper(model):
        if model_wrapper_cfg is not None:
            raise TypeError(f"model is already wrapped, so model_wrapper_cfg should be None, got {model_wrapper_cfg!r}")
        return model
    model = model.to(device_name())
    if not distributed:
        refuse_sharding_in_one_process(model_wrapper_cfg)
        return revert_sync_batchnorm(model)
    model = apply_sync_bn(model, cfg.get("sync_bn"))
    device_ids = [dist.get_local_rank()] if torch.cuda.is_available() else None
    if model_wrapper_cfg is None:
        wrapped: nn.Module = MMDistributedDataParallel(
            module=model,
            device_ids=device_ids,
            broadcast_buffers=False,
            find_unused_parameters=bool(cfg.get("find_unused_parameters", False)),
        )
        return wrapped
    wrapper_cfg = {"type": "MMDistributedDataParallel", **model_wrapper_cfg}
    default_args: dict[str, Any] = {"module": model}
    wrapper_type = MODEL_WRAPPERS.resolve(wrapper_cfg["type"])
    if isinstance(wrapper_type, type) and issubclass(wrapper_type, nn.parallel.DistributedDataParallel):
        default_args["device_ids"] = device_ids
    built: nn.Module = MODEL_WRAPPERS.build(wrapper_cfg, default_args=default_args)
    return built


def build_evaluator(evaluator: Any) -> Any:
    """An evaluator as given; a dict with ``metrics`` through ``EVALUATOR``; else metrics."""
    if isinstance(evaluator, Evaluator):
        return evaluator
    if isinstance(evaluator, Mapping):
        if "metrics" in evaluator:
            return EVALUATOR.build({"type": "Evaluator", **evaluator})
        return Evaluator(dict(evaluator))
    if isinstance(evaluator, (list, tuple)):
        return Evaluator(list(evaluator))
    if callable(getattr(evaluator, "evaluate", None)):
        return evaluator
    raise TypeError(f"evaluator should be one of dict, list of dict, and Evaluator, but got {evaluator!r}")


def optim_wrapper_for(model: nn.Module, optim_wrapper: Any) -> Any:
    """An optimizer wrapper for ``model`` (``fengine.optim.build_optim_wrapper``) or as given.

    A config whose ``optimizer`` is a built optimizer wraps it (``type`` default
    ``'OptimWrapper'``); a dict of built wrappers by name (no ``optimizer`` or ``constructor``)
    becomes an ``OptimWrapperDict``.

    Raises:
        ValueError: a dict mixing built wrappers with other values.
        TypeError: neither a wrapper nor a dict.
    """
    if not isinstance(optim_wrapper, Mapping) and callable(getattr(optim_wrapper, "update_params", None)):
        return optim_wrapper
    if isinstance(optim_wrapper, Mapping):
        if isinstance(optim_wrapper.get("optimizer"), torch.optim.Optimizer):
            return OPTIM_WRAPPERS.build({"type": "OptimWrapper", **optim_wrapper})
        wrappers = config_checks.named_wrappers(optim_wrapper)
        if wrappers is not None:
            return OptimWrapperDict(**wrappers)
    return build_optim_wrapper(model, optim_wrapper)


def scale_lr(
    optim_wrapper: Any, auto_scale_lr: Mapping[str, Any] | None, world_size: int, train_dataloader: Any, logger: Any
) -> None:
    """Scale every group's ``lr`` by ``world_size * batch_size / base_batch_size`` when enabled.

    Raises:
        ScaleLrConfigError: ``auto_scale_lr`` enabled without ``base_batch_size`` (a ``KeyError``).
    """
    if not auto_scale_lr or not auto_scale_lr.get("enable", False):
        return
    if "base_batch_size" not in auto_scale_lr:
        raise ScaleLrConfigError(f"auto_scale_lr needs `base_batch_size`, got {dict(auto_scale_lr)!r}")
    loader = train_dataloader
    batch_size = loader["batch_size"] if isinstance(loader, Mapping) else loader.batch_size
    ratio = float(world_size * batch_size) / float(auto_scale_lr["base_batch_size"])
    logger.info(
        f"LR is set based on batch size of {auto_scale_lr['base_batch_size']} and the current "
        f"batch size is {world_size * batch_size}. Scaling the original LR by {ratio}."
    )
    wrappers = list(optim_wrapper.values()) if callable(getattr(optim_wrapper, "values", None)) else [optim_wrapper]
    for wrapper in wrappers:
        for group in wrapper.optimizer.param_groups:
            group["lr"] = group["lr"] * ratio


def build_param_scheduler(optim_wrapper: Any, scheduler: Any, train_loop: Any) -> Any:
    """Schedulers for the built optimizer wrapper, ending with training by default.

    Raises:
        UnbuiltOptimWrapperError: ``optim_wrapper`` is still a config dict.
    """
    if isinstance(optim_wrapper, Mapping):
        raise UnbuiltOptimWrapperError(
            "build_optim_wrapper should be called before build_param_scheduler: the optimizer wrapper "
            f"is still a config ({dict(optim_wrapper)!r}); build it first (runner.build_optim_wrapper)"
        )
    loop = train_loop if isinstance(train_loop, BaseLoop) else None
    return build_param_schedulers(
        optim_wrapper,
        scheduler,
        epoch_length=len(loop.dataloader) if loop is not None else None,
        max_epochs=loop.max_epochs if loop is not None else None,
        max_iters=loop.max_iters if loop is not None else None,
    )


def build_train_loop(loop: Any, runner: Any, dataloader: Any) -> BaseLoop:
    """The train loop from ``train_cfg`` (``by_epoch`` picks the loop, or a ``type``).

    Raises:
        ValueError: its dataloader yields no batch (naming ``train_dataloader``).
    """
    if isinstance(loop, BaseLoop):
        return loop
    if not isinstance(loop, Mapping):
        raise TypeError(f"train_loop should be a Loop object or dict, but got {loop!r}")
    cfg = copy.deepcopy(dict(loop))
    config_checks.check_loop_kind(cfg)
    built: BaseLoop
    if "type" in cfg:
        built = LOOPS.build(cfg, default_args={"runner": runner, "dataloader": dataloader})
    else:
        by_epoch = cfg.pop("by_epoch", "max_iters" not in cfg)
        loop_cls = EpochBasedTrainLoop if by_epoch else IterBasedTrainLoop
        built = loop_cls(runner=runner, dataloader=dataloader, **cfg)
    check_not_empty(getattr(built, "dataloader", None), "train_dataloader")
    return built


def build_eval_loop(loop: Any, runner: Any, dataloader: Any, evaluator: Any, mode: str) -> BaseLoop:
    """The ``mode`` (``'val'``/``'test'``) loop from its config (``ValLoop``/``TestLoop`` unless ``type``).

    Raises:
        ValueError: its dataloader yields no batch (naming ``<mode>_dataloader``).
    """
    if isinstance(loop, BaseLoop):
        return loop
    if not isinstance(loop, Mapping):
        raise TypeError(f"{mode}_loop should be a Loop object or dict, but got {loop!r}")
    cfg = copy.deepcopy(dict(loop))
    defaults = {"runner": runner, "dataloader": dataloader, "evaluator": evaluator}
    built: BaseLoop = LOOPS.build(cfg, default_args=defaults) if "type" in cfg else _EVAL_LOOPS[mode](**cfg, **defaults)
    check_not_empty(getattr(built, "dataloader", None), f"{mode}_dataloader")
    return built


def build_log_processor(log_processor: Any) -> Any:
    """A log processor as given, or built (``LogProcessor`` unless ``type`` says otherwise)."""
    if isinstance(log_processor, LogProcessor):
        return log_processor
    if not isinstance(log_processor, Mapping):
        raise TypeError(f"log processor should be a LogProcessor object or dict, but got {log_processor!r}")
    cfg = copy.deepcopy(dict(log_processor))
    if "type" in cfg:
        return LOG_PROCESSORS.build(cfg)
    return LogProcessor(**cfg)


_EVAL_LOOPS: dict[str, type[BaseLoop]] = {"val": ValLoop, "test": TestLoop}
