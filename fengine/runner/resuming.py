"""The runner's loading side: ``load_checkpoint``, ``resume`` and ``load_or_resume``.

Loading a checkpoint runs ``after_load_checkpoint`` hooks before its weights are applied (MMEngine's
order). Resuming restores everything :mod:`fengine.runner.checkpointing` saved: counters, message
hub, optimizer, schedulers, accumulated gradients, every hook's state (strictly unless told
otherwise), and hands the generators' states and the
data position to the train loop, which restores them where the saved run stood.
"""

from __future__ import annotations

import logging
import os
import pickle
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import torch

from fengine.core.events import Event
from fengine.core.state import RngState
from fengine.hooks.checkpoint_plan import CheckpointPlan
from fengine.hooks.checkpoint_state import CheckpointState
from fengine.runner.checkpoint import (
    CheckpointError,
    apply_state_dict,
    revise_keys_of,
)
from fengine.runner.checkpointing import Checkpointer, restore_grads
from fengine.runner.hook_host import HookHost, current_hook_name
from fengine.runner.parts import Parts
from fengine.runner.resume_checks import counter_problem, optimizer_mismatch, weights_mismatch
from fengine.runner.resume_selection import select_resume_checkpoint
from fengine.runner.sharded_checkpoint import (
    latest_sharded_checkpoint,
    read_checkpoint_or_directory,
)

_LENIENT = "resume with Runner(..., resume=dict(strict=False)) to load what fits, as MMEngine does"


class Resumer:
    """Loading and resuming (MMEngine's ``Runner`` methods of the same names).

    Args:
        host: the hook host (the run's record, the hooks).
        parts: the run's components.
        checkpointer: the run's checkpointer (its folders are where resuming looks).
        message_hub: the run's message hub (restored from the checkpoint).
        logger: where warnings and progress go.
        work_dir: the run's folder.
        rebuild: builds a component from its config again (``'optim_wrapper'``,
            ``'param_schedulers'``), as MMEngine builds them before loading their states.
        reseed: seeds the run again (``None``: the configured seed), when a checkpoint's differs.
        configured_seed: the seed the run was configured with (``None`` for a random one).
        load_from: ``Runner(load_from=...)``.
        resume: ``Runner(resume=...)`` (a bool).
        strict: ``Runner(resume=dict(strict=...))``.
    """

    def __init__(
        self,
        host: HookHost,
        parts: Parts,
        checkpointer: Checkpointer,
        message_hub: Any,
        logger: logging.Logger,
        work_dir: str,
        rebuild: Callable[[str], Any],
        reseed: Callable[[int | None], None],
        configured_seed: Callable[[], int | None],
        load_from: str | None,
        resume: bool,
        strict: bool,
    ) -> None:
        self._host, self._parts, self._checkpointer = host, parts, checkpointer
        self._message_hub, self._logger, self._work_dir = message_hub, logger, work_dir
        self._rebuild, self._reseed, self._configured_seed = rebuild, reseed, configured_seed
        self._load_from, self._resume = load_from, resume
        #: Whether resuming requires the checkpoint to fit the run (weights, optimizer, counters).
        self.resume_strict = strict
        #: Whether resuming requires the checkpoint's hook states to match the registered hooks.
        self.strict_hook_states = True
        #: Whether a checkpoint was loaded or resumed (``load_or_resume`` acts once).
        self.has_loaded = False
        self._resume_point: dict[str, Any] | None = None

    def load_checkpoint(
        self,
        filename: str,
        map_location: Any = "cpu",
        strict: bool = False,
        revise_keys: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any]:
        """Load ``filename``'s weights into the model (MMEngine's ``Runner.load_checkpoint``).

        ``after_load_checkpoint`` hooks see (and may edit) the checkpoint before the weights
        are applied. Counters, optimizer, schedulers and message hub are left alone.

        Args:
            filename: the checkpoint file.
            map_location: as ``torch.load``'s.
            strict: keys and shapes must match exactly (else mismatches are logged and
                mismatched shapes skipped).
            revise_keys: ``(pattern, replacement)`` regexes for weight names; default strips a
                leading ``module.``.

        Returns:
            The checkpoint dict.

        Raises:
            CheckpointError: a missing, unreadable or damaged file, or a strict mismatch.
            UntrustedCheckpointError: the file names a type that is not registered.
        """
        checkpoint = read_checkpoint_or_directory(filename, map_location, self._parts.unwrapped())
        self._apply_checkpoint(checkpoint, filename, strict, revise_keys)
        return checkpoint

    def _apply_checkpoint(
        self,
        checkpoint: dict[str, Any],
        filename: str,
        strict: bool = False,
        revise_keys: Any = None,
        resume_strict: bool | None = None,
    ) -> None:
        self._host.open_checkpoints.append(checkpoint)
        try:
            self._host.fire(Event.AFTER_LOAD_CHECKPOINT, checkpoint=checkpoint)
        finally:
            self._host.open_checkpoints.pop()
        state_dict = checkpoint.get("state_dict", checkpoint)
        rules = [(r"^module\.", "")] if revise_keys is None else revise_keys
        revised = revise_keys_of(state_dict, rules)
        if resume_strict:
            self._check_weights(revised, filename)
        apply_state_dict(self._parts.unwrapped(), revised, strict, filename, self._logger.warning, bool(resume_strict))
        self.has_loaded = True
        self._logger.info(f"Load checkpoint from {filename}")

    def resume(
        self,
        filename: str,
        resume_optimizer: bool = True,
        resume_param_scheduler: bool = True,
        map_location: Any = "default",
        strict_hook_states: bool | None = None,
        strict: bool | None = None,
    ) -> None:
        """Continue the run saved in ``filename`` (MMEngine's ``Runner.resume``).

        Loads the weights (running ``after_load_checkpoint`` hooks first), the counters from
        ``meta``, the message hub, the optimizer and scheduler states, gradients accumulated
        in an unfinished accumulation group, and each hook's state. The generators' states and
        the data position are kept for the train loop, which restores them where the saved run
        stood. A seed that differs from the configured one is replaced by the checkpoint's, as
        in MMEngine. MMEngine's own checkpoints resume too (without hook states, generators or
        data position, which they do not hold).

        Args:
            filename: the checkpoint file.
            resume_optimizer: restore the optimizer state.
            resume_param_scheduler: restore the schedulers' states.
            map_location: as ``torch.load``'s; ``'default'`` is CUDA when available, else CPU.
            strict_hook_states: a stateful registered hook missing from the checkpoint, or a
                saved state of a hook that is not registered, is an error (else a warning, and
                such hooks start afresh); default ``runner.strict_hook_states`` (``True``).
            strict: the checkpoint must fit the run: the model's parameter names and shapes,
                the optimizer's parameter groups (sizes, state shapes and dtypes), and counters
                consistent with the train loop (``max_epochs``/``max_iters``, the dataloader
                length); else mismatches are reported, weights that fit are loaded and an
                optimizer state that does not fit is left out (MMEngine's lenient loading).
                Default ``runner.resume_strict``: ``True`` unless the Runner was built with
                ``resume=dict(strict=False)``. Counters that are not non-negative ints are
                always an error.

        Raises:
            CheckpointError: an unreadable or damaged file, a file without valid ``meta``
                counters, or (strictly) weights, optimizer state or counters that do not fit
                the run, or hook states that do not match the registered hooks; the first
                mismatches are named, and nothing has been trained.
            UntrustedCheckpointError: the file names a type that is not registered.
        """
        device = ("cuda" if torch.cuda.is_available() else "cpu") if map_location == "default" else map_location
        optimizer = self._parts.optim_wrapper if resume_optimizer and callable(getattr(self._parts.optim_wrapper, "state_dict", None)) else None
        checkpoint = read_checkpoint_or_directory(filename, device, self._parts.unwrapped(), optimizer)
        self._resume_from(checkpoint, filename, resume_optimizer, resume_param_scheduler, strict_hook_states, strict)

    def _resume_from(
        self,
        checkpoint: dict[str, Any],
        filename: str,
        resume_optimizer: bool = True,
        resume_param_scheduler: bool = True,
        strict_hook_states: bool | None = None,
        strict: bool | None = None,
    ) -> None:
        meta = checkpoint.get("meta")
        if not isinstance(meta, Mapping) or "epoch" not in meta or "iter" not in meta:
            raise CheckpointError(f"cannot resume from {filename!r}: its `meta` has no `epoch`/`iter` counters")
        fit = self.resume_strict if strict is None else strict
        self._check_counters(meta, filename, fit)
        self._host.run = attrs.evolve(self._host.run, resumed=True)
        self._apply_checkpoint(checkpoint, filename, resume_strict=fit)
        step: Any = checkpoint.get("step", meta["iter"])
        self._host.run = self._host.run.replace(
            state=self._host.run.state.replace(epoch=int(meta["epoch"]), iter=int(meta["iter"]), step=int(step))
        )
        saved_seed, configured = meta.get("seed"), self._configured_seed()
        if saved_seed is not None and saved_seed != configured:
            if configured is not None:
                self._logger.warning(
                    f'The value of random seed in the checkpoint "{saved_seed}" is different from '
                    f'the value in `randomness` config "{configured}"'
                )
            self._reseed(saved_seed)
        if pickle.dumps(meta.get("dataset_meta")) != pickle.dumps(self._parts.train_dataset_meta()):
            self._logger.warning(
                "The dataset metainfo from the resumed checkpoint is different from the current "
                "training dataset, please check the correctness of the checkpoint or the training dataset."
            )
        if "message_hub" in checkpoint:
            self._message_hub.load_state_dict(checkpoint["message_hub"])
        if "optimizer" in checkpoint and resume_optimizer:
            self._parts.optim_wrapper = self._rebuild("optim_wrapper")
            if self._optimizer_fits(checkpoint["optimizer"], filename, fit):
                self._parts.optim_wrapper.load_state_dict(checkpoint["optimizer"])
        if resume_param_scheduler and self._parts.param_schedulers is None:
            self._logger.warning(
                "`resume_param_scheduler` is True but `runner.param_schedulers` is None, so "
                "parameter schedulers are not resumed"
            )
        elif "param_schedulers" in checkpoint and resume_param_scheduler:
            self._parts.param_schedulers = self._rebuild("param_schedulers")
            _load_schedulers(self._parts.param_schedulers, checkpoint["param_schedulers"], filename, self._logger.info)
        restore_grads(self._parts.unwrapped(), checkpoint.get("grads"), filename)
        strict = self.strict_hook_states if strict_hook_states is None else strict_hook_states
        self._restore_hook_states(checkpoint, filename, strict)
        self._confine_checkpoint_records(filename)
        self._resume_point = {"rng": checkpoint.get("rng"), "data_position": checkpoint.get("data_position")}
        self.has_loaded = True
        self._logger.info(f"resumed epoch: {self._host.run.epoch}, iter: {self._host.run.iter}")

    # -- what a resumed checkpoint must satisfy (fengine.runner.resume_checks) ----------------------
    def _check_counters(self, meta: Mapping[str, Any], filename: str, strict: bool) -> None:
        invalid, inconsistent = counter_problem(meta, self._parts.train_loop)
        if invalid is not None:
            raise CheckpointError(f"cannot resume from {filename!r}: {invalid}")
        if inconsistent is None:
            return
        message = f"{filename!r} does not fit the configured training: {inconsistent}"
        if strict:
            raise CheckpointError(f"cannot resume: {message}; fix the config, or {_LENIENT}")
        self._logger.warning(f"{message}; resuming anyway (strict=False)")

    def _check_weights(self, state_dict: Mapping[str, Any], filename: str) -> None:
        problem = weights_mismatch(self._parts.unwrapped(), state_dict)
        if problem is not None:
            raise CheckpointError(
                f"cannot resume from {filename!r}: its weights do not fit {type(self._parts.unwrapped()).__name__} "
                f"({problem}); resume the model that saved it, load its weights with load_from, or {_LENIENT}"
            )

    def _optimizer_fits(self, saved: Any, filename: str, strict: bool) -> bool:
        problem = optimizer_mismatch(self._parts.optim_wrapper, saved)
        if problem is None:
            return True
        message = f"the optimizer state in {filename!r} does not fit the configured optimizer: {problem}"
        if strict:
            raise CheckpointError(f"cannot resume: {message}; configure the optimizer that saved it, or {_LENIENT}")
        self._logger.warning(f"{message}; the optimizer starts afresh (strict=False)")
        return False

    def _confine_checkpoint_records(self, filename: str) -> None:
        # Paths restored into CheckpointHook states (best and last checkpoints, kept steps) are
        # data from the file: those that are not this run's own checkpoints are dropped now, so
        # nothing outside the run's folders is ever deleted or overwritten because of them.
        states = self._host.hook_states()
        mark = len(self._host.event_end)
        for hook, fn in zip(self._host.hook_list, self._host.fn_hooks):
            plan, state = getattr(hook, "plan", None), states.get(fn.name)
            if not isinstance(plan, CheckpointPlan) or not isinstance(state, CheckpointState):
                continue
            confined, effects = plan.confine(self._host.run, state, filename, os.path.realpath)
            if effects:
                run = self._host.run.replace(hook_states={**self._host.run.hook_states, fn.name: confined})
                self._host.end_event(self._host.carry_out(run.emit(*effects)), mark)

    def _restore_hook_states(self, checkpoint: Mapping[str, Any], filename: str, strict: bool) -> None:
        # ``hooks``: the key of checkpoints written before the record's field was ``hook_states``.
        found = checkpoint.get("hook_states", checkpoint.get("hooks"))
        current = self._host.hook_states()
        if found is None:
            if any(state is not None for state in current.values()):
                self._logger.warning(f"{filename!r} holds no hook states; hooks start from their initial states")
            return
        saved = {current_hook_name(name): state for name, state in found.items()}
        missing = [n for n, s in current.items() if s is not None and n not in saved]
        unknown = [n for n, s in saved.items() if s is not None and n not in current]
        if missing or unknown:
            message = (
                f"hook states in {filename!r} do not match the registered hooks: missing {missing}, "
                f"unknown {unknown}"
            )
            if strict:
                raise CheckpointError(
                    f"{message}; register the same hooks as the run that saved it, or resume with "
                    "strict_hook_states=False to start those hooks afresh"
                )
            self._logger.warning(f"{message}; the missing hooks start from their initial states, the unknown states are ignored")
        states = {n: s for n, s in saved.items() if n in current}
        self._host.run = self._host.run.replace(hook_states={**self._host.run.hook_states, **states})

    def load_or_resume(self) -> None:
        """Resume or load weights as configured, once (``resume``/``load_from``, MMEngine's rules).

        ``resume=True`` without ``load_from`` resumes from the newest intact checkpoint of the
        work dir (:func:`~fengine.runner.resume_selection.select_resume_checkpoint`: the one
        ``last_checkpoint`` names, else the newest by its counters, passing over damaged files
        with a warning); without one, training starts afresh. ``resume=True, load_from=path``
        resumes from ``path``; ``load_from`` alone loads weights only.
        """
        if self.has_loaded:
            return
        sharded = latest_sharded_checkpoint(self._work_dir) if self._resume else None
        if sharded is not None and self._load_from is None:
            self.resume(sharded)
        elif self._resume and self._load_from is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
            found = select_resume_checkpoint(
                self._work_dir, self._logger.warning, device,
                folders=self._checkpointer.folders(),
            )
            if found is None:
                self._logger.info(f"no checkpoint to resume from in {self._work_dir}; training starts from the beginning")
                return
            path, checkpoint = found
            self._logger.info(f"Auto resumed from the latest checkpoint {path}.")
            self._resume_from(checkpoint, path)
        elif self._resume:
            self.resume(str(self._load_from))
        elif self._load_from is not None:
            self.load_checkpoint(self._load_from)

    def take_resume_point(self) -> tuple[RngState | None, Mapping[str, Any] | None]:
        """The saved generators and data position, handed to the train loop once."""
        point, self._resume_point = self._resume_point, None
        if point is None:
            return None, None
        return point.get("rng"), point.get("data_position")


def _load_schedulers(schedulers: Any, states: Any, filename: str, log: Callable[[str], None]) -> None:
    """Continue the configured schedulers from the saved ones' counters.

    Schedules are pure functions of their counters, so each configured scheduler keeps its own
    hyper-parameters and window (a run extended from ``max_epochs=2`` to 4 follows the new
    schedule) and takes only the counters, and what it accumulates, from the checkpoint
    (:meth:`~fengine.optim.scheduler.base._ParamScheduler.resume_state_dict`); ``log`` gets one
    line per hyper-parameter whose saved value differs.
    """
    groups = schedulers.items() if isinstance(schedulers, Mapping) else [(None, schedulers)]
    for name, group in groups:
        saved = states[name] if name is not None else states
        where = "" if name is None else f" for optimizer {name!r}"
        if len(saved) != len(group):
            raise CheckpointError(
                f"{filename!r} holds {len(saved)} parameter scheduler states{where} but "
                f"{len(group)} schedulers are configured"
            )
        for index, (scheduler, state) in enumerate(zip(group, saved)):
            for key, old, new in scheduler.resume_state_dict(state):
                log(
                    f"param_scheduler[{index}]{where} ({type(scheduler).__name__}): {key} is "
                    f"{new!r} in the config and was {old!r} in {filename!r}; the config's value is used"
                )
