"""The runner's saving side: ``save_checkpoint`` and the ``SaveCheckpoint`` effect.

What a checkpoint holds: the run's record in plain form (:meth:`TrainState.to_dict
<fengine.core.state.TrainState.to_dict>`) next to MMEngine's layout keys, so MMEngine's tools read
it and a resumed run takes its record back. MMEngine's keys first, in MMEngine's order:

* ``meta``: ``epoch``/``iter`` (the counters a resumed run starts from), ``cfg``, ``seed``,
  ``experiment_name``, ``time``, ``fengine_version``, ``dataset_meta`` and ``checksum``;
* ``state_dict`` (weights, on CPU), ``message_hub``, ``optimizer``, ``param_schedulers``, and what
  ``before_save_checkpoint`` hooks add (``ema_state_dict``);

then the record's fields: ``params``, ``buffers`` (the very CPU tensors of ``state_dict``, stored
once), ``opt_state`` (the optimizer's record, hyper-parameters included; ``None`` for optimizers
fengine does not step itself, or without ``save_optimizer``), ``step``, ``ema``, ``epoch``,
``iter``, ``inner_iter`` (the resume point), ``rng`` (the global generators) and ``hook_states``
(every hook's state by name); and the data stream's place: ``data_position``: ``epoch``, ``iter``,
``by_epoch``, ``inner_iter`` (batches of the current epoch, or of the current dataloader pass,
already trained), ``validated`` (whether the validation due at this position already ran), the
generators' states when the data iterator was created (``epoch_start_rng``), the sampler's
``seed`` and ``epoch``, and for iteration loops ``pass`` (how many times the dataloader was
restarted); ``grads``, only when saved inside an unfinished gradient-accumulation group: the
gradients accumulated so far.

Deletions hooks ask for (``RemoveFile``: the oldest kept checkpoint, the previous best) happen at
the end of the event, after its checkpoint writes succeeded, and only for this run's own
checkpoints inside its folders (:mod:`fengine.runner.file_removal`). A write that finds the disk
full raises :class:`DiskFullError`, naming the file and the newest complete checkpoint.

A save requested by a hook (the ``SaveCheckpoint`` effect) collects weights, optimizer and
schedulers at once and runs ``before_save_checkpoint`` (so MMEngine's call order holds), but
writes at the end of the event being dispatched, with the message hub, hook states, generators
and data position as they stand after every hook of that event: the point a resumed run continues
from.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import time
from collections.abc import Iterator, Mapping
from typing import Any

import torch

import fengine
from fengine.core.effects import SaveCheckpoint
from fengine.core.events import Event
from fengine.core.plain import to_plain
from fengine.core.sharded_step import checkpoint_tensor, is_fully_sharded
from fengine.core.state import RngState
from fengine.hooks.checkpoint_plan import CheckpointPlan
from fengine.optim.scheduler.base import _ParamScheduler
from fengine.runner.checkpoint import (
    CheckpointError,
    find_latest_checkpoint,
    save_checkpoint,
    write_last_checkpoint,
)
from fengine.runner.file_removal import FileRemoval, marker_content, removal_refusal
from fengine.runner.hook_host import HookHost
from fengine.runner.parts import Parts
from fengine.runner.sharded_checkpoint import (
    gather_full_weights,
    save_sharded_checkpoint,
    sharded_directory,
)

_SAVE_EXTRA = frozenset(("file_client_args", "backend_args", "save_format"))
#: The record's fields whose (CPU) tensors a checkpoint takes when it is collected.
_RECORD_TENSORS = ("params", "buffers", "opt_state")


def _to_cpu(value: Any, memo: dict[int, tuple[torch.Tensor, torch.Tensor]]) -> Any:
    """``value`` with every tensor on the CPU (a shard where it is: :func:`checkpoint_tensor`); a
    tensor met twice (``memo``) is copied once.

    The memo keeps each original alive, so an ``id`` is never reused within one checkpoint.
    """
    if isinstance(value, torch.Tensor):
        seen = memo.get(id(value))
        if seen is None:
            seen = memo[id(value)] = (value, checkpoint_tensor(value))
        return seen[1]
    if isinstance(value, Mapping):
        return {k: _to_cpu(v, memo) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_to_cpu(v, memo) for v in value)
    return value


def _opt_state(optim_wrapper: Any) -> Any:
    """The optimizer's pure record, if its optimizer keeps one (fengine's SGD/Adam/AdamW)."""
    optimizer = getattr(optim_wrapper, "optimizer", None)
    return getattr(optimizer, "opt_state", None)


def scheduler_states(schedulers: Any) -> list[dict[str, Any]] | dict[str, list[dict[str, Any]]]:
    """The state dicts of a scheduler list, or of a dict of lists (several optimizers)."""
    if isinstance(schedulers, Mapping):
        return {name: [s.state_dict() for s in group] for name, group in schedulers.items()}
    return [s.state_dict() for s in schedulers]


class DiskFullError(OSError):
    """A checkpoint write that found the disk full (``errno`` is ``ENOSPC``; the cause is chained)."""


def _disk_full(error: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno == errno.ENOSPC:
            return True
        if "No space left on device" in str(current):
            return True
        current = current.__cause__ or current.__context__
    return False


class Checkpointer:
    """Saving (MMEngine's ``Runner.save_checkpoint``) and the checkpoints hooks request.

    Args:
        host: the hook host (the run's record, the hooks, the event's deferred work).
        parts: the run's components.
        message_hub: the run's message hub (saved with each checkpoint).
        logger: where warnings go.
        work_dir: the run's folder (relative checkpoint paths start there).
        rank: this process's rank (rank 0 writes files; every rank writes its shards).
    """

    def __init__(
        self, host: HookHost, parts: Parts, message_hub: Any, logger: logging.Logger, work_dir: str, rank: int
    ) -> None:
        self._host, self._parts = host, parts
        self._message_hub, self._logger = message_hub, logger
        self._work_dir, self._rank = work_dir, rank
        #: Real paths of the checkpoint files this run wrote (which it may delete again).
        self.saved_files: set[str] = set()

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
        self._parts.check_losses()
        if self._rank != 0 and not is_fully_sharded(self._parts.unwrapped()):
            return  # a sharded run's ranks each collect their own shards
        checkpoint = self._collect_checkpoint(meta, by_epoch, save_optimizer, save_param_scheduler)
        self._complete_checkpoint(checkpoint)
        self.write(checkpoint, path, save_optimizer)

    def save_requested(self, effect: SaveCheckpoint) -> None:
        unknown = sorted(set(effect.extra) - _SAVE_EXTRA)
        if unknown:
            raise TypeError(
                f"save_checkpoint() got unexpected keyword arguments {unknown} (from the hook's "
                f"extra arguments); accepted: {sorted(_SAVE_EXTRA)}"
            )
        path = os.path.join(self._work_dir, effect.path)
        extra = dict(effect.extra)
        full = extra.pop("save_format", "sharded") == "full"
        _checkpoint_path(os.path.dirname(path), os.path.basename(path), **extra)
        self._parts.check_losses()
        if self._rank != 0 and not is_fully_sharded(self._parts.unwrapped()):
            return  # a sharded run's ranks each collect their own shards
        checkpoint = self._collect_checkpoint(
            dict(effect.meta), True, effect.save_optimizer, effect.save_param_scheduler
        )

        def write() -> None:
            self._complete_checkpoint(checkpoint)
            written = self.write(checkpoint, path, effect.save_optimizer, full)
            if effect.update_last and self._rank == 0:
                record = os.path.join(self._work_dir, "last_checkpoint")
                with self.reporting_full_disk(record, newest=written):
                    write_last_checkpoint(self._work_dir, written)

        # Writes go ahead of the deletions queued in this event (a hook emits RemoveFile for the
        # oldest checkpoint before saving the new one): a failed write then deletes nothing, so
        # the newest complete checkpoint always survives. A deletion of the very file being
        # written would undo the write, so it is dropped.
        queue = self._host.event_end
        queue[:] = [t for t in queue if not (isinstance(t, FileRemoval) and t.path == path)]
        first = next((i for i, t in enumerate(queue) if isinstance(t, FileRemoval)), len(queue))
        queue.insert(first, write)

    def write(
        self, checkpoint: dict[str, Any], path: str, save_optimizer: bool = True, full: bool = False
    ) -> str:
        """Write ``checkpoint`` to ``path`` (rank 0), or as a sharded directory (every rank); returns where.

        ``full``: a sharded run writes one ordinary file on rank 0 (weights gathered before).
        """
        sharded = is_fully_sharded(self._parts.unwrapped())
        if sharded and full:
            checkpoint = gather_full_weights(checkpoint, path)
            if self._rank != 0:
                return path
        with self.reporting_full_disk(path):
            if sharded and not full:
                optimizer = self._parts.optim_wrapper.optimizer if save_optimizer else None
                rest = {k: v for k, v in checkpoint.items() if k not in ("optimizer", *_RECORD_TENSORS)}
                path = save_sharded_checkpoint(path, self._parts.unwrapped(), optimizer, rest, self._work_dir)
            else:
                save_checkpoint(checkpoint, path)
        self.saved_files.add(os.path.realpath(path))
        return path

    @contextlib.contextmanager
    def reporting_full_disk(self, path: str, newest: str | None = None) -> Iterator[None]:
        """Turn a write failing for lack of space (however torch wraps it) into :class:`DiskFullError`.

        ``newest``: the newest complete checkpoint, when not the one ``last_checkpoint`` names.
        """
        try:
            yield
        except Exception as error:
            if not _disk_full(error):
                raise
            newest = newest or find_latest_checkpoint(self._work_dir)
            kept = (
                f"the newest complete checkpoint is {newest!r}"
                if newest is not None and os.path.isfile(newest)
                else "no complete checkpoint was written yet"
            )
            raise DiskFullError(
                errno.ENOSPC, f"no space left on device (ENOSPC) while writing {path!r}; {kept}"
            ) from error

    def folders(self) -> list[str]:
        """Real paths of the folders this run's checkpoints go to (the work dir, hooks' ``out_dir``)."""
        folders = [os.path.realpath(self._work_dir)]
        for plan in self._checkpoint_plans():
            folder = os.path.realpath(plan.directory(self._host.run))
            if folder not in folders:
                folders.append(folder)
        return folders

    def _checkpoint_plans(self) -> list[CheckpointPlan]:
        plans = (getattr(hook, "plan", None) for hook in self._host.hook_list)
        return [plan for plan in plans if isinstance(plan, CheckpointPlan)]

    def _removal_refusal(self, path: str) -> str | None:
        names = [plan.name_pattern() for plan in self._checkpoint_plans()] or [CheckpointPlan().name_pattern()]
        return removal_refusal(
            path, self.folders(), self.saved_files, names, marker_content(self._work_dir)
        )

    def defer_removal(self, path: str) -> None:
        """Delete ``path`` at the end of the current event, after its checkpoint writes.

        Only this run's own checkpoints are deleted (see :mod:`fengine.runner.file_removal`).
        """
        if is_fully_sharded(self._parts.unwrapped()):
            path = sharded_directory(path)
        self._host.event_end.append(FileRemoval(path, self._removal_refusal, self._logger.warning))

    def _collect_checkpoint(
        self, meta: dict[str, Any] | None, by_epoch: bool, save_optimizer: bool, save_param_scheduler: bool
    ) -> dict[str, Any]:
        if meta is None:
            meta = {}
        elif not isinstance(meta, dict):
            raise TypeError(f"save_checkpoint: `meta` should be a dict or None, but got {type(meta).__name__}")
        run = self._host.run
        meta.setdefault("epoch", run.epoch + 1 if by_epoch else run.epoch)
        meta.setdefault("iter", run.iter if by_epoch else run.iter + 1)
        meta.update(
            cfg=run.meta["cfg"],
            seed=run.meta["seed"],
            experiment_name=run.meta["experiment_name"],
            time=time.strftime("%Y%m%d_%H%M%S", time.localtime()),
            fengine_version=fengine.__version__,
        )
        dataset_meta = self._parts.train_dataset_meta()
        if dataset_meta is not None:
            meta["dataset_meta"] = dataset_meta
        memo: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        checkpoint: dict[str, Any] = {
            "meta": meta,
            "state_dict": _to_cpu(self._parts.unwrapped().state_dict(), memo),
            "message_hub": None,  # filled when the checkpoint is completed (keeps MMEngine's key order)
        }
        if save_optimizer:
            if not callable(getattr(self._parts.optim_wrapper, "state_dict", None)) or isinstance(self._parts.optim_wrapper, Mapping):
                raise TypeError(
                    "save_checkpoint(save_optimizer=True) needs a built OptimWrapper, but "
                    f"runner.optim_wrapper is {self._parts.optim_wrapper!r}"
                )
            checkpoint["optimizer"] = _to_cpu(self._parts.optim_wrapper.state_dict(), memo)
        if save_param_scheduler and not _built_schedulers(self._parts.param_schedulers):
            if self._parts.param_schedulers is None:
                self._logger.warning(
                    "`save_param_scheduler` is True but `runner.param_schedulers` is None, so "
                    "parameter schedulers are not saved"
                )
            save_param_scheduler = False
        if save_param_scheduler:
            checkpoint["param_schedulers"] = scheduler_states(self._parts.param_schedulers)
        self._host.open_checkpoints.append(checkpoint)
        try:
            self._host.fire(Event.BEFORE_SAVE_CHECKPOINT, checkpoint=checkpoint)
        finally:
            self._host.open_checkpoints.pop()
        state = self._host.run.state
        checkpoint.update(
            params=_to_cpu(dict(state.params), memo),
            buffers=_to_cpu(dict(state.buffers), memo),
            opt_state=_to_cpu(to_plain(_opt_state(self._parts.optim_wrapper)), memo) if save_optimizer else None,
        )
        return checkpoint

    def _complete_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        hub = self._message_hub.state_dict()
        runtime_info, skipped = {}, []
        for key, value in hub["runtime_info"].items():
            try:
                runtime_info[key] = to_plain(value)
            except TypeError:
                skipped.append(key)
        if skipped:
            self._logger.warning(f"message hub infos {skipped} cannot be stored as plain data; not saved")
        hub["runtime_info"] = runtime_info
        hub["resumed_keys"] = {k: v for k, v in hub["resumed_keys"].items() if k not in skipped}
        checkpoint["message_hub"] = hub
        hook_states = {}
        for name, state in self._host.hook_states().items():
            try:
                hook_states[name] = to_plain(state)
            except TypeError as error:
                raise TypeError(f"hook {name!r} has a state that cannot be checkpointed: {error}") from error
        meta, position = checkpoint["meta"], self._data_position(checkpoint["meta"])
        # The run's record as a resumed run starts from it: counters at the resume point, the
        # generators and every hook's state after this event.
        record = self._host.run.state.replace(
            params={},
            buffers={},
            opt_state=None,
            epoch=int(meta["epoch"]),
            iter=int(meta["iter"]),
            inner_iter=int(position.get("inner_iter", 0)),
            rng=RngState.capture(),
            hook_states={},
        )
        # The tensors went in at collection, the hook states are plain already.
        tensors = {key: checkpoint[key] for key in _RECORD_TENSORS}
        checkpoint.update(record.to_dict(), **tensors, hook_states=hook_states)
        checkpoint["data_position"] = position
        grads = pending_grads(self._parts.unwrapped(), self._parts.optim_wrapper)
        if grads:
            checkpoint["grads"] = grads

    def _data_position(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        loop = self._parts.train_loop
        position = getattr(loop, "data_position", None)
        base = {"epoch": meta["epoch"], "iter": meta["iter"]}
        return {**base, **position(meta["epoch"], meta["iter"])} if callable(position) else base

def pending_grads(model: torch.nn.Module, optim_wrapper: Any) -> dict[str, torch.Tensor]:
    """The gradients accumulated so far in an unfinished accumulation group (else empty).

    With ``accumulative_counts > 1`` a checkpoint written between two optimizer steps must
    carry the summed gradients of the group's earlier iterations, or the resumed run would
    step with part of them missing.

    Args:
        model: the unwrapped model.
        optim_wrapper: the optimizer wrapper (anything without accumulation counters has none).

    Returns:
        ``{parameter name: gradient on CPU (a shard where it is)}`` for parameters holding a gradient.
    """
    counts = getattr(optim_wrapper, "_accumulative_counts", 1)
    inner = getattr(optim_wrapper, "_inner_count", 0)
    if not isinstance(counts, int) or counts <= 1 or inner % counts == 0:
        return {}
    return {name: checkpoint_tensor(p.grad).clone() for name, p in model.named_parameters() if p.grad is not None}


def restore_grads(model: torch.nn.Module, grads: Mapping[str, torch.Tensor] | None, filename: str) -> None:
    """Give ``model``'s parameters the gradients saved by :func:`pending_grads`.

    Raises:
        CheckpointError: a saved gradient names no parameter or has another shape.
    """
    if not grads:
        return
    params = dict(model.named_parameters())
    wrong = [
        name for name, grad in grads.items() if name not in params or params[name].shape != grad.shape
    ]
    if wrong:
        raise CheckpointError(f"{filename!r} holds accumulated gradients that do not fit the model: {wrong}")
    for name, grad in grads.items():
        params[name].grad = grad.to(device=params[name].device, dtype=params[name].dtype).clone()


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
