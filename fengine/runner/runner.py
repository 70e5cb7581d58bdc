"""``Runner``: MMEngine's runner API as the imperative shell over fengine's run state and hooks.

The run's state (counters, hook states, ...) lives in one :class:`~fengine.core.run.RunState`
cell; loops evolve it, hooks see it, the effects interpreter carries out what hooks ask for.
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
import time
from collections.abc import Mapping
from typing import Any

import attrs
import torch
from torch import nn

from fengine import dist
from fengine.config_source import given_arguments, write_config_copy
from fengine.core.events import Event
from fengine.core.run import RunState
from fengine.core.state import TrainState
from fengine.hooks.param_scheduler_hook import ITERATION_SCHEDULERS
from fengine.logging import MessageHub, MMLogger
from fengine.registry import RUNNERS, VISUALIZERS, init_default_scope
from fengine.runner import config_checks as checks
from fengine.runner.base_loop import BaseLoop
from fengine.runner.builders import BuildMixin
from fengine.runner.distributed import check_launch_settings, setup_process_group
from fengine.runner.history_bound import history_length
from fengine.runner.interpreter import EffectInterpreter, built_schedulers
from fengine.runner.profiler import ProfilerSession
from fengine.runner.randomness import set_random_seed
from fengine.runner.resume_checks import resume_setting
from fengine.runner.train_step import runner_train_step
from fengine.runner.work_dir_lock import WorkDirLock
from fengine.utils.fileio import remove_stale_temporaries
from fengine.visualization import Visualizer

_RANDOMNESS_KEYS = ("seed", "deterministic", "diff_rank_seed")
_FROM_CFG = (
    "train_dataloader", "val_dataloader", "test_dataloader", "train_cfg", "val_cfg", "test_cfg",
    "auto_scale_lr", "optim_wrapper", "param_scheduler", "val_evaluator", "test_evaluator",
    "default_hooks", "custom_hooks", "data_preprocessor", "load_from", "visualizer", "log_processor",
    "experiment_name", "work_dir", "env_cfg", "default_scope",
)


class MissingLoopError(ValueError, RuntimeError):
    """``train``/``val``/``test`` called on a runner built without that stage's components."""


@RUNNERS.register_module()
class Runner(BuildMixin, EffectInterpreter):
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
        checks.check_together("training", train_dataloader=train_dataloader, train_cfg=train_cfg, optim_wrapper=optim_wrapper)
        checks.check_together("validation", val_dataloader=val_dataloader, val_cfg=val_cfg, val_evaluator=val_evaluator)
        checks.check_together("testing", test_dataloader=test_dataloader, test_cfg=test_cfg, test_evaluator=test_evaluator)
        if param_scheduler is not None and optim_wrapper is None:
            raise ValueError(f"param_scheduler should be None when optim_wrapper is None, but got {param_scheduler!r}")
        checks.check_work_dir(work_dir)
        checks.check_model(model, data_preprocessor)
        checks.check_train_cfg(train_cfg)
        for name, loader in (("train_dataloader", train_dataloader), ("val_dataloader", val_dataloader), ("test_dataloader", test_dataloader)):
            checks.check_dataloader(loader, name)
        checks.check_evaluator(val_evaluator, "val_evaluator")
        checks.check_evaluator(test_evaluator, "test_evaluator")
        checks.check_optim_wrapper(optim_wrapper)
        checks.check_param_scheduler(param_scheduler)
        randomness = {"seed": None} if randomness is None else dict(randomness)
        unknown = sorted(set(randomness) - set(_RANDOMNESS_KEYS))
        if unknown:
            raise ValueError(f"randomness: unknown keys {unknown}; accepted: {', '.join(_RANDOMNESS_KEYS)}")
        check_launch_settings(launcher, env_cfg, (cfg or {}).get("sync_bn"))
        resume, resume_strict = resume_setting(resume)
        compile = (cfg or {}).get("compile", False) if compile is None else compile
        if not isinstance(compile, bool | Mapping):
            raise TypeError(
                f"compile must be a bool or a dict of torch.compile options (e.g. "
                f"dict(backend='inductor')), got {compile!r}"
            )

        self.cfg: dict[str, Any] = copy.deepcopy(dict(cfg)) if cfg is not None else {}
        self._cfg_text = pprint.pformat(self.cfg, sort_dicts=False) if self.cfg else ""
        self._train_dataloader, self._val_dataloader, self._test_dataloader = train_dataloader, val_dataloader, test_dataloader
        self._train_loop: Any = train_cfg
        self._val_loop: Any = val_cfg
        self._test_loop: Any = test_cfg
        self._val_evaluator, self._test_evaluator = val_evaluator, test_evaluator
        self.optim_wrapper = optim_wrapper
        self.param_schedulers = param_scheduler
        self.auto_scale_lr = auto_scale_lr
        self._launcher = launcher
        self.distributed = launcher != "none"
        env = dict(env_cfg) if env_cfg is not None else {"dist_cfg": {"backend": "nccl"}}
        if env.get("cudnn_benchmark"):
            torch.backends.cudnn.benchmark = True
        setup_process_group(launcher, env)
        self.rank, self.world_size = dist.get_dist_info()
        stamp = torch.tensor(time.time(), dtype=torch.float64)
        dist.broadcast(stamp)
        self.timestamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(stamp.item()))
        self._randomness_cfg = randomness
        self._compile = compile
        self._set_randomness(randomness.get("seed"))

        self.work_dir = os.path.abspath(work_dir if work_dir is not None else self._fresh_work_dir())
        os.makedirs(self.work_dir, exist_ok=True)
        stale = remove_stale_temporaries(self.work_dir) if self.rank == 0 else []
        self._work_dir_lock = WorkDirLock(self.work_dir, self.rank)
        base = f"{experiment_name}_{self.timestamp}" if experiment_name is not None else self.timestamp
        name, n = base, 1
        while MessageHub.check_instance_created(name):  # another runner in this process, same second
            n += 1
            name = f"{base}_{n}"
        self.experiment_name = name
        self.log_dir = os.path.join(self.work_dir, self.timestamp)
        os.makedirs(self.log_dir, exist_ok=True)
        self.default_scope = default_scope
        self.log_processor = self.build_log_processor({} if log_processor is None else log_processor)
        self.logger: logging.Logger = MMLogger.get_instance(
            name=self.experiment_name,
            log_file=os.path.join(self.log_dir, f"{self.timestamp}.log"),
            log_level=log_level,
            file_mode="a",
        )
        self.message_hub = MessageHub.get_instance(self.experiment_name)
        if stale:
            self.logger.info(f"removed temporary files of interrupted writes: {stale}")
        self.visualizer = self._build_visualizer(visualizer)

        self._load_from, self._resume, self._has_loaded = load_from, resume, False
        self.resume_strict = resume_strict
        if isinstance(model, Mapping) and data_preprocessor is not None:
            model = {"data_preprocessor": data_preprocessor, **model}
        self.model = self.wrap_model(self.cfg.get("model_wrapper_cfg"), self.build_model(model))
        self.model_name = type(self._unwrapped()).__name__
        self._open_checkpoints = []
        self._saved_files = set()
        self._resume_point = None
        self._profiler = ProfilerSession(self.log_dir, self.logger)
        self._tensorboard = None
        self._init_hook_host(
            RunState(
                work_dir=self.work_dir,
                log_dir=self.log_dir,
                rank=self.rank,
                world_size=self.world_size,
                meta={"experiment_name": self.experiment_name, "seed": self.seed, "cfg": self._cfg_text},
                resumed=resume,
            )
        )
        self._refresh_model_refs()
        self.register_hooks(default_hooks, custom_hooks)
        self.logger.info(f"Hooks will be executed in the following order:\n{self.get_hooks_info()}")
        self._settings = self.cfg or given_arguments(Runner.__init__, locals())
        write_config_copy(self.work_dir, self.timestamp, self._settings, self.rank)

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
    def _fresh_work_dir(self) -> str:
        base = os.path.join("work_dirs", self.timestamp)
        path, n = base, 1
        while os.path.exists(path) and not self.distributed:
            n += 1
            path = f"{base}_{n}"
        return path

    def _set_randomness(self, seed: int | None) -> None:
        self._randomness_cfg["seed"] = seed
        self._deterministic = bool(self._randomness_cfg.get("deterministic", False))
        self._seed = set_random_seed(
            seed, self._deterministic, bool(self._randomness_cfg.get("diff_rank_seed", False))
        )
        if hasattr(self, "_run"):
            self._run = attrs.evolve(self._run, meta={**self._run.meta, "seed": self._seed})

    def _build_visualizer(self, visualizer: Any) -> Any:
        if visualizer is None:
            return Visualizer.get_instance(
                name=self.experiment_name, vis_backends=[{"type": "LocalVisBackend"}], save_dir=self.log_dir
            )
        if isinstance(visualizer, Mapping):
            return VISUALIZERS.build({"name": self.experiment_name, "save_dir": self.log_dir, **visualizer})
        return visualizer

    def _refresh_model_refs(self) -> None:
        model = self._unwrapped()
        names = {name for name, _ in model.named_parameters()}
        tensors = model.state_dict(keep_vars=True)
        self._run = self._run.replace(
            params={k: v for k, v in tensors.items() if k in names},
            buffers={k: v for k, v in tensors.items() if k not in names},
        )

    def _set_dataloader_len(self, mode: str, length: int) -> None:
        self._run = attrs.evolve(self._run, dataloader_len={**self._run.dataloader_len, mode: length})

    def _train_dataset_meta(self) -> Any:
        loop = self._train_loop
        dataset = getattr(getattr(loop, "dataloader", None), "dataset", None) if isinstance(loop, BaseLoop) else None
        return getattr(dataset, "metainfo", None)

    def _maybe_compile(self) -> None:
        """Put the model's forward under ``torch.compile`` when ``compile``/``cfg.compile`` asks.

        The module's ``__call__`` is compiled (``nn.Module.compile``), so the forward pass and
        the loss of ``train_step`` run as compiled graphs whose backward is compiled with them;
        the optimizer step and the hooks stay eager. Numbers match eager training to rounding.
        """
        if self._compile is False:
            return
        options = dict(self._compile) if isinstance(self._compile, Mapping) else {}
        self._unwrapped().compile(**options)
        self.logger.info('Model has been "compiled". The first few iterations will be slow, please be patient.')

    def _bound_history(self) -> None:
        """Keep as many message-hub records per key as the log windows read (history_bound)."""
        length = history_length(self.log_processor, self._train_loop, self._val_loop, self._test_loop)
        self.message_hub.set_history_length(length)

    def _build_optim_wrapper(self) -> Any:
        return self.build_optim_wrapper(self.optim_wrapper)

    def _build_param_schedulers(self) -> Any:
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
        model = self._unwrapped()
        if self._train_loop is None:
            raise MissingLoopError("train() needs train_dataloader, train_cfg and optim_wrapper given to the Runner (the train loop should not be None)")
        for method, needed in (("train_step", True), ("val_step", self._val_loop is not None)):
            if needed and not callable(getattr(model, method, None)):
                raise TypeError(f"{type(model).__name__} has no `{method}`; train() needs it")
        self._train_loop = self.build_train_loop(self._train_loop)
        self.optim_wrapper = self.build_optim_wrapper(self.optim_wrapper)
        self.scale_lr(self.optim_wrapper, self.auto_scale_lr)
        if self.param_schedulers is not None:
            self.param_schedulers = self.build_param_scheduler(self.param_schedulers)
        by_iteration = any(not s.by_epoch for s in built_schedulers(self.param_schedulers))
        self._run = self._run.replace(meta={**self._run.meta, ITERATION_SCHEDULERS: by_iteration})
        if self._val_loop is not None:
            self._val_loop = self.build_val_loop(self._val_loop)
        self._bound_history()
        self._refresh_model_refs()
        dataset_meta = self._train_dataset_meta()
        if dataset_meta is not None:
            self._run = attrs.evolve(self._run, meta={**self._run.meta, "dataset_meta": dataset_meta})
        self.visualizer.add_config(self._settings)
        self._fire(Event.BEFORE_RUN)
        init_weights = getattr(model, "init_weights", None)
        if callable(init_weights):
            init_weights()
            for tensor in model.state_dict().values():
                dist.broadcast(tensor)
        self.load_or_resume()
        self.optim_wrapper.initialize_count_status(self.model, self.iter, self.max_iters)
        self._maybe_compile()
        self._refresh_model_refs()
        loop = self._train_loop
        loop.train_step = runner_train_step(self.model, self.optim_wrapper, loop.check_finite, self._compile is not False)
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
        if getattr(self, f"_{mode}_loop") is None:
            raise MissingLoopError(
                f"{mode}() needs {mode}_dataloader, {mode}_cfg and {mode}_evaluator given to the Runner "
                f"(the {mode} loop should not be None)"
            )
        loop = getattr(self, f"{mode}_loop")
        self._bound_history()
        self._refresh_model_refs()
        self._fire(Event.BEFORE_RUN)
        self.load_or_resume()
        metrics: dict[str, Any] = loop.run()
        self._fire(Event.AFTER_RUN)
        if mode == "test":  # not after val(): a hook may validate in the middle of training
            self.visualizer.close()
        return metrics

    # -- MMEngine's attributes ---------------------------------------------------------------------
    @property
    def train_loop(self) -> Any:
        """The train loop (built on first access), or ``None`` without training components."""
        if self._train_loop is not None and not isinstance(self._train_loop, BaseLoop):
            self._train_loop = self.build_train_loop(self._train_loop)
        return self._train_loop

    @property
    def val_loop(self) -> Any:
        """The validation loop (built on first access), or ``None``."""
        if self._val_loop is not None and not isinstance(self._val_loop, BaseLoop):
            self._val_loop = self.build_val_loop(self._val_loop)
        return self._val_loop

    @property
    def test_loop(self) -> Any:
        """The test loop (built on first access), or ``None``."""
        if self._test_loop is not None and not isinstance(self._test_loop, BaseLoop):
            self._test_loop = self.build_test_loop(self._test_loop)
        return self._test_loop

    @property
    def train_dataloader(self) -> Any:
        """The train loop's dataloader."""
        return self.train_loop.dataloader

    @property
    def val_dataloader(self) -> Any:
        """The validation loop's dataloader."""
        return self.val_loop.dataloader

    @property
    def test_dataloader(self) -> Any:
        """The test loop's dataloader."""
        return self.test_loop.dataloader

    @property
    def val_evaluator(self) -> Any:
        """The validation loop's evaluator."""
        return self.val_loop.evaluator

    @property
    def test_evaluator(self) -> Any:
        """The test loop's evaluator."""
        return self.test_loop.evaluator

    @property
    def state(self) -> TrainState[Any]:
        """The run's record: the model's tensors, optimizer state, counters and hook states.

        A new frozen :class:`~fengine.core.state.TrainState` after every iteration; its
        ``params``/``buffers`` are the model's own tensors (``state_dict`` names).
        """
        return self._run.state

    @property
    def epoch(self) -> int:
        """Completed training epochs."""
        return int(self._run.epoch)

    @property
    def iter(self) -> int:
        """Completed training iterations."""
        return int(self._run.iter)

    @property
    def max_epochs(self) -> int:
        """Total training epochs (0 without a train loop)."""
        return int(self._run.max_epochs)

    @property
    def max_iters(self) -> int:
        """Total training iterations (0 without a train loop)."""
        return int(self._run.max_iters)

    @property
    def seed(self) -> int:
        """The random seed in use."""
        return self._seed

    @property
    def deterministic(self) -> bool:
        """Whether deterministic algorithms were requested."""
        return self._deterministic

    @property
    def launcher(self) -> str:
        """The launcher (``'none'`` or ``'pytorch'``)."""
        return self._launcher

    @property
    def val_interval(self) -> int:
        """The train loop's current validation interval."""
        return int(self.train_loop.val_interval)

    @property
    def val_begin(self) -> int:
        """The first epoch/iteration that may validate."""
        return int(self.train_loop.val_begin)
