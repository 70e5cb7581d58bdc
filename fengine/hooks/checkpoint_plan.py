"""CheckpointHook's pure part: when to write, keep, delete and publish checkpoints.

:class:`CheckpointPlan` holds the hook's validated settings and the handlers that turn events
into ``SaveCheckpoint``/``RemoveFile``/``PublishCheckpoint`` effects, updating the
:class:`~fengine.hooks.checkpoint_state.CheckpointState` and mirroring it into the message hub
under MMEngine's names (``keep_ckpt_ids``, ``last_ckpt``, ``best_score``/``best_ckpt`` or
``best_score_<key>``/``best_ckpt_<key>``). It needs no runner, model, disk or clock; the façade
that validates MMEngine's arguments is :class:`fengine.hooks.checkpoint_hook.CheckpointHook`.

* Regular: after train epoch ``e`` (1-based; iteration ``i`` with ``by_epoch=False``) when
  ``e - save_begin`` is a non-negative multiple of ``interval``, or the last one with
  ``save_last``: ``epoch_{e}.pth`` / ``iter_{i}.pth`` (or ``filename_tmpl``), naming the newest in
  ``last_checkpoint``. With ``max_keep_ckpts > 0`` the oldest of these are deleted first so that at
  most that many remain; the newest is never deleted.
* Best: after validation, for each ``save_best`` key (``'auto'``: the first metric) whose score
  strictly beats the best so far under its rule: delete the previous best file, write
  ``best_<key>_<epoch_N|iter_N>.pth`` (``/`` → ``_``) with optimizer and scheduler state, so it can
  be resumed from. If the regular checkpoint of the same step was written, it is written again in
  place so that it records the new best (resuming from it then knows the best file).
* Published: after training, a copy of the last and best checkpoints holding only
  ``published_keys``, named ``<stem>-<sha256[:8]>.pth``.
* Restored paths: after a resume, :meth:`CheckpointPlan.confine` drops every path the checkpoint
  brought that is not a checkpoint name of this run's own folder (an absolute path elsewhere,
  ``..``, a symbolic link out, another run's folder), and the kept steps when the checkpoint came
  from another folder, so a checkpoint never makes the run delete or overwrite a file it did not
  write.
"""

from __future__ import annotations

import os
import re
import string
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from fengine.core.cadence import AnyOf, Cadence, Counter, Every, Last
from fengine.core.effects import (
    Effect,
    LogText,
    PublishCheckpoint,
    RemoveFile,
    SaveCheckpoint,
    UpdateInfo,
)
from fengine.core.events import Event
from fengine.core.pipeline import FnHook, Handler
from fengine.core.priority import Priority, PriorityLike
from fengine.core.run import EventInfo, RunState
from fengine.file_client import run_folder
from fengine.hooks.checkpoint_state import (
    CheckpointState,
    at,
    confine,
    from_runtime_info,
    info_names,
    put,
)
from fengine.hooks.rules import Rule, infer_rule, is_better, worst_score

_WARNING = 30  # logging.WARNING


def _every(done: int, interval: int, start: int) -> bool:
    offset = done - start
    return offset >= 0 and interval > 0 and offset % interval == 0


def _template_regex(template: str) -> str:
    """A regex matching what ``template.format(step)`` gives for any step."""
    parts = []
    for literal, field, _, _ in string.Formatter().parse(template):
        parts.append(re.escape(literal))
        if field is not None:
            parts.append(r"\d+")
    return "".join(parts)


def checkpoint_folder(out_dir: str | None, work_dir: str) -> str:
    """The folder checkpoints go to: the work dir when ``out_dir`` is ``None`` or the work dir
    itself, else ``<out_dir>/<basename of work_dir>`` (MMEngine's rule)."""
    return work_dir if out_dir is None or out_dir == work_dir else run_folder(out_dir, work_dir)


@attrs.frozen
class CheckpointPlan:
    """The CheckpointHook's validated settings and pure handlers.

    Args:
        interval: save every ``interval`` epochs (iterations); ``<= 0``: only the last.
        by_epoch: count epochs (``True``) or iterations; ``None`` follows the train loop.
        save_optimizer: include the optimizer state (regular and best checkpoints).
        save_param_scheduler: include the schedulers' state.
        out_dir: where checkpoints go (:func:`checkpoint_folder`).
        max_keep_ckpts: keep at most this many interval checkpoints (``<= 0``: all).
        save_last: always save after the last epoch (iteration).
        save_best: metric names to keep a best checkpoint for (``('auto',)``: the first metric).
        rules: one rule per ``save_best`` entry (``None`` only for ``'auto'``: inferred later).
        greater_keys: names inferred as higher-is-better for ``'auto'``.
        less_keys: names inferred as lower-is-better for ``'auto'``.
        filename_tmpl: ``str.format`` template of regular names; ``None``: ``epoch_{}.pth`` or
            ``iter_{}.pth``.
        published_keys: top-level keys of the published copies (``None``: do not publish).
        save_begin: the first epoch (iteration) counted by ``interval``.
        extra: further keywords for the runner's ``save_checkpoint``.
    """

    interval: int = -1
    by_epoch: bool | None = None
    save_optimizer: bool = True
    save_param_scheduler: bool = True
    out_dir: str | None = None
    max_keep_ckpts: int = -1
    save_last: bool = True
    save_best: tuple[str, ...] = ()
    rules: tuple[Rule | None, ...] = ()
    greater_keys: tuple[str, ...] = ()
    less_keys: tuple[str, ...] = ()
    filename_tmpl: str | None = None
    published_keys: tuple[str, ...] | None = None
    save_begin: int = 0
    extra: Mapping[str, Any] = attrs.field(factory=dict)

    # -- names -------------------------------------------------------------------------------
    def counts_epochs(self, run: RunState) -> bool:
        """Whether steps are epochs in ``run`` (``by_epoch``, or the train loop's kind)."""
        return run.train_by_epoch if self.by_epoch is None else self.by_epoch

    def directory(self, run: RunState) -> str:
        """The folder checkpoints go to (:func:`checkpoint_folder`)."""
        return checkpoint_folder(self.out_dir, run.work_dir)

    def filename(self, run: RunState, step: int) -> str:
        """The regular checkpoint's file name for ``step``."""
        default = "epoch_{}.pth" if self.counts_epochs(run) else "iter_{}.pth"
        return (self.filename_tmpl or default).format(step)

    def name_pattern(self) -> re.Pattern[str]:
        """The file names this plan gives checkpoints: regular (``filename_tmpl``) and best ones.

        Every ``{...}`` field of the template matches a number (the step).
        """
        templates = [os.path.basename(self.filename_tmpl)] if self.filename_tmpl else ["epoch_{}.pth", "iter_{}.pth"]
        regular = "|".join(_template_regex(t) for t in templates)
        return re.compile(f"(?:best_.+_)?(?:{regular})")

    def inferred_rule(self, key: str) -> Rule | None:
        """The rule ``key``'s name suggests, or ``None`` when it suggests none."""
        try:
            return infer_rule(key, self.greater_keys, self.less_keys)
        except ValueError:
            return None

    # -- handlers ----------------------------------------------------------------------------
    def before_train(
        self, run: RunState, state: CheckpointState, info: EventInfo
    ) -> tuple[RunState, CheckpointState]:
        """Take the kept steps and best checkpoints the message hub records (MMEngine's
        ``before_train``: a resumed hub, or one written by hand); announce the folder; trim kept
        checkpoints to ``max_keep_ckpts`` (it may have shrunk).

        Whatever paths the hub names, the shell deletes only this run's checkpoints
        (:mod:`fengine.runner.file_removal`).
        """
        if info.runtime_info:
            state = from_runtime_info(state, info.runtime_info, self.save_best)
        folder = self.directory(run)
        effects: list[Effect] = [LogText(f"Checkpoints will be saved to {folder}.")]
        ids = state.keep_ckpt_ids
        if self.max_keep_ckpts > 0 and len(ids) > self.max_keep_ckpts:
            drop = len(ids) - self.max_keep_ckpts
            effects += [RemoveFile(os.path.join(folder, self.filename(run, s))) for s in ids[:drop]]
            state = attrs.evolve(state, keep_ckpt_ids=ids[drop:])
            effects.append(UpdateInfo({"keep_ckpt_ids": list(state.keep_ckpt_ids)}))
        return run.emit(*effects), state

    def after_load_checkpoint(
        self, run: RunState, state: CheckpointState, info: EventInfo
    ) -> tuple[RunState, CheckpointState]:
        """On resume, take the kept steps and best checkpoints from the saved message hub.

        This is how a checkpoint written by MMEngine (which has no hook states) continues.
        """
        hub = (info.checkpoint or {}).get("message_hub") if run.resumed else None
        runtime = hub.get("runtime_info", {}) if isinstance(hub, Mapping) else {}
        if not runtime:
            return run, state
        return run, from_runtime_info(state, runtime, self.save_best)

    def confine(
        self, run: RunState, state: CheckpointState, source: str, resolve: Callable[[str], str]
    ) -> tuple[CheckpointState, tuple[Effect, ...]]:
        """``state`` without the restored paths that are not this plan's checkpoints.

        :func:`~fengine.hooks.checkpoint_state.confine` with this plan's folder
        (:meth:`directory`, resolved) and names (:meth:`name_pattern`).
        """
        return confine(state, resolve(self.directory(run)), self.name_pattern(), self.save_best, source, resolve)

    def after_train_epoch(
        self, run: RunState, state: CheckpointState, info: EventInfo
    ) -> tuple[RunState, CheckpointState]:
        """Save ``epoch_{epoch + 1}`` when the interval or ``save_last`` says so."""
        done = run.epoch + 1
        due = _every(done, self.interval, self.save_begin) or (
            self.save_last and done == run.max_epochs
        )
        if not self.counts_epochs(run) or not due:
            return run, state
        return self._save_regular(run, state, done, {"epoch": done, "iter": run.iter}, "epochs")

    def after_train_iter(
        self, run: RunState, state: CheckpointState, info: EventInfo
    ) -> tuple[RunState, CheckpointState]:
        """Save ``iter_{iter + 1}`` when counting iterations and the interval or ``save_last`` says so."""
        if self.counts_epochs(run):
            return run, state
        done = run.iter + 1
        due = _every(done, self.interval, self.save_begin) or (
            self.save_last and done == run.max_iters
        )
        if not due:
            return run, state
        return self._save_regular(run, state, done, {"epoch": run.epoch, "iter": done}, "iterations")

    def _save_regular(
        self, run: RunState, state: CheckpointState, step: int, meta: dict[str, int], unit: str
    ) -> tuple[RunState, CheckpointState]:
        folder = self.directory(run)
        effects: list[Effect] = [LogText(f"Saving checkpoint at {step} {unit}")]
        ids = state.keep_ckpt_ids
        if self.max_keep_ckpts > 0 and not (ids and ids[-1] == step):
            while len(ids) >= self.max_keep_ckpts:
                effects.append(RemoveFile(os.path.join(folder, self.filename(run, ids[0]))))
                ids = ids[1:]
            ids = (*ids, step)
            effects.append(UpdateInfo({"keep_ckpt_ids": list(ids)}))
        path = os.path.join(folder, self.filename(run, step))
        effects += [UpdateInfo({"last_ckpt": path}), self._save(run, path, meta, update_last=True)]
        new = attrs.evolve(state, keep_ckpt_ids=ids, last_ckpt=path, last_step=step)
        return run.emit(*effects), new

    def _save(self, run: RunState, path: str, meta: dict[str, int], update_last: bool) -> SaveCheckpoint:
        training = run.max_iters > 0  # a standalone val()/test() has no optimizer to save
        return SaveCheckpoint(
            path,
            meta=meta,
            save_optimizer=self.save_optimizer and training,
            save_param_scheduler=self.save_param_scheduler and training,
            update_last=update_last,
            extra=self.extra,
        )

    def _keys(self, state: CheckpointState, metrics: Mapping[str, Any]) -> list[tuple[str, Rule]]:
        if self.save_best != ("auto",):
            return [(k, r) for k, r in zip(self.save_best, self.rules) if r is not None]
        key = state.auto_key if state.auto_key is not None else next(iter(metrics))
        rule = self.rules[0] if self.rules and self.rules[0] is not None else None
        return [(key, rule or infer_rule(key, self.greater_keys, self.less_keys))]

    def after_val_epoch(
        self, run: RunState, state: CheckpointState, info: EventInfo
    ) -> tuple[RunState, CheckpointState]:
        """Save a best checkpoint for each ``save_best`` key whose score improved."""
        if not self.save_best:
            return run, state
        metrics = info.metrics
        if not metrics:
            message = "Since `metrics` is empty, saving the best checkpoint is skipped this time."
            return run.emit(LogText(message, _WARNING)), state
        effects: list[Effect] = []
        keys = self._keys(state, metrics)
        if self.save_best == ("auto",) and state.auto_key is None:
            state = attrs.evolve(state, auto_key=keys[0][0])
            if keys[0][1] == "greater" and self.inferred_rule(keys[0][0]) == "less":
                effects.append(LogText(
                    f"CheckpointHook: save_best='auto' chose {keys[0][0]!r}, compared with "
                    "rule='greater'; pass rule='less' (or rule=None to infer it) if lower is better",
                    _WARNING,
                ))
        by_epoch = self.counts_epochs(run)
        unit, now = ("epoch", run.epoch) if by_epoch else ("iter", run.iter)
        meta = {"epoch": run.epoch, "iter": run.iter}
        folder, size = self.directory(run), len(self.save_best)
        updated = False
        for index, (key, rule) in enumerate(keys):
            if key not in metrics:
                raise KeyError(
                    f"CheckpointHook: save_best key {key!r} is not among the metrics "
                    f"{sorted(metrics)}; name one of them in save_best"
                )
            if metrics[key] is None:
                continue
            score, best = float(metrics[key]), at(state.best_scores, index)
            if not is_better(rule, score, worst_score(rule) if best is None else best):
                continue
            updated = True
            score_name, path_name = info_names(self.save_best, key)
            previous = at(state.best_ckpts, index)
            if previous is not None:
                effects += [RemoveFile(previous), LogText(f"The previous best checkpoint {previous} is removed")]
            name = f"best_{key}_{self.filename(run, now)}".replace("/", "_")
            path = os.path.join(folder, name)
            state = attrs.evolve(
                state,
                best_scores=put(state.best_scores, index, score, size),
                best_ckpts=put(state.best_ckpts, index, path, size),
            )
            effects += [
                UpdateInfo({score_name: score, path_name: path}),
                self._save(run, path, meta, update_last=False),
                LogText(f"The best checkpoint with {score:0.4f} {key} at {now} {unit} is saved to {name}."),
            ]
        if updated and state.last_step == now and state.last_ckpt is not None:
            effects.append(self._save(run, state.last_ckpt, meta, update_last=True))
        return (run.emit(*effects) if effects else run), state

    def after_train(
        self, run: RunState, state: CheckpointState, info: EventInfo
    ) -> tuple[RunState, CheckpointState]:
        """Publish the last and best checkpoints when ``published_keys`` is set."""
        if self.published_keys is None:
            return run, state
        sources = [state.last_ckpt] if self.save_last and state.last_ckpt else []
        sources += [p for p in state.best_ckpts if p is not None]
        if not sources:
            return run, state
        return run.emit(*(PublishCheckpoint(s, self.published_keys) for s in sources)), state

    def fn_hook(self, name: str, priority: PriorityLike = Priority.VERY_LOW) -> FnHook[CheckpointState]:
        """This plan as a pipeline member.

        Args:
            name: the hook's unique name in the pipeline.
            priority: where it runs; MMEngine's ``VERY_LOW`` by default.

        Returns:
            The :class:`~fengine.core.pipeline.FnHook`.
        """
        on: dict[Event, Handler[CheckpointState]] = {
            Event.BEFORE_TRAIN: self.before_train,
            Event.AFTER_LOAD_CHECKPOINT: self.after_load_checkpoint,
            Event.AFTER_TRAIN_ITER: self.after_train_iter,
            Event.AFTER_TRAIN_EPOCH: self.after_train_epoch,
            Event.AFTER_VAL_EPOCH: self.after_val_epoch,
            Event.AFTER_TRAIN: self.after_train,
        }
        when: dict[Event, Cadence] = {
            Event.AFTER_TRAIN_ITER: self._due("iter"),
            Event.AFTER_TRAIN_EPOCH: self._due("epoch"),
        }
        return FnHook(name=name, priority=priority, init=CheckpointState(), on=on, when=when)

    def _due(self, counter: Counter) -> Cadence:
        """When a regular save can fall due: at an interval from ``save_begin``, or the last one."""
        parts: list[Cadence] = [Every(self.interval, counter, self.save_begin)] if self.interval > 0 else []
        if self.save_last:
            parts.append(Last(counter))
        return AnyOf(parts)
