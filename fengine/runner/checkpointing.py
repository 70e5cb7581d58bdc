"""The runner's checkpoint side: save, load weights, resume, and ``load_or_resume``.

What a checkpoint holds (MMEngine's keys first, in MMEngine's order, then fengine's):

* ``meta``: ``epoch``/``iter`` (the counters a resumed run starts from), ``cfg``, ``seed``,
  ``experiment_name``, ``time``, ``fengine_version``, ``dataset_meta`` and ``checksum``;
* ``state_dict`` (weights, on CPU), ``message_hub``, ``optimizer``, ``param_schedulers``, and what
  ``before_save_checkpoint`` hooks add (``ema_state_dict``);
* ``hooks``: every hook's state by name; ``rng``: the global generators; ``data_position``:
  ``epoch``, ``iter``, ``inner_iter`` (batches of the current epoch already trained), ``phase``
  (``'train'``, or ``'val'`` when saved during validation), ``by_epoch``, the generators' states
  when the epoch's data iterator was created (``epoch_start_rng``) and the sampler's ``seed`` and
  ``epoch``.

A save requested by a hook (the ``SaveCheckpoint`` effect) collects weights, optimizer and
schedulers at once and runs ``before_save_checkpoint`` (so MMEngine's call order holds), but
writes at the end of the event being dispatched, with the message hub, hook states, generators
and data position as they stand after every hook of that event: the point a resumed run continues
from.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections.abc import Mapping
from typing import Any

import attrs
import torch

import fengine
from fengine.core.effects import SaveCheckpoint
from fengine.core.events import Event
from fengine.core.plain import from_plain, to_plain
from fengine.core.state import RngState
from fengine.model.wrappers import is_model_wrapper
from fengine.optim.scheduler.base import _ParamScheduler
from fengine.runner.checkpoint import (
    CheckpointError,
    apply_state_dict,
    find_latest_checkpoint,
    read_checkpoint,
    revise_keys_of,
    save_checkpoint,
    write_last_checkpoint,
)
from fengine.runner.hook_host import HookHostMixin

_SAVE_EXTRA = frozenset(("file_client_args", "backend_args"))


def _to_cpu(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu()
    if isinstance(value, Mapping):
        return {k: _to_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v) for v in value)
    return value


def scheduler_states(schedulers: Any) -> list[dict[str, Any]] | dict[str, list[dict[str, Any]]]:
    """The state dicts of a scheduler list, or of a dict of lists (several optimizers)."""
    if isinstance(schedulers, Mapping):
        return {name: [s.state_dict() for s in group] for name, group in schedulers.items()}
    return [s.state_dict() for s in schedulers]


class CheckpointMixin(HookHostMixin):
    """Saving, loading and resuming (MMEngine's ``Runner`` methods of the same names)."""

    model: torch.nn.Module
    optim_wrapper: Any
    param_schedulers: Any
    message_hub: Any
    logger: logging.Logger
    _open_checkpoints: list[dict[str, Any]]
    _resume_point: dict[str, Any] | None
    _has_loaded: bool
    _load_from: str | None
    _resume: bool
    _randomness_cfg: dict[str, Any]
    checkpoint_weights_only: bool

    # Provided by the Runner.
    work_dir: Any
    rank: Any
    seed: Any
    experiment_name: Any
    _train_loop: Any
    _cfg_text: str

    def _unwrapped(self) -> torch.nn.Module:
        inner: torch.nn.Module = self.model.module if is_model_wrapper(self.model) else self.model  # type: ignore[assignment]
        return inner

    def _build_optim_wrapper(self) -> Any:
        raise NotImplementedError

    def _build_param_schedulers(self) -> Any:
        raise NotImplementedError

    def _set_randomness(self, seed: int | None) -> None:
        raise NotImplementedError

    def _train_dataset_meta(self) -> Any:
        raise NotImplementedError

    # -- saving --------------------------------------------------------------------------------
    def save_checkpoint(
        self,
        out_dir: str,
        filename: str,
        file_client_args: dict[str, Any] | None = None,
        save_optimizer: bool = True,
        save_param_scheduler: bool = True,
        meta: dict[str, Any] | None = None,
        by_epoch: bool = True,
        backend_args: dict[str, Any] | None = None,
    ) -> None:
        """Write a checkpoint of the run to ``out_dir/filename`` (rank 0 only), atomically.

        ``meta`` gets ``epoch = runner.epoch + 1, iter = runner.iter`` (``by_epoch``) or
        ``epoch = runner.epoch, iter = runner.iter + 1`` unless it has them.

        Raises:
            TypeError: ``meta`` is not a dict, or the optimizer wrapper is not built.
            ValueError: both ``file_client_args`` and ``backend_args``, or a non-local backend.
        """
        path = _checkpoint_path(out_dir, filename, file_client_args, backend_args)
        if self.rank != 0:
            return
        checkpoint = self._collect_checkpoint(meta, by_epoch, save_optimizer, save_param_scheduler)
        self._complete_checkpoint(checkpoint)
        save_checkpoint(checkpoint, path)

    def _save_requested(self, effect: SaveCheckpoint) -> None:
        unknown = sorted(set(effect.extra) - _SAVE_EXTRA)
        if unknown:
            raise TypeError(
                f"save_checkpoint() got unexpected keyword arguments {unknown} (from the hook's "
                f"extra arguments); accepted: {sorted(_SAVE_EXTRA)}"
            )
        path = os.path.join(str(self.work_dir), effect.path)
        _checkpoint_path(os.path.dirname(path), os.path.basename(path), **effect.extra)
        if self.rank != 0:
            return
        checkpoint = self._collect_checkpoint(
            dict(effect.meta), True, effect.save_optimizer, effect.save_param_scheduler
        )

        def write() -> None:
            self._complete_checkpoint(checkpoint)
            save_checkpoint(checkpoint, path)
            if effect.update_last:
                write_last_checkpoint(str(self.work_dir), path)

        self._event_end.append(write)

    def _collect_checkpoint(
        self, meta: dict[str, Any] | None, by_epoch: bool, save_optimizer: bool, save_param_scheduler: bool
    ) -> dict[str, Any]:
        if meta is None:
            meta = {}
        elif not isinstance(meta, dict):
            raise TypeError(f"save_checkpoint: `meta` should be a dict or None, but got {type(meta).__name__}")
        run = self._run
        meta.setdefault("epoch", run.epoch + 1 if by_epoch else run.epoch)
        meta.setdefault("iter", run.iter if by_epoch else run.iter + 1)
        meta.update(
            cfg=self._cfg_text,
            seed=self.seed,
            experiment_name=self.experiment_name,
            time=time.strftime("%Y%m%d_%H%M%S", time.localtime()),
            fengine_version=fengine.__version__,
        )
        dataset_meta = self._train_dataset_meta()
        if dataset_meta is not None:
            meta["dataset_meta"] = dataset_meta
        checkpoint: dict[str, Any] = {
            "meta": meta,
            "state_dict": _to_cpu(self._unwrapped().state_dict()),
            "message_hub": None,  # filled when the checkpoint is completed (keeps MMEngine's key order)
        }
        if save_optimizer:
            if not callable(getattr(self.optim_wrapper, "state_dict", None)) or isinstance(self.optim_wrapper, Mapping):
                raise TypeError(
                    "save_checkpoint(save_optimizer=True) needs a built OptimWrapper, but "
                    f"runner.optim_wrapper is {self.optim_wrapper!r}"
                )
            checkpoint["optimizer"] = _to_cpu(self.optim_wrapper.state_dict())
        if save_param_scheduler and not _built_schedulers(self.param_schedulers):
            if self.param_schedulers is None:
                self.logger.warning(
                    "`save_param_scheduler` is True but `runner.param_schedulers` is None, so "
                    "parameter schedulers are not saved"
                )
            save_param_scheduler = False
        if save_param_scheduler:
            checkpoint["param_schedulers"] = scheduler_states(self.param_schedulers)
        self._open_checkpoints.append(checkpoint)
        try:
            self._fire(Event.BEFORE_SAVE_CHECKPOINT, checkpoint=checkpoint)
        finally:
            self._open_checkpoints.pop()
        return checkpoint

    def _complete_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        hub = self.message_hub.state_dict()
        runtime_info, skipped = {}, []
        for key, value in hub["runtime_info"].items():
            try:
                runtime_info[key] = to_plain(value)
            except TypeError:
                skipped.append(key)
        if skipped:
            self.logger.warning(f"message hub infos {skipped} cannot be stored as plain data; not saved")
        hub["runtime_info"] = runtime_info
        hub["resumed_keys"] = {k: v for k, v in hub["resumed_keys"].items() if k not in skipped}
        checkpoint["message_hub"] = hub
        hooks = {}
        for name, state in self.hook_states().items():
            try:
                hooks[name] = to_plain(state)
            except TypeError as error:
                raise TypeError(f"hook {name!r} has a state that cannot be checkpointed: {error}") from error
        checkpoint["hooks"] = hooks
        checkpoint["rng"] = to_plain(RngState.capture())
        checkpoint["data_position"] = self._data_position(checkpoint["meta"])

    def _data_position(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        loop = self._train_loop
        position = getattr(loop, "data_position", None)
        base = {"epoch": meta["epoch"], "iter": meta["iter"]}
        return {**base, **position(meta["epoch"], meta["iter"])} if callable(position) else base

    # -- loading -------------------------------------------------------------------------------
    def load_checkpoint(
        self,
        filename: str,
        map_location: Any = "cpu",
        strict: bool = False,
        revise_keys: list[tuple[str, str]] | None = None,
        weights_only: bool | None = None,
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
            weights_only: ``torch.load``'s safe mode; default
                ``runner.checkpoint_weights_only`` (``True``).

        Returns:
            The checkpoint dict.

        Raises:
            CheckpointError: a missing, unreadable or damaged file, or a strict mismatch.
        """
        safe = self.checkpoint_weights_only if weights_only is None else weights_only
        checkpoint = read_checkpoint(filename, map_location=map_location, weights_only=safe)
        self._open_checkpoints.append(checkpoint)
        try:
            self._fire(Event.AFTER_LOAD_CHECKPOINT, checkpoint=checkpoint)
        finally:
            self._open_checkpoints.pop()
        state_dict = checkpoint.get("state_dict", checkpoint)
        rules = [(r"^module\.", "")] if revise_keys is None else revise_keys
        apply_state_dict(self._unwrapped(), revise_keys_of(state_dict, rules), strict, filename, self.logger.warning)
        self._has_loaded = True
        self.logger.info(f"Load checkpoint from {filename}")
        return checkpoint

    def resume(
        self,
        filename: str,
        resume_optimizer: bool = True,
        resume_param_scheduler: bool = True,
        map_location: Any = "default",
    ) -> None:
        """Continue the run saved in ``filename`` (MMEngine's ``Runner.resume``).

        Loads the weights (through :meth:`load_checkpoint`), the counters from ``meta``, the
        message hub, the optimizer and scheduler states, and each hook's state (strictly: a
        stateful registered hook missing from the checkpoint, or a saved state of a hook that is
        not registered, is an error). The generators' states and the data position are kept
        for the train loop, which restores them where the saved run stood. A seed that differs
        from the configured one is replaced by the checkpoint's, as in MMEngine.

        Raises:
            CheckpointError: an unreadable or damaged file, a file without ``meta`` counters,
                or hook states that do not match the registered hooks.
        """
        self._run = attrs.evolve(self._run, resumed=True)
        device = ("cuda" if torch.cuda.is_available() else "cpu") if map_location == "default" else map_location
        checkpoint = self.load_checkpoint(filename, map_location=device)
        meta = checkpoint.get("meta")
        if not isinstance(meta, Mapping) or "epoch" not in meta or "iter" not in meta:
            raise CheckpointError(f"cannot resume from {filename!r}: its `meta` has no `epoch`/`iter` counters")
        self._run = attrs.evolve(self._run, epoch=int(meta["epoch"]), iter=int(meta["iter"]))
        saved_seed, configured = meta.get("seed"), self._randomness_cfg.get("seed")
        if saved_seed is not None and saved_seed != configured:
            if configured is not None:
                self.logger.warning(
                    f'The value of random seed in the checkpoint "{saved_seed}" is different from '
                    f'the value in `randomness` config "{configured}"'
                )
            self._set_randomness(saved_seed)
        if pickle.dumps(meta.get("dataset_meta")) != pickle.dumps(self._train_dataset_meta()):
            self.logger.warning(
                "The dataset metainfo from the resumed checkpoint is different from the current "
                "training dataset, please check the correctness of the checkpoint or the training dataset."
            )
        if "message_hub" in checkpoint:
            hub = dict(checkpoint["message_hub"])
            hub["runtime_info"] = from_plain(hub.get("runtime_info", {}))
            self.message_hub.load_state_dict(hub)
        if "optimizer" in checkpoint and resume_optimizer:
            self.optim_wrapper = self._build_optim_wrapper()
            self.optim_wrapper.load_state_dict(checkpoint["optimizer"])
        if resume_param_scheduler and self.param_schedulers is None:
            self.logger.warning(
                "`resume_param_scheduler` is True but `runner.param_schedulers` is None, so "
                "parameter schedulers are not resumed"
            )
        elif "param_schedulers" in checkpoint and resume_param_scheduler:
            self.param_schedulers = self._build_param_schedulers()
            _load_schedulers(self.param_schedulers, checkpoint["param_schedulers"], filename)
        self._restore_hook_states(checkpoint, filename)
        self._resume_point = {"rng": checkpoint.get("rng"), "data_position": checkpoint.get("data_position")}
        self._has_loaded = True
        self.logger.info(f"resumed epoch: {self._run.epoch}, iter: {self._run.iter}")

    def _restore_hook_states(self, checkpoint: Mapping[str, Any], filename: str) -> None:
        saved = checkpoint.get("hooks")
        current = self.hook_states()
        if saved is None:
            if any(state is not None for state in current.values()):
                self.logger.warning(f"{filename!r} holds no hook states; hooks start from their initial states")
            return
        missing = [n for n, s in current.items() if s is not None and n not in saved]
        unknown = [n for n, s in saved.items() if s is not None and n not in current]
        if missing or unknown:
            raise CheckpointError(
                f"hook states in {filename!r} do not match the registered hooks: missing {missing}, "
                f"unknown {unknown}; register the same hooks as the run that saved it"
            )
        states = {n: from_plain(s) for n, s in saved.items() if n in current}
        self._run = attrs.evolve(self._run, hook_states={**self._run.hook_states, **states})

    def load_or_resume(self) -> None:
        """Resume or load weights as configured, once (``resume``/``load_from``, MMEngine's rules).

        ``resume=True`` without ``load_from`` resumes from the checkpoint named by
        ``work_dir/last_checkpoint`` (nothing happens when there is none).
        """
        if self._has_loaded:
            return
        source = None
        if self._resume and self._load_from is None:
            source = find_latest_checkpoint(str(self.work_dir))
            self.logger.info(f"Auto resumed from the latest checkpoint {source}.")
        elif self._resume:
            source = self._load_from
        if source is not None:
            self.resume(source)
        elif self._load_from is not None:
            self.load_checkpoint(self._load_from)

    def _take_resume_point(self) -> tuple[RngState | None, Mapping[str, Any] | None]:
        """The saved generators and data position, handed to the train loop once."""
        point, self._resume_point = self._resume_point, None
        if point is None:
            return None, None
        rng = from_plain(point["rng"]) if point.get("rng") is not None else None
        position = point.get("data_position")
        return rng, from_plain(position) if position is not None else None


def _checkpoint_path(
    out_dir: str, filename: str, file_client_args: Any = None, backend_args: Any = None
) -> str:
    if file_client_args is not None and backend_args is not None:
        raise ValueError('"file_client_args" and "backend_args" cannot be set at the same time.')
    args = backend_args or file_client_args or {}
    backend = args.get("backend", "local") if isinstance(args, Mapping) else args
    if backend not in ("local", "disk"):
        raise ValueError(f"only local checkpoint storage is supported; got backend {backend!r}")
    return os.path.join(out_dir, filename)


def _built_schedulers(schedulers: Any) -> bool:
    if isinstance(schedulers, Mapping):
        return bool(schedulers) and all(_built_schedulers(v) for v in schedulers.values())
    return isinstance(schedulers, list) and all(isinstance(s, _ParamScheduler) for s in schedulers)


def _load_schedulers(schedulers: Any, states: Any, filename: str) -> None:
    groups = schedulers.items() if isinstance(schedulers, Mapping) else [(None, schedulers)]
    for name, group in groups:
        saved = states[name] if name is not None else states
        if len(saved) != len(group):
            raise CheckpointError(
                f"{filename!r} holds {len(saved)} parameter scheduler states"
                f"{'' if name is None else f' for optimizer {name!r}'} but {len(group)} schedulers are configured"
            )
        for scheduler, state in zip(group, saved):
            scheduler.load_state_dict(state)
