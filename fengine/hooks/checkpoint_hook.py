"""CheckpointHook: regular, last, best and published checkpoints as ``SaveCheckpoint`` effects.

Pure part: :class:`CheckpointState` (kept interval steps, best scores and paths, the newest
checkpoint) and :class:`CheckpointPlan`, whose handlers decide every write and deletion; the state
is mirrored into the message hub under MMEngine's names (``keep_ckpt_ids``, ``last_ckpt``,
``best_score``/``best_ckpt`` or ``best_score_<key>``/``best_ckpt_<key>``). Façade:
:class:`CheckpointHook`.

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
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

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
from fengine.hooks.hook import DATA_BATCH, Hook
from fengine.hooks.rules import (
    DEFAULT_GREATER_KEYS,
    DEFAULT_LESS_KEYS,
    Rule,
    infer_rule,
    is_better,
    worst_score,
)
from fengine.registry import HOOKS

_WARNING = 30  # logging.WARNING


@attrs.frozen
class CheckpointState:
    """What the hook remembers between events (checkpointed, so it survives a resume).

    Attributes:
        keep_ckpt_ids: steps of the kept interval checkpoints, oldest first.
        last_ckpt: path of the newest regular checkpoint.
        last_step: its step number.
        auto_key: the metric that ``save_best='auto'`` resolved to.
        best_scores: best score per ``save_best`` entry (``None``: none yet).
        best_ckpts: best checkpoint path per ``save_best`` entry.
    """

    keep_ckpt_ids: tuple[int, ...] = ()
    last_ckpt: str | None = None
    last_step: int | None = None
    auto_key: str | None = None
    best_scores: tuple[float | None, ...] = ()
    best_ckpts: tuple[str | None, ...] = ()


def _at(values: tuple[Any, ...], index: int) -> Any:
    return values[index] if index < len(values) else None


def _put(values: tuple[Any, ...], index: int, value: Any, size: int) -> tuple[Any, ...]:
    padded = list(values[:size]) + [None] * (size - len(values))
    padded[index] = value
    return tuple(padded)


def _every(done: int, interval: int, start: int) -> bool:
    offset = done - start
    return offset >= 0 and interval > 0 and offset % interval == 0


@attrs.frozen
class CheckpointPlan:
    """The CheckpointHook's validated settings and pure handlers.

    Args:
        interval: save every ``interval`` epochs (iterations); ``<= 0``: only the last.
        by_epoch: count epochs (``True``) or iterations; ``None`` follows the train loop.
        save_optimizer: include the optimizer state (regular and best checkpoints).
        save_param_scheduler: include the schedulers' state.
        out_dir: ``None``: the work dir; else ``<out_dir>/<basename of work_dir>``.
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
        """The folder checkpoints go to."""
        if self.out_dir is None:
            return run.work_dir
        return os.path.join(self.out_dir, os.path.basename(run.work_dir.rstrip(os.sep)))

    def filename(self, run: RunState, step: int) -> str:
        """The regular checkpoint's file name for ``step``."""
        default = "epoch_{}.pth" if self.counts_epochs(run) else "iter_{}.pth"
        return (self.filename_tmpl or default).format(step)

    def inferred_rule(self, key: str) -> Rule | None:
        """The rule ``key``'s name suggests, or ``None`` when it suggests none."""
        try:
            return infer_rule(key, self.greater_keys, self.less_keys)
        except ValueError:
            return None

    def _info_names(self, key: str) -> tuple[str, str]:
        if len(self.save_best) == 1:
            return "best_score", "best_ckpt"
        return f"best_score_{key}", f"best_ckpt_{key}"

    # -- handlers ----------------------------------------------------------------------------
    def before_train(
        self, run: RunState, state: CheckpointState, info: EventInfo
    ) -> tuple[RunState, CheckpointState]:
        """Announce the folder; trim kept checkpoints to ``max_keep_ckpts`` (it may have shrunk)."""
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
        changes: dict[str, Any] = {}
        if "keep_ckpt_ids" in runtime:
            changes["keep_ckpt_ids"] = tuple(int(s) for s in runtime["keep_ckpt_ids"])
        if "last_ckpt" in runtime:
            changes["last_ckpt"] = runtime["last_ckpt"]
        size = len(self.save_best)
        scores, paths = state.best_scores, state.best_ckpts
        for index, key in enumerate(self.save_best):
            score_name, path_name = self._info_names(key)
            if score_name in runtime:
                scores = _put(scores, index, float(runtime[score_name]), size)
            if path_name in runtime:
                paths = _put(paths, index, runtime[path_name], size)
        changes.update(best_scores=scores, best_ckpts=paths)
        return run, attrs.evolve(state, **changes)

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
            score, best = float(metrics[key]), _at(state.best_scores, index)
            if not is_better(rule, score, worst_score(rule) if best is None else best):
                continue
            updated = True
            score_name, path_name = self._info_names(key)
            previous = _at(state.best_ckpts, index)
            if previous is not None:
                effects += [RemoveFile(previous), LogText(f"The previous best checkpoint {previous} is removed")]
            name = f"best_{key}_{self.filename(run, now)}".replace("/", "_")
            path = os.path.join(folder, name)
            state = attrs.evolve(
                state,
                best_scores=_put(state.best_scores, index, score, size),
                best_ckpts=_put(state.best_ckpts, index, path, size),
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
        return FnHook(name=name, priority=priority, init=CheckpointState(), on=on)


class CheckpointArgumentError(ValueError, AssertionError):
    """A bad CheckpointHook argument (an ``AssertionError`` too, as MMEngine raises one)."""


class CheckpointArgumentTypeError(TypeError, AssertionError):
    """A CheckpointHook argument of the wrong type (an ``AssertionError`` too, as in MMEngine)."""


def _str_list(name: str, value: object) -> list[str] | None:
    """``None``, a str (→ one-element list) or a sequence of distinct str, as a list."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Sequence) or not all(isinstance(v, str) for v in items):
        raise CheckpointArgumentTypeError(
            f'CheckpointHook: "{name}" should be a str or list of str or None, got {value!r}'
        )
    if len(set(items)) != len(items):
        raise CheckpointArgumentError(f'CheckpointHook: Find duplicate element in "{name}": {value!r}')
    return list(items)


def _keys(name: str, value: object, default: tuple[str, ...]) -> tuple[str, ...]:
    listed = _str_list(name, [value] if isinstance(value, str) else value)
    return default if listed is None else tuple(listed)


def _resolve_rules(
    save_best: list[str], rule: list[str | None], greater: tuple[str, ...], less: tuple[str, ...]
) -> list[Rule | None]:
    if len(rule) not in (1, len(save_best)):
        raise CheckpointArgumentError(
            f'CheckpointHook: Number of "rule" must be 1 or the same as number of "save_best" '
            f"({len(save_best)}), but got {len(rule)}: {rule!r}"
        )
    rules = rule * len(save_best) if len(rule) == 1 else rule
    resolved: list[Rule | None] = []
    for key, given in zip(save_best, rules):
        if given is not None and given not in ("greater", "less"):
            raise KeyError(f"CheckpointHook: rule must be 'greater', 'less' or None, got {given!r}")
        if given is None and key != "auto":
            given = infer_rule(key, greater, less)
        resolved.append(given)  # type: ignore[arg-type]  # checked above
    return resolved


def _check_type(name: str, value: object, kind: type | tuple[type, ...], accepted: str) -> None:
    if (isinstance(value, bool) and kind is int) or not isinstance(value, kind):
        raise TypeError(f"CheckpointHook: {name} must be {accepted}, got {value!r}")


@HOOKS.register_module()
class CheckpointHook(Hook):
    """Saves regular, best and published checkpoints (see the module docstring).

    Args:
        interval: save every ``interval`` epochs (iterations); ``-1``: only the last.
        by_epoch: count epochs (``True``) or iterations (``False``); ``None`` (default) follows the
            train loop, so an iteration-based run saves ``iter_N.pth`` every ``interval`` iterations.
        save_optimizer: include the optimizer state.
        save_param_scheduler: include the parameter schedulers' state.
        out_dir: folder for checkpoints (``<out_dir>/<basename of work_dir>``); default the work dir.
        max_keep_ckpts: keep at most this many interval checkpoints (``-1``: all).
        save_last: always save after the last epoch (iteration).
        save_best: metric name(s) to keep a best checkpoint for; ``'auto'``: the first metric the
            evaluator returns; ``None``: no best checkpoint.
        rule: ``'greater'``, ``'less'``, ``None`` (infer from the metric's name), or one per key.
        greater_keys: names inferred as higher-is-better (replace the defaults; a str is wrapped).
        less_keys: names inferred as lower-is-better (replace the defaults; a str is wrapped).
        file_client_args: accepted for compatibility (local files only).
        published_keys: after training, publish copies of the last and best checkpoints that keep
            only these top-level keys.
        filename_tmpl: template of regular names, e.g. ``'ckpt_{:03d}.pth'``.
        save_begin: the first epoch (iteration) counted by ``interval``.
        backend_args: accepted for compatibility (local files only).
        **kwargs: passed to the runner's ``save_checkpoint`` for regular and best checkpoints.

    Raises:
        TypeError: an argument of the wrong type (the save_best/rule/published_keys ones are also
            ``AssertionError`` s, as in MMEngine).
        ValueError: ``save_begin < 0``, a bad ``filename_tmpl``, both ``file_client_args`` and
            ``backend_args``, a rule that cannot be inferred, or a ``save_best``/``rule`` list of
            the wrong shape (also an ``AssertionError``).
        KeyError: a rule other than ``'greater'``/``'less'``/``None``.
    """

    priority: PriorityLike = "VERY_LOW"

    def __init__(
        self,
        interval: int = -1,
        by_epoch: bool | None = None,
        save_optimizer: bool = True,
        save_param_scheduler: bool = True,
        out_dir: str | os.PathLike[str] | None = None,
        max_keep_ckpts: int = -1,
        save_last: bool = True,
        save_best: str | list[str] | None = "auto",
        rule: str | list[str] | None = "greater",
        greater_keys: str | Sequence[str] | None = None,
        less_keys: str | Sequence[str] | None = None,
        file_client_args: dict[str, Any] | None = None,
        published_keys: str | Sequence[str] | None = None,
        *,
        filename_tmpl: str | None = None,
        save_begin: int = 0,
        backend_args: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        _check_type("interval", interval, int, "an int (-1: only the last)")
        _check_type("max_keep_ckpts", max_keep_ckpts, int, "an int (-1: keep all)")
        _check_type("save_begin", save_begin, int, "a non-negative int")
        if by_epoch is not None:
            _check_type("by_epoch", by_epoch, bool, "a bool or None")
        for flag, value in (
            ("save_optimizer", save_optimizer),
            ("save_param_scheduler", save_param_scheduler),
            ("save_last", save_last),
        ):
            _check_type(flag, value, bool, "a bool")
        if out_dir is not None:
            _check_type("out_dir", out_dir, (str, os.PathLike), "None, a str or a path")
        for name, args in (("file_client_args", file_client_args), ("backend_args", backend_args)):
            if args is not None:
                _check_type(name, args, dict, "a dict or None")
        if file_client_args is not None and backend_args is not None:
            raise ValueError(
                "CheckpointHook: file_client_args and backend_args cannot both be set; use backend_args"
            )
        if save_begin < 0:
            raise ValueError(f"CheckpointHook: save_begin should not be less than 0, got {save_begin}")
        if filename_tmpl is not None:
            _check_type("filename_tmpl", filename_tmpl, str, "a str.format template or None")
            try:
                filename_tmpl.format(1)
            except (IndexError, KeyError, ValueError) as error:
                raise ValueError(
                    f"CheckpointHook: filename_tmpl {filename_tmpl!r} cannot be formatted with the "
                    f"step number ({error}); use one positional field, e.g. 'epoch_{{}}.pth'"
                ) from None
        best = _str_list("save_best", save_best)
        if best is not None and "auto" in best and len(best) != 1:
            raise CheckpointArgumentError(
                f'CheckpointHook: Only support one "auto" in "save_best" list, got {save_best!r}'
            )
        if rule is not None and not isinstance(rule, (str, list)):
            raise CheckpointArgumentTypeError(
                f'CheckpointHook: "rule" should be a str or list of str or None, got {rule!r}'
            )
        self.greater_keys = _keys("greater_keys", greater_keys, DEFAULT_GREATER_KEYS)
        self.less_keys = _keys("less_keys", less_keys, DEFAULT_LESS_KEYS)
        rule_list: list[str | None] = list(rule) if isinstance(rule, list) else [rule]
        rules = _resolve_rules(best or [], rule_list, self.greater_keys, self.less_keys) if best else []
        published = _str_list("published_keys", published_keys)
        self.interval, self.by_epoch, self.max_keep_ckpts = interval, by_epoch, max_keep_ckpts
        self.save_optimizer, self.save_param_scheduler = save_optimizer, save_param_scheduler
        self.out_dir = None if out_dir is None else os.fspath(out_dir)
        self.save_last, self.save_begin, self.filename_tmpl = save_last, save_begin, filename_tmpl
        self.save_best, self.key_indicators, self.rule, self.rules = best, list(best or []), rule, rules
        self.file_client_args, self.backend_args = file_client_args, backend_args
        self.published_keys, self.args = published, kwargs
        self.plan = CheckpointPlan(
            interval=interval,
            by_epoch=by_epoch,
            save_optimizer=save_optimizer,
            save_param_scheduler=save_param_scheduler,
            out_dir=self.out_dir,
            max_keep_ckpts=max_keep_ckpts,
            save_last=save_last,
            save_best=tuple(best or ()),
            rules=tuple(rules),
            greater_keys=self.greater_keys,
            less_keys=self.less_keys,
            filename_tmpl=filename_tmpl,
            published_keys=None if published is None else tuple(published),
            save_begin=save_begin,
            extra=dict(kwargs),
        )
        for key, chosen in zip(self.key_indicators, rules):
            if chosen == "greater" and key != "auto" and self.plan.inferred_rule(key) == "less":
                warnings.warn(
                    f"CheckpointHook: save_best {key!r} is compared with rule='greater' (the "
                    "default); pass rule='less' (or rule=None to infer it) if lower is better",
                    stacklevel=2,
                )

    def to_fn_hook(self, name: str) -> FnHook[CheckpointState]:
        """This hook's pure handlers as a pipeline member named ``name``."""
        return self.plan.fn_hook(name, self.priority)

    def before_train(self, runner: Any) -> None:
        """Trim kept checkpoints to ``max_keep_ckpts``."""
        runner.run_hook(self, Event.BEFORE_TRAIN, EventInfo())

    def after_load_checkpoint(self, runner: Any, checkpoint: dict[str, Any]) -> None:
        """Take the kept and best checkpoints from a resumed checkpoint's message hub."""
        runner.run_hook(self, Event.AFTER_LOAD_CHECKPOINT, EventInfo(checkpoint=checkpoint))

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: DATA_BATCH = None, outputs: Any = None
    ) -> None:
        """Save by iteration when due."""
        info = EventInfo(batch_idx=batch_idx, data_batch=data_batch, outputs=outputs)
        runner.run_hook(self, Event.AFTER_TRAIN_ITER, info)

    def after_train_epoch(self, runner: Any) -> None:
        """Save by epoch when due."""
        runner.run_hook(self, Event.AFTER_TRAIN_EPOCH, EventInfo())

    def after_val_epoch(self, runner: Any, metrics: dict[str, float] | None = None) -> None:
        """Save the best checkpoints that improved."""
        runner.run_hook(self, Event.AFTER_VAL_EPOCH, EventInfo(metrics=metrics))

    def after_train(self, runner: Any) -> None:
        """Publish the last and best checkpoints."""
        runner.run_hook(self, Event.AFTER_TRAIN, EventInfo())
