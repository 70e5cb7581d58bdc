"""The effects interpreter: what hooks asked for, carried out on the world, in emission order.

Every effect type of :mod:`fengine.core.effects` has exactly one handler here (a test checks the
table against ``KNOWN_EFFECTS``). File effects act on rank 0 only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pickle
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import numpy as np
import torch

from fengine import dist
from fengine.core import effects as fx
from fengine.core.run import RunState
from fengine.runner.base_loop import epoch_sampler
from fengine.runner.checkpoint import read_checkpoint
from fengine.runner.checkpointing import Checkpointer
from fengine.runner.hook_host import HookHost
from fengine.runner.parts import Parts
from fengine.runner.profiler import ProfilerSession
from fengine.utils.fileio import atomic_write


def _json_ready(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value


def _serialisable(tag: Mapping[str, Any]) -> dict[str, Any]:
    kept = {}
    for key, value in tag.items():
        try:
            json.dumps(_json_ready(value))
        except TypeError:
            continue  # MMEngine drops values JSON cannot hold
        kept[key] = _json_ready(value)
    return kept


def built_schedulers(schedulers: Any) -> list[Any]:
    """The built schedulers of ``runner.param_schedulers`` (a list, or a dict of lists), in order.

    Configs not built yet (a val/test-only run) are left out, as MMEngine skips them.

    Raises:
        TypeError: ``schedulers`` is neither ``None``, a list nor a dict of lists.
    """
    if schedulers is None:
        return []
    if isinstance(schedulers, Mapping):
        groups = [[schedulers]] if "type" in schedulers else list(schedulers.values())
    elif isinstance(schedulers, list):
        groups = [schedulers]
    else:
        raise TypeError(
            "runner.param_schedulers should be list of ParamScheduler or a dict containing "
            f"list of ParamScheduler, but got {schedulers!r}"
        )
    groups = [[group] if isinstance(group, Mapping) else group for group in groups]
    return [s for group in groups for s in group if not isinstance(s, Mapping)]


class EffectInterpreter:
    """Carries out effects (:meth:`carry_out`), one handler per effect type.

    Args:
        host: the hook host (the run's record, the event's deferred work).
        parts: the run's components (the optimizer wrapper, the schedulers, the train loop).
        checkpointer: writes the checkpoints hooks ask for and deletes what they let go.
        runner: what MMEngine's log processor is handed (``get_log_after_iter(runner, ...)``).
        logger: the run's logger.
        message_hub: the run's message hub.
        visualizer: the run's visualizer (scalars of log lines).
        log_processor: formats log lines.
        profiler: the run's profiler session.
        rank: this process's rank (file effects act on rank 0 only).
        log_dir: the run's log folder (``<work_dir>/<timestamp>``).
        timestamp: the run's timestamp (names the scalar and log files).
    """

    def __init__(
        self,
        host: HookHost,
        parts: Parts,
        checkpointer: Checkpointer,
        runner: Any,
        logger: logging.Logger,
        message_hub: Any,
        visualizer: Any,
        log_processor: Any,
        profiler: ProfilerSession,
        rank: int,
        log_dir: str,
        timestamp: str,
    ) -> None:
        self._host, self._parts, self._checkpointer, self._runner = host, parts, checkpointer, runner
        self._logger, self._message_hub = logger, message_hub
        self.visualizer, self.log_processor, self.profiler = visualizer, log_processor, profiler
        self._rank, self._log_dir, self._timestamp = rank, log_dir, timestamp
        #: The TensorBoard writer: ``None`` until first needed, ``False`` without tensorboard.
        self.tensorboard: Any = None

    def carry_out(self, run: RunState) -> RunState:
        """Carry out ``run.effects`` not carried out yet, in order; returns the resulting record."""
        # Effects stay in the record until the event ends (see HookHost.done); an effect that
        # dispatches an event of its own (a save) may clear them meanwhile, so the pending ones
        # are taken first.
        host = self._host
        pending = run.effects[host.done :]
        host.run, host.done = run, len(run.effects)
        for effect in pending:
            handler = _HANDLERS.get(type(effect))
            if handler is None:
                raise TypeError(
                    f"unknown effect {effect!r}; the runner carries out "
                    f"{', '.join(t.__name__ for t in _HANDLERS)}"
                )
            handler(self, effect)
        return host.run

    # -- checkpoints and files -------------------------------------------------------------------
    def _save(self, effect: fx.SaveCheckpoint) -> None:
        self._checkpointer.save_requested(effect)

    def _publish(self, effect: fx.PublishCheckpoint) -> None:
        if self._rank != 0:
            return
        if not os.path.exists(effect.src):  # saved earlier in this very event: write it first
            tasks, self._host.event_end[:] = list(self._host.event_end), []
            for task in tasks:
                task()
        checkpoint = read_checkpoint(effect.src, decode=False)  # copied as it is stored
        removed = [k for k in checkpoint if k not in effect.keys]
        for key in removed:
            checkpoint.pop(key)
        if removed:
            self._logger.warning(f"Key {removed} will be removed because they are not found in published_keys.")
        checkpoint.get("meta", {}).pop("checksum", None)
        digest = hashlib.sha256(pickle.dumps(checkpoint)).hexdigest()
        target = f"{os.path.splitext(effect.src)[0]}-{digest[:8]}.pth"
        self._checkpointer.write(checkpoint, target)
        self._logger.info(f"The checkpoint ({effect.src}) is published to {target}.")

    def _remove(self, effect: fx.RemoveFile) -> None:
        # Carried out at the end of the event, and only for this run's own checkpoints inside its
        # folders: a path that came from a checkpoint may point anywhere.
        if self._rank != 0:
            return
        self._checkpointer.defer_removal(os.path.join(self._host.run.work_dir, effect.path))

    def _add_to_checkpoint(self, effect: fx.AddToCheckpoint) -> None:
        if not self._host.open_checkpoints:
            raise ValueError(
                f"AddToCheckpoint({effect.key!r}) was emitted outside before_save_checkpoint / "
                "after_load_checkpoint, where there is no checkpoint to add to"
            )
        self._host.open_checkpoints[-1][effect.key] = effect.value

    def _export_logs(self, effect: fx.ExportLogs) -> None:
        if self._rank != 0:
            return
        copied = []
        for folder, _, files in os.walk(effect.src_dir):
            for name in files:
                if name.endswith(tuple(effect.suffixes)):
                    source = os.path.join(folder, name)
                    target = os.path.join(effect.dst_dir, os.path.relpath(source, effect.src_dir))
                    with open(source, "rb") as handle:
                        atomic_write(target, handle.read())
                    copied.append(source)
        self._logger.info(f"The log files under {effect.src_dir} are copied to {effect.dst_dir}.")
        if not effect.keep_local:
            for handler in list(self._logger.handlers):
                if isinstance(handler, logging.FileHandler):
                    handler.close()
                    self._logger.removeHandler(handler)
            for source in copied:
                os.remove(source)

    # -- logging ---------------------------------------------------------------------------------
    def _log_text(self, effect: fx.LogText) -> None:
        self._logger.log(effect.level, effect.message)

    def _log_step(self, effect: fx.LogStep) -> None:
        if effect.mode == "train":
            self._parts.check_losses()
        if effect.kind == "iter":
            tag, line = self.log_processor.get_log_after_iter(self._runner, effect.batch_idx, effect.mode)
        elif effect.kind == "epoch":
            tag, line = self.log_processor.get_log_after_epoch(
                self._runner, effect.batch_idx + 1, effect.mode, with_non_scalar=effect.mode == "test"
            )
        else:
            raise ValueError(f"LogStep.kind must be 'iter' or 'epoch', got {effect.kind!r}")
        self._logger.info(line)
        if not effect.scalars:
            return
        if effect.mode == "test" and effect.kind == "epoch":
            # MMEngine's LoggerHook dumps the test summary to one JSON file instead of the backends.
            if self._rank == 0:
                data = json.dumps(_serialisable(tag))
                atomic_write(os.path.join(self._log_dir, f"{self._timestamp}.json"), data.encode())
            return
        self.visualizer.add_scalars(tag, step=effect.step, file_path=f"{self._timestamp}.json")

    def _update_scalars(self, effect: fx.UpdateScalars) -> None:
        update = self._message_hub.update_scalar
        for key, value in effect.values.items():
            update(key, value)

    def _update_info(self, effect: fx.UpdateInfo) -> None:
        for key, value in effect.values.items():
            self._message_hub.update_info(key, value)
        for key in effect.pop:
            self._message_hub.pop_info(key)

    def _record_optimizer_scalars(self, effect: fx.RecordOptimizerScalars) -> None:
        rates = self._parts.optim_wrapper.get_lr()
        if not isinstance(rates, dict):
            raise TypeError(
                f"`runner.optim_wrapper.get_lr()` should return a dict of learning rates, got {rates!r}"
            )
        update = self._message_hub.update_scalar
        for name, values in rates.items():
            update(f"train/{name}", values[0])

    def _write_tensorboard(self, effect: fx.WriteTensorboard) -> None:
        if self._rank != 0:
            return
        if self.tensorboard is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self._logger.debug("tensorboard is not installed; TensorBoard scalars are not written")
                self.tensorboard = False
                return
            self.tensorboard = SummaryWriter(os.path.join(self._log_dir, "vis_data"))
        if self.tensorboard is not False:
            for key, value in effect.values.items():
                self.tensorboard.add_scalar(key, float(value), effect.step)

    # -- training control ------------------------------------------------------------------------
    def _stop_training(self, effect: fx.StopTraining) -> None:
        self._host.run = attrs.evolve(self._host.run, stop_training=True)

    def _step_schedulers(self, effect: fx.StepSchedulers) -> None:
        stepped = False
        for scheduler in built_schedulers(self._parts.param_schedulers):
            if scheduler.by_epoch != effect.by_epoch:
                continue
            if effect.metrics is None:
                scheduler.step()
                stepped = True
            elif getattr(scheduler, "need_val_args", False):
                scheduler.step(effect.metrics)
                stepped = True
        # The schedulers wrote ``param_groups``: the run's record takes the new hyper-parameters.
        opt_state = getattr(getattr(self._parts.optim_wrapper, "optimizer", None), "opt_state", None) if stepped else None
        if opt_state is not None:
            self._host.run = self._host.run.replace(state=self._host.run.state.replace(opt_state=opt_state))

    def _set_sampler_epoch(self, effect: fx.SetSamplerEpoch) -> None:
        sampler = epoch_sampler(getattr(self._parts.train_loop, "dataloader", None))
        if sampler is not None:
            sampler.set_epoch(effect.epoch)

    # -- devices and tensors ---------------------------------------------------------------------
    def _empty_cache(self, effect: fx.EmptyCache) -> None:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _sync_buffers(self, effect: fx.SyncBuffers) -> None:
        if dist.is_distributed():
            for buffer in self._parts.model.buffers():
                dist.all_reduce(buffer, op="mean")

    def _load_weights(self, effect: fx.LoadWeights) -> None:
        live = {**self._host.run.params, **self._host.run.buffers}
        unknown = sorted(set(effect.tensors) - set(live))
        if unknown:
            raise KeyError(f"LoadWeights names tensors the model does not have: {unknown}")
        with torch.no_grad():
            for name, tensor in effect.tensors.items():
                live[name].copy_(tensor)

    def _profile(self, effect: fx.ProfilerAction) -> None:
        self.profiler.apply(effect.action, effect.options)


_HANDLERS: Mapping[type, Callable[[Any, Any], None]] = {
    fx.SaveCheckpoint: EffectInterpreter._save,
    fx.PublishCheckpoint: EffectInterpreter._publish,
    fx.RemoveFile: EffectInterpreter._remove,
    fx.AddToCheckpoint: EffectInterpreter._add_to_checkpoint,
    fx.LogText: EffectInterpreter._log_text,
    fx.LogStep: EffectInterpreter._log_step,
    fx.UpdateScalars: EffectInterpreter._update_scalars,
    fx.UpdateInfo: EffectInterpreter._update_info,
    fx.RecordOptimizerScalars: EffectInterpreter._record_optimizer_scalars,
    fx.StopTraining: EffectInterpreter._stop_training,
    fx.StepSchedulers: EffectInterpreter._step_schedulers,
    fx.SetSamplerEpoch: EffectInterpreter._set_sampler_epoch,
    fx.EmptyCache: EffectInterpreter._empty_cache,
    fx.SyncBuffers: EffectInterpreter._sync_buffers,
    fx.LoadWeights: EffectInterpreter._load_weights,
    fx.ProfilerAction: EffectInterpreter._profile,
    fx.WriteTensorboard: EffectInterpreter._write_tensorboard,
    fx.ExportLogs: EffectInterpreter._export_logs,
}
