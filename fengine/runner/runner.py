"""``Runner``: MMEngine's runner API as a short façade over the shell's four rooms.

The runner owns, each built here with explicit arguments:

* a :class:`~fengine.runner.hook_host.HookHost`: the run's one record
  (:class:`~fengine.core.run.RunState` over the :class:`~fengine.core.state.TrainState`), the
  hooks in call order and the dispatch of events;
* an :class:`~fengine.runner.interpreter.EffectInterpreter`: carries out what hooks ask for;
* a :class:`~fengine.runner.checkpointing.Checkpointer` and a
  :class:`~fengine.runner.resuming.Resumer`: saving, loading and resuming;
* the run's components in one :class:`~fengine.runner.parts.Parts` (model, optimizer wrapper,
  schedulers, loops).

MMEngine's attributes and methods are forwarded to the room that answers them (the ``Via``
table below). Loops get their step, their validation and the resume point from ``train()``.
Components are given as objects or config dicts; configs are checked at construction (before
anything is built or trained) and built lazily in MMEngine's order (model and hooks at
construction; loops, optimizer wrapper and schedulers when ``train``/``val``/``test`` start), so
seeded runs draw random numbers in the same order as MMEngine's.
"""

from __future__ import annotations

import copy
import logging
import os
import pprint
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import torch
from torch import nn

from fengine import dist
from fengine.config_source import given_arguments, write_config_copy
from fengine.core.events import Event
from fengine.core.run import RunState
from fengine.core.state import TrainState
from fengine.hooks.hook import Hook
from fengine.hooks.param_scheduler_hook import ITERATION_SCHEDULERS
from fengine.logging import MessageHub, MMLogger
from fengine.registry import RUNNERS, init_default_scope
from fengine.runner import builders
from fengine.runner import config_checks as checks
from fengine.runner.base_loop import BaseLoop
from fengine.runner.checkpointing import Checkpointer
from fengine.runner.distributed import check_launch_settings, setup_process_group
from fengine.runner.forwarding import LazyLoop, MissingLoopError, Via
from fengine.runner.history_bound import bound_history
from fengine.runner.hook_host import HookHost
from fengine.runner.interpreter import EffectInterpreter, built_schedulers
from fengine.runner.parts import Parts
from fengine.runner.profiler import ProfilerSession
from fengine.runner.randomness import set_random_seed
from fengine.runner.resume_checks import resume_setting
from fengine.runner.resuming import Resumer
from fengine.runner.run_place import open_run_place
from fengine.runner.train_step import runner_train_step
from fengine.runner.work_dir_lock import WorkDirLock

_FROM_CFG = (
    "train_dataloader", "val_dataloader", "test_dataloader", "train_cfg", "val_cfg", "test_cfg",
    "auto_scale_lr", "optim_wrapper", "param_scheduler", "val_evaluator", "test_evaluator",
    "default_hooks", "custom_hooks", "data_preprocessor", "load_from", "visualizer", "log_processor",
    "experiment_name", "work_dir", "env_cfg", "default_scope",
)



@RUNNERS.register_module()
class Runner:
    """Build a run from objects or configs and train, validate or test it (MMEngine's ``Runner``).

    Arguments are MMEngine's. Differences: ``work_dir=None`` uses a fresh folder under
    ``./work_dirs/``; ``train_cfg`` also takes ``check_finite`` (stop on a NaN/Inf loss, default
    on, found at the next log line or checkpoint; ``'eager'``: at the step); ``val_begin=0`` validates before training; ``randomness`` accepts ``seed``,
    ``deterministic`` and ``diff_rank_seed`` only. ``compile=True`` (or a dict of
    ``torch.compile`` options; default: ``cfg['compile']``, as MMEngine reads it) compiles the
    model's forward when training starts. Resuming is strict: ``resume=True`` (or
    ``load_from`` with it) fails before any step when the checkpoint's parameter names or shapes,
    optimizer state or ``meta`` counters do not fit this run, naming the first mismatches;
    ``resume=dict(strict=False)`` resumes anyway with MMEngine's lenient, reported loading.
    ``load_from`` alone loads weights leniently, as MMEngine. The run deletes only its own
    checkpoints inside its folders, whatever paths a resumed checkpoint records.

    One run per work dir: ``train()``, ``val()`` and ``test()`` hold an exclusive OS lock on
    ``work_dir`` (the file ``.fengine.lock``) from their start until they return or raise, so a
    second run started in the same work dir meanwhile fails at once with a
    :class:`~fengine.runner.work_dir_lock.WorkDirLockedError` naming the PID and host of the
    first; runs one after another (a resume in the same process too) are unaffected, and a killed
    run leaves no lock behind (:mod:`fengine.runner.work_dir_lock`). The message hub keeps per
    key as many records as the log windows read (:mod:`fengine.runner.history_bound`), so a long
    run's memory stays flat and its log lines are those of an unbounded history.

    Raises:
        ValueError, TypeError, KeyError: a bad argument or config, naming it (checked here,
            before anything is built).
    """

    def __init__(
        self,
        model: nn.Module | Mapping[str, Any],
        work_dir: str | os.PathLike[str] | None = None,
        train_dataloader: Any = None,
        val_dataloader: Any = None,
        test_dataloader: Any = None,
        train_cfg: Mapping[str, Any] | None = None,
        val_cfg: Mapping[str, Any] | None = None,
        test_cfg: Mapping[str, Any] | None = None,
        auto_scale_lr: Mapping[str, Any] | None = None,
        optim_wrapper: Any = None,
        param_scheduler: Any = None,
        val_evaluator: Any = None,
        test_evaluator: Any = None,
        default_hooks: Mapping[str, Any] | None = None,
        custom_hooks: list[Any] | None = None,
        data_preprocessor: nn.Module | Mapping[str, Any] | None = None,
        load_from: str | None = None,
        resume: bool | Mapping[str, Any] = False,
        launcher: str = "none",
        env_cfg: Mapping[str, Any] | None = None,
        log_processor: Any = None,
        log_level: str | int = "INFO",
        visualizer: Any = None,
        default_scope: str | None = None,
        randomness: Mapping[str, Any] | None = None,
        experiment_name: str | None = None,
        cfg: Mapping[str, Any] | None = None,
        compile: bool | Mapping[str, Any] | None = None,
    ) -> None:
        if default_scope is not None:  # as MMEngine: every build below looks in this scope first
            init_default_scope(default_scope)
        checks.check_runner_arguments(
            model=model, work_dir=work_dir, data_preprocessor=data_preprocessor,
            train_dataloader=train_dataloader, train_cfg=train_cfg, optim_wrapper=optim_wrapper,
            param_scheduler=param_scheduler, val_dataloader=val_dataloader, val_cfg=val_cfg,
            val_evaluator=val_evaluator, test_dataloader=test_dataloader, test_cfg=test_cfg,
            test_evaluator=test_evaluator,
        )
        randomness = checks.randomness_setting(randomness)
        check_launch_settings(launcher, env_cfg, (cfg or {}).get("sync_bn"))
        resume, resume_strict = resume_setting(resume)
        compile = checks.compile_setting((cfg or {}).get("compile", False) if compile is None else compile)

        self.cfg: dict[str, Any] = copy.deepcopy(dict(cfg)) if cfg is not None else {}
        self._cfg_text = pprint.pformat(self.cfg, sort_dicts=False) if self.cfg else ""
        self._train_dataloader, self._val_dataloader, self._test_dataloader = train_dataloader, val_dataloader, test_dataloader
        self._val_evaluator, self._test_evaluator = val_evaluator, test_evaluator
        self.auto_scale_lr = auto_scale_lr
        #: The launcher (``'none'``, ``'pytorch'``, ...).
        self.launcher = launcher
        self.distributed = launcher != "none"
        env = dict(env_cfg) if env_cfg is not None else {"dist_cfg": {"backend": "nccl"}}
        if env.get("cudnn_benchmark"):
            torch.backends.cudnn.benchmark = True
        setup_process_group(launcher, env)
        self.rank, self.world_size = dist.get_dist_info()
        self._randomness_cfg = randomness
        self._compile = compile
        self._set_randomness(randomness.get("seed"))

        place = open_run_place(work_dir, experiment_name, self.distributed, self.rank)
        self.timestamp, self.work_dir, self.log_dir = place.timestamp, place.work_dir, place.log_dir
        self.experiment_name = place.experiment_name
        self._work_dir_lock = WorkDirLock(self.work_dir, self.rank)
        self.default_scope = default_scope
        self.logger: logging.Logger = self.build_logger(log_level)
        self.message_hub = self.build_message_hub()
        if place.stale:
            self.logger.info(f"removed temporary files of interrupted writes: {list(place.stale)}")

        if isinstance(model, Mapping) and data_preprocessor is not None:
            model = {"data_preprocessor": data_preprocessor, **model}
        built = builders.wrap_model(self.cfg.get("model_wrapper_cfg"), builders.build_model(model), self.distributed, self.cfg)
        self._parts = Parts(built, optim_wrapper, param_scheduler, train_cfg, val_cfg, test_cfg)
        self.model_name = type(self._parts.unwrapped()).__name__
        run = RunState(
            work_dir=self.work_dir,
            log_dir=self.log_dir,
            rank=self.rank,
            world_size=self.world_size,
            meta={"experiment_name": self.experiment_name, "seed": self.seed, "cfg": self._cfg_text},
            resumed=resume,
        )
        self._host = HookHost(
            run, self, lambda run: self._effects.carry_out(run), self._planned_run,
            lambda: self.message_hub.runtime_info,
        )
        self._checkpointer = Checkpointer(self._host, self._parts, self.message_hub, self.logger, self.work_dir, self.rank)
        self._effects = EffectInterpreter(
            self._host, self._parts, self._checkpointer, self, self.logger, self.message_hub,
            self.build_visualizer(visualizer),
            builders.build_log_processor({} if log_processor is None else log_processor),
            ProfilerSession(self.log_dir, self.logger), self.rank, self.log_dir, self.timestamp,
        )
        self._resumer = Resumer(
            self._host, self._parts, self._checkpointer, self.message_hub, self.logger, self.work_dir,
            self._rebuild, self._set_randomness, lambda: self._randomness_cfg.get("seed"),
            load_from, resume, resume_strict,
        )
        self._host.follow_model(self._parts.unwrapped())
        self.register_hooks(default_hooks, custom_hooks)
        self.logger.info(f"Hooks will be executed in the following order:\n{self.get_hooks_info()}")
        self._settings = self.cfg or given_arguments(Runner.__init__, locals())
        write_config_copy(self.work_dir, self.timestamp, self._settings, self.rank)

    # -- what each room answers --------------------------------------------------------------------
    model: Via[nn.Module] = Via("_parts", "model")
    optim_wrapper: Via[Any] = Via("_parts", "optim_wrapper")
    param_schedulers: Via[Any] = Via("_parts", "param_schedulers")
    _train_loop: Via[Any] = Via("_parts", "train_loop")
    _val_loop: Via[Any] = Via("_parts", "val_loop")
    _test_loop: Via[Any] = Via("_parts", "test_loop")
    #: The run's record and what hooks see (a new frozen record after every event that changes it).
    run_state: Via[RunState] = Via("_host", "run")
    hook_names: Via[list[str]] = Via("_host", "hook_names")
    register_hook = Via[Callable[..., None]]("_host", "register_hook")
    register_custom_hooks = Via[Callable[..., None]]("_host", "register_custom_hooks")
    get_hooks_info = Via[Callable[[], str]]("_host", "get_hooks_info")
    call_hook = Via[Callable[..., None]]("_host", "call_hook")
    run_hook = Via[Callable[..., None]]("_host", "run_hook")
    state_of = Via[Callable[[Hook], Any]]("_host", "state_of")
    hook_states = Via[Callable[[], dict[str, Any]]]("_host", "hook_states")
    _fire = Via[Callable[..., None]]("_host", "fire")
    save_checkpoint = Via[Callable[..., None]]("_checkpointer", "save_checkpoint")
    load_checkpoint = Via[Callable[..., Any]]("_resumer", "load_checkpoint")
    resume = Via[Callable[..., None]]("_resumer", "resume")
    load_or_resume = Via[Callable[[], None]]("_resumer", "load_or_resume")
    resume_strict: Via[bool] = Via("_resumer", "resume_strict")
    strict_hook_states: Via[bool] = Via("_resumer", "strict_hook_states")
    visualizer: Via[Any] = Via("_effects", "visualizer")
    log_processor: Via[Any] = Via("_effects", "log_processor")
    build_dataloader = staticmethod(builders.dataloader_of)
    build_model = staticmethod(builders.build_model)
    build_evaluator = staticmethod(builders.build_evaluator)
    build_log_processor = staticmethod(builders.build_log_processor)
    _experiment_name = builders.alias_of("experiment_name")

    @property
    def hook_host(self) -> HookHost:
        """The run's record cell, hooks and dispatch (what loops drive)."""
        return self._host

    @property
    def hooks(self) -> list[Hook]:
        """The registered hooks in call order (a copy)."""
        return list(self._host.hook_list)

    @property
    def _hooks(self) -> list[Hook]:
        """The registered hooks in call order (MMEngine's attribute: the list itself)."""
        return self._host.hook_list

    @_hooks.setter
    def _hooks(self, hooks: list[Hook]) -> None:
        # MMEngine's tests and tools reset ``runner._hooks = []`` and register again.
        self._host.replace_hooks(hooks)

    def register_default_hooks(self, hooks: Mapping[str, Hook | Mapping[str, Any] | None] | None = None) -> None:
        """Register MMEngine's six default hooks merged with ``hooks`` (:meth:`HookHost.register_default_hooks`)."""
        self._host.register_default_hooks(hooks, self._parts.train_loop)

    def register_hooks(
        self,
        default_hooks: Mapping[str, Hook | Mapping[str, Any] | None] | None = None,
        custom_hooks: list[Hook | Mapping[str, Any]] | None = None,
    ) -> None:
        """Register the default hooks, then the custom ones."""
        self._host.register_hooks(default_hooks, custom_hooks, self._parts.train_loop)

    # -- MMEngine's build_* methods (fengine.runner.builders) ----------------------------------------
    def wrap_model(self, model_wrapper_cfg: Mapping[str, Any] | None, model: nn.Module) -> nn.Module:
        """Move ``model`` to the device and wrap it for distributed training (MMEngine's rules)."""
        return builders.wrap_model(model_wrapper_cfg, model, self.distributed, self.cfg)

    def build_optim_wrapper(self, optim_wrapper: Any) -> Any:
        """An optimizer wrapper for the model from its config, or as given."""
        return builders.optim_wrapper_for(self.model, optim_wrapper)

    def scale_lr(self, optim_wrapper: Any, auto_scale_lr: Mapping[str, Any] | None = None) -> None:
        """Scale every group's ``lr`` by ``world_size * batch_size / base_batch_size`` when enabled."""
        builders.scale_lr(optim_wrapper, auto_scale_lr, self.world_size, self._train_dataloader, self.logger)

    def build_param_scheduler(self, scheduler: Any) -> Any:
        """Schedulers for the built optimizer wrapper, ending with training by default."""
        return builders.build_param_scheduler(self.optim_wrapper, scheduler, self._parts.train_loop)

    def build_train_loop(self, loop: Any) -> BaseLoop:
        """The train loop from ``train_cfg`` (``by_epoch`` picks the loop, or a ``type``)."""
        return builders.build_train_loop(loop, self, self._train_dataloader)

    def build_val_loop(self, loop: Any) -> BaseLoop:
        """The validation loop from ``val_cfg``."""
        return builders.build_eval_loop(loop, self, self._val_dataloader, self._val_evaluator, "val")

    def build_test_loop(self, loop: Any) -> BaseLoop:
        """The test loop from ``test_cfg``."""
        return builders.build_eval_loop(loop, self, self._test_dataloader, self._test_evaluator, "test")

    def build_logger(self, log_level: int | str = "INFO", log_file: str | None = None, **kwargs: Any) -> MMLogger:
        """The logger instance ``name`` (default: the experiment's), appending to ``log_file``."""
        return builders.build_logger(self.experiment_name, self.log_dir, self.timestamp, log_level, log_file, **kwargs)

    def build_message_hub(self, message_hub: Mapping[str, Any] | None = None) -> MessageHub:
        """The message hub instance built from ``message_hub`` (default name: the experiment's)."""
        return builders.build_message_hub(message_hub, self.experiment_name)

    def build_visualizer(self, visualizer: Any = None) -> Any:
        """A visualizer as given, from a config, or the experiment's default (``LocalVisBackend``)."""
        return builders.build_visualizer(visualizer, self.experiment_name, self.log_dir)

    @classmethod
    def from_cfg(cls, cfg: Mapping[str, Any]) -> Runner:
        """Build a runner from a config mapping whose keys are the constructor's arguments."""
        cfg = copy.deepcopy(dict(cfg))
        if "model" not in cfg:
            raise KeyError(f"Runner.from_cfg: the config needs a `model`; got keys {sorted(cfg)}")
        kwargs = {key: cfg.get(key) for key in _FROM_CFG}
        return cls(
            model=cfg["model"],
            resume=cfg.get("resume", False),
            launcher=cfg.get("launcher", "none"),
            log_level=cfg.get("log_level", "INFO"),
            randomness=cfg.get("randomness", {"seed": None}),
            cfg=cfg,
            **kwargs,
        )

    # -- set-up helpers ------------------------------------------------------------------------
    def _set_randomness(self, seed: int | None) -> None:
        self._randomness_cfg["seed"] = seed
        #: Whether deterministic algorithms were requested, and the random seed in use.
        self.deterministic = bool(self._randomness_cfg.get("deterministic", False))
        self.seed = set_random_seed(
            seed, self.deterministic, bool(self._randomness_cfg.get("diff_rank_seed", False))
        )
        if hasattr(self, "_host"):
            self._host.run = attrs.evolve(self._host.run, meta={**self._host.run.meta, "seed": self.seed})

    def _planned_run(self, run: RunState) -> RunState:
        """``run`` as the configured train loop (built on first use) starts it: its length, and the
        training data's ``metainfo`` as ``meta['dataset_meta']``; unchanged without a loop."""
        loop = self.train_loop
        if loop is None:
            return run
        return run.replace(max_epochs=loop.max_epochs, max_iters=loop.max_iters, meta=self._parts.with_dataset_meta(run.meta))

    def _rebuild(self, part: str) -> Any:
        """``part`` (``'optim_wrapper'``/``'param_schedulers'``) built, as resuming needs it."""
        if part == "optim_wrapper":
            return self.build_optim_wrapper(self.optim_wrapper)
        return self.build_param_scheduler(self.param_schedulers)

    # -- running ---------------------------------------------------------------------------------
    def train(self) -> nn.Module:
        """Train (MMEngine's order: build, ``before_run``, ``init_weights``, load/resume, loop, ``after_run``).

        Returns:
            The model.

        Raises:
            MissingLoopError: the runner has no training components.
            TypeError: the model has no ``train_step`` (or no ``val_step`` with validation).
            WorkDirLockedError: another run is using the work dir.
        """
        with self._work_dir_lock.hold():
            return self._train()

    def _train(self) -> nn.Module:
        parts = self._parts
        model = parts.unwrapped()
        if parts.train_loop is None:
            raise MissingLoopError("train() needs train_dataloader, train_cfg and optim_wrapper given to the Runner (the train loop should not be None)")
        builders.check_steps(model, parts.val_loop is not None)
        loop: Any = self.build_train_loop(parts.train_loop)
        parts.train_loop = loop
        parts.optim_wrapper = self.build_optim_wrapper(parts.optim_wrapper)
        self.scale_lr(parts.optim_wrapper, self.auto_scale_lr)
        if parts.param_schedulers is not None:
            parts.param_schedulers = self.build_param_scheduler(parts.param_schedulers)
        by_iteration = any(not s.by_epoch for s in built_schedulers(parts.param_schedulers))
        meta = self._parts.with_dataset_meta({**self._host.run.meta, ITERATION_SCHEDULERS: by_iteration})
        self._host.run = self._host.run.replace(meta=meta)
        if parts.val_loop is not None:
            parts.val_loop = self.build_val_loop(parts.val_loop)
        bound_history(self.message_hub, self.log_processor, self._parts)
        self._host.follow_model(model)
        self.visualizer.add_config(self._settings)
        self._fire(Event.BEFORE_RUN)
        init_weights = getattr(model, "init_weights", None)
        if callable(init_weights):
            init_weights()
            for tensor in model.state_dict().values():
                dist.broadcast(tensor)
        self.load_or_resume()
        parts.optim_wrapper.initialize_count_status(self.model, self.iter, self.max_iters)
        if self._compile is not False:
            builders.compile_model(model, self._compile, self.logger)
        self._host.follow_model(model)
        # What the loop is handed: its step, its validation and where a resumed run stood.
        loop.train_step = runner_train_step(self.model, parts.optim_wrapper, loop.check_finite, self._compile is not False)
        loop.validate = parts.val_loop.run if parts.val_loop is not None else None
        loop.resume_point = self._resumer.take_resume_point()
        result: nn.Module = loop.run()
        self._fire(Event.AFTER_RUN)
        self.visualizer.close()
        return result

    def val(self) -> dict[str, Any]:
        """Validate (``before_run``, load/resume, the val loop, ``after_run``); returns metrics."""
        with self._work_dir_lock.hold():
            return self._evaluate("val")

    def test(self) -> dict[str, Any]:
        """Test (``before_run``, load/resume, the test loop, ``after_run``); returns metrics."""
        with self._work_dir_lock.hold():
            return self._evaluate("test")

    def _evaluate(self, mode: str) -> dict[str, Any]:
        if getattr(self._parts, f"{mode}_loop") is None:
            raise MissingLoopError(
                f"{mode}() needs {mode}_dataloader, {mode}_cfg and {mode}_evaluator given to the Runner "
                f"(the {mode} loop should not be None)"
            )
        loop = getattr(self, f"{mode}_loop")
        bound_history(self.message_hub, self.log_processor, self._parts)
        self._host.follow_model(self._parts.unwrapped())
        self._fire(Event.BEFORE_RUN)
        self.load_or_resume()
        metrics: dict[str, Any] = loop.run()
        self._fire(Event.AFTER_RUN)
        if mode == "test":  # not after val(): a hook may validate in the middle of training
            self.visualizer.close()
        return metrics

    # -- MMEngine's attributes ---------------------------------------------------------------------
    train_loop = LazyLoop("train")
    val_loop = LazyLoop("val")
    test_loop = LazyLoop("test")
    train_dataloader: Via[Any] = Via("train_loop", "dataloader", writable=False)
    val_dataloader: Via[Any] = Via("val_loop", "dataloader", writable=False)
    test_dataloader: Via[Any] = Via("test_loop", "dataloader", writable=False)
    val_evaluator: Via[Any] = Via("val_loop", "evaluator", writable=False)
    test_evaluator: Via[Any] = Via("test_loop", "evaluator", writable=False)
    val_interval: Via[int] = Via("train_loop", "val_interval", writable=False)
    val_begin: Via[int] = Via("train_loop", "val_begin", writable=False)
    #: The run's record (a new frozen :class:`~fengine.core.state.TrainState` after every
    #: iteration, whose ``params``/``buffers`` are the model's own tensors) and its counters.
    state: Via[TrainState[Any]] = Via("_host.run", "state", writable=False)
    epoch: Via[int] = Via("_host.run", "epoch", writable=False)
    iter: Via[int] = Via("_host.run", "iter", writable=False)
    max_epochs: Via[int] = Via("_host.run", "max_epochs", writable=False)
    max_iters: Via[int] = Via("_host.run", "max_iters", writable=False)
