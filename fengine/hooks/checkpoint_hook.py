"""CheckpointHook: MMEngine's checkpoint-saving hook as a façade over :class:`CheckpointPlan`.

The façade validates MMEngine's constructor arguments (with MMEngine's error types) and builds
the pure :class:`~fengine.hooks.checkpoint_plan.CheckpointPlan`, whose module documents every
save, deletion and publication; its MMEngine methods hand their event to the runner.
"""

from __future__ import annotations

import os
import string
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, cast

from fengine.core.events import Event
from fengine.core.pipeline import FnHook
from fengine.core.priority import PriorityLike
from fengine.file_client import storage_of
from fengine.hooks.bound import bound_runner, bound_state
from fengine.hooks.builtin import BuiltinHook
from fengine.hooks.checkpoint_plan import CheckpointPlan, checkpoint_folder
from fengine.hooks.checkpoint_state import CheckpointState
from fengine.hooks.rules import DEFAULT_GREATER_KEYS, DEFAULT_LESS_KEYS, Rule, infer_rule
from fengine.registry import HOOKS

__all__ = [
    "CheckpointArgumentError",
    "CheckpointArgumentTypeError",
    "CheckpointHook",
]


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


def _keys(name: str, value: object, default: tuple[str, ...]) -> Sequence[str]:
    """The keys as MMEngine keeps them: a str as a 1-tuple, a sequence as given (checked)."""
    if _str_list(name, value) is None:
        return default
    return (value,) if isinstance(value, str) else cast(Sequence[str], value)


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


def _check_filename_tmpl(template: str) -> None:
    """``template`` must hold exactly one field, filled with the step number (``'epoch_{}.pth'``).

    Without one, every save writes the same file and ``max_keep_ckpts`` deletes the only copy.
    """
    try:
        fields = sum(1 for _, name, _, _ in string.Formatter().parse(template) if name is not None)
        template.format(1)
    except (IndexError, KeyError, ValueError) as error:
        raise ValueError(
            f"CheckpointHook: filename_tmpl {template!r} cannot be formatted with the step number "
            f"({error}); use one positional field, e.g. 'epoch_{{}}.pth' or 'ckpt_{{:06d}}.pth'"
        ) from None
    if fields != 1:
        raise ValueError(
            f"CheckpointHook: filename_tmpl {template!r} has {fields} replacement fields; it needs "
            "exactly one for the step number (without it every save overwrites one file, which "
            "max_keep_ckpts then deletes), e.g. 'epoch_{}.pth' or 'ckpt_{:06d}.pth'"
        )


@HOOKS.register_module()
class CheckpointHook(BuiltinHook):
    """Saves regular, best and published checkpoints (see :mod:`fengine.hooks.checkpoint_plan`).

    Args:
        interval: save every ``interval`` epochs (iterations), a positive int; ``-1`` (MMEngine's
            "never"): only the last (with ``save_last``). ``0`` and other negatives are errors.
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
        file_client_args: MMEngine's storage arguments; only the local disk is accepted
            (``backend='disk'``/``'local'``): :attr:`file_client` is built from them.
        published_keys: after training, publish copies of the last and best checkpoints that keep
            only these top-level keys.
        filename_tmpl: template of regular names with exactly one field for the step number,
            e.g. ``'ckpt_{:03d}.pth'``.
        save_begin: the first epoch (iteration) counted by ``interval``.
        backend_args: MMEngine's storage arguments; only the local disk is accepted:
            :attr:`file_backend` is built from them (or is :attr:`file_client` when
            ``file_client_args`` is given).
        **kwargs: passed to the runner's ``save_checkpoint`` for regular and best checkpoints;
            ``save_format='full'`` makes a sharded (FSDP) run write one ordinary ``.pth`` of the
            gathered weights on rank 0 instead of its DCP directories (``'sharded'``).

    Raises:
        TypeError: an argument of the wrong type (the save_best/rule/published_keys ones are also
            ``AssertionError`` s, as in MMEngine).
        ValueError: ``interval`` 0 or below -1, ``save_begin < 0``, a ``filename_tmpl`` without
            exactly one field, both ``file_client_args`` and
            ``backend_args``, a rule that cannot be inferred, or a ``save_best``/``rule`` list of
            the wrong shape (also an ``AssertionError``).
        KeyError: a rule other than ``'greater'``/``'less'``/``None``.
    """

    handles: ClassVar[Mapping[Event, str]] = {
        Event.BEFORE_TRAIN: "Trim kept checkpoints to ``max_keep_ckpts``.",
        Event.AFTER_LOAD_CHECKPOINT: "Take the kept and best checkpoints from a resumed checkpoint's message hub.",
        Event.AFTER_TRAIN_ITER: "Save by iteration when due.",
        Event.AFTER_TRAIN_EPOCH: "Save by epoch when due.",
        Event.AFTER_VAL_EPOCH: "Save the best checkpoints that improved.",
        Event.AFTER_TRAIN: "Publish the last and best checkpoints.",
    }

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
        if kwargs.get("save_format", "sharded") not in ("sharded", "full"):
            raise ValueError(
                "CheckpointHook: save_format must be 'sharded' (a sharded run's DCP directories) or "
                f"'full' (one .pth of the gathered weights on rank 0), got {kwargs['save_format']!r}"
            )
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
                'CheckpointHook: "file_client_args" and "backend_args" cannot be set at the same time; '
                "use backend_args"
            )
        if interval == 0 or interval < -1:
            raise CheckpointArgumentError(
                f"CheckpointHook: interval must be a positive int (save every `interval` epochs or "
                f"iterations) or -1 (never by interval; `save_last` still saves the last), got {interval}"
            )
        if save_begin < 0:
            raise ValueError(f"CheckpointHook: save_begin should not be less than 0, got {save_begin}")
        if filename_tmpl is not None:
            _check_type("filename_tmpl", filename_tmpl, str, "a str.format template or None")
            _check_filename_tmpl(filename_tmpl)
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
        greater, less = tuple(self.greater_keys), tuple(self.less_keys)
        rules = _resolve_rules(best or [], rule_list, greater, less) if best else []
        published = _str_list("published_keys", published_keys)
        self.interval, self.by_epoch, self.max_keep_ckpts = interval, by_epoch, max_keep_ckpts
        self.save_optimizer, self.save_param_scheduler = save_optimizer, save_param_scheduler
        self._out_dir = None if out_dir is None else os.fspath(out_dir)
        self.save_last, self.save_begin, self.filename_tmpl = save_last, save_begin, filename_tmpl
        self.save_best, self.key_indicators, self.rule, self.rules = best, list(best or []), rule, rules
        self.file_client_args, self.backend_args = file_client_args, backend_args
        #: MMEngine's storage objects over the local disk (fengine writes through its own atomic
        #: helpers; these serve code that joins and tests paths through them).
        self.file_client, self.file_backend = storage_of(self._out_dir, file_client_args, backend_args)
        self.published_keys, self.args = published, kwargs
        self.plan = CheckpointPlan(
            interval=interval,
            by_epoch=by_epoch,
            save_optimizer=save_optimizer,
            save_param_scheduler=save_param_scheduler,
            out_dir=self._out_dir,
            max_keep_ckpts=max_keep_ckpts,
            save_last=save_last,
            save_best=tuple(best or ()),
            rules=tuple(rules),
            greater_keys=greater,
            less_keys=less,
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

    @property
    def out_dir(self) -> str | None:
        """The folder checkpoints go to once the hook is in a runner, else ``out_dir`` as given.

        MMEngine resolves ``out_dir`` against the work dir in ``before_train``
        (:func:`~fengine.hooks.checkpoint_plan.checkpoint_folder`).
        """
        runner = bound_runner(self)
        work_dir = getattr(runner, "work_dir", None)
        return self._out_dir if work_dir is None else checkpoint_folder(self._out_dir, work_dir)

    @property
    def best_ckpt_path(self) -> str | None:
        """The best checkpoint's path (``None`` before one is saved); only with one ``save_best`` key.

        Raises:
            AttributeError: ``save_best`` is ``None`` or names several keys (MMEngine has no
                such attribute then; see :attr:`best_ckpt_path_dict`).
        """
        if len(self.key_indicators) != 1:
            raise AttributeError("CheckpointHook.best_ckpt_path exists when save_best names one key")
        return self._best_paths()[0]

    @property
    def best_ckpt_path_dict(self) -> dict[str, str | None]:
        """The best checkpoint's path by ``save_best`` key; only with several keys.

        Raises:
            AttributeError: ``save_best`` is ``None`` or names one key (see :attr:`best_ckpt_path`).
        """
        if len(self.key_indicators) < 2:
            raise AttributeError("CheckpointHook.best_ckpt_path_dict exists when save_best names several keys")
        return dict(zip(self.key_indicators, self._best_paths()))

    def _best_paths(self) -> list[str | None]:
        state = bound_state(self)
        paths = state.best_ckpts if isinstance(state, CheckpointState) else ()
        return [paths[i] if i < len(paths) else None for i in range(len(self.key_indicators))]

    def pure_fn_hook(self, name: str) -> FnHook[CheckpointState]:
        """This hook's pure handlers as a pipeline member named ``name``."""
        return self.plan.fn_hook(name, self.priority)
