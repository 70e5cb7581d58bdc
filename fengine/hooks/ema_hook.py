"""EMAHook: keep a weight average of the model; validate and test on it; checkpoint it.

Pure part: the hook's own state (:class:`EMAHookState`: the :class:`~fengine.core.ema.EMAState`
and, while validation or testing runs on the average, the source weights it replaced) and its
handlers, built by :func:`ema_fn_hook`:

* ``before_run``: the average starts as a copy of the model (``run.params``/``run.buffers``).
* ``after_train_iter``: from ``begin_iter`` (or ``begin_epoch``) on, fold the model's weights into
  the average; before that, copy them (``steps`` unchanged), as MMEngine.
* ``before_{val,test}_epoch``: ``LoadWeights`` the average into the model, keeping the source
  weights in the state; ``after_{val,test}_epoch``: ``LoadWeights`` them back. Training therefore
  continues on the source weights. Buffers are swapped too only with ``update_buffers``.
* ``before_save_checkpoint``: MMEngine's layout, via ``AddToCheckpoint``: ``state_dict`` holds the
  average (deployable) and ``ema_state_dict`` the raw weights under ``module.<name>`` plus
  ``steps``.
* ``after_load_checkpoint``: resuming a checkpoint with ``ema_state_dict`` swaps the two back (the
  model gets the raw weights) and restores the average; otherwise the average becomes a copy of
  the checkpoint's ``state_dict`` (with a warning when resuming).

With a model sharded by FSDP2 the average starts from the ``DTensor`` shards, so each rank
averages its own shards (nothing is gathered per step); a sharded checkpoint stores it in its DCP
data (:mod:`fengine.runner.shard_refs`) and a resumed run reads it back sharded like its model.

Façade: :class:`EMAHook`.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs
import torch
from torch import Tensor, nn

from fengine.core import ema as fc_ema
from fengine.core import plain
from fengine.core.effects import AddToCheckpoint, LoadWeights, LogText
from fengine.core.events import Event
from fengine.core.pipeline import FnHook, Handler
from fengine.core.priority import PriorityLike
from fengine.core.run import EventInfo, RunState
from fengine.core.sharded_step import checkpoint_tensor
from fengine.hooks.bound import bound_runner, bound_state
from fengine.hooks.builtin import BuiltinHook
from fengine.model.averaged_model import BaseAveragedModel
from fengine.model.wrappers.utils import is_model_wrapper
from fengine.registry import HOOKS, MODELS

_WARNING = 30  # logging.WARNING
_DEFAULT_MOMENTUM = 0.0002


class EMAHookArgumentError(ValueError, AssertionError):
    """A bad ``begin_iter``/``begin_epoch`` (an ``AssertionError`` too, as MMEngine's ``assert``)."""


@plain.register("hooks.EMAHookState")
@attrs.frozen(eq=False)
class EMAHookState:
    """EMAHook's own state.

    Args:
        ema: the average (``None`` until the first event that sees the model).
        stash: the source weights replaced by the average while validation/testing runs.
    """

    ema: fc_ema.EMAState | None = None
    stash: Mapping[str, Tensor] | None = None


def swap_state_dicts(
    state_dict: Mapping[str, Any], ema_state_dict: Mapping[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Exchange ``state_dict[k]`` and ``ema_state_dict['module.' + k]`` for every such pair.

    Args:
        state_dict: model weights by ``state_dict`` name.
        ema_state_dict: ``steps`` and ``module.<name>`` entries.

    Returns:
        New ``(state_dict, ema_state_dict)``; the inputs are not modified.
    """
    model, averaged = dict(state_dict), dict(ema_state_dict)
    for key, value in ema_state_dict.items():
        name = key[len("module.") :]
        if key.startswith("module.") and name in state_dict:
            averaged[key], model[name] = state_dict[name], value
    return model, averaged


def check_begin(begin_iter: int, begin_epoch: int, max_iters: int, max_epochs: int) -> None:
    """Raise :class:`EMAHookArgumentError` when averaging would begin after the run ends."""
    if begin_epoch > 0 and begin_epoch > max_epochs:
        raise EMAHookArgumentError(
            f"EMAHook begin_epoch={begin_epoch} exceeds max_epochs={max_epochs} "
            "(self.begin_epoch must be <= the run's max_epochs)"
        )
    if begin_epoch == 0 and begin_iter > max_iters:
        raise EMAHookArgumentError(
            f"EMAHook begin_iter={begin_iter} exceeds max_iters={max_iters} "
            "(self.begin_iter must be <= the run's max_iters)"
        )


def ema_fn_hook(
    name: str,
    averager: fc_ema.Averager,
    *,
    priority: PriorityLike = 49,
    begin_iter: int = 0,
    begin_epoch: int = 0,
    strict_load: bool = False,
    device: torch.device | str | None = None,
    donate: bool = False,
) -> FnHook[EMAHookState]:
    """EMAHook's pure handlers as a pipeline member (see the module docstring).

    Args:
        name: the hook's unique name.
        averager: the averaging rule (:mod:`fengine.core.ema`).
        priority: where it runs (49: before NORMAL hooks, after the optimizer step).
        begin_iter: average from this iteration on (copy before it).
        begin_epoch: average from this epoch on; takes over from ``begin_iter`` when positive.
        strict_load: require the checkpoint's names to match the average's exactly.
        device: where the average lives (the model's device if ``None``).
        donate: update the average in place (the façade owns the state); bit-identical.

    Returns:
        The :class:`~fengine.core.pipeline.FnHook`, starting from an empty :class:`EMAHookState`.
    """

    def ready(run: RunState, state: EMAHookState) -> fc_ema.EMAState:
        return state.ema or averager.init(run.params, run.buffers, device=device)

    def before_run(
        run: RunState, state: EMAHookState, info: EventInfo
    ) -> tuple[RunState, EMAHookState]:
        if state.ema is not None:
            return run, state
        return run, attrs.evolve(state, ema=ready(run, state))

    def before_train(
        run: RunState, state: EMAHookState, info: EventInfo
    ) -> tuple[RunState, EMAHookState]:
        check_begin(begin_iter, begin_epoch, run.max_iters, run.max_epochs)
        return run, state

    def after_train_iter(
        run: RunState, state: EMAHookState, info: EventInfo
    ) -> tuple[RunState, EMAHookState]:
        ema = ready(run, state)
        if (run.epoch + 1 >= begin_epoch) if begin_epoch > 0 else (run.iter + 1 >= begin_iter):
            ema = averager.update(ema, run.params, run.buffers, donate=donate)
        else:
            ema = fc_ema.sync(ema, run.params, run.buffers, donate=donate)
        return run, EMAHookState(ema, state.stash)  # every iteration: built, not evolved

    def swap_in(
        run: RunState, state: EMAHookState, info: EventInfo
    ) -> tuple[RunState, EMAHookState]:
        if state.ema is None or state.stash is not None:
            return run, state
        averaged = {**state.ema.params, **(state.ema.buffers if averager.update_buffers else {})}
        live = {**run.params, **run.buffers}
        with torch.no_grad():
            stash = {n: live[n].detach().clone() for n in averaged if n in live}
        return run.emit(LoadWeights(averaged)), attrs.evolve(state, stash=stash)

    def swap_out(
        run: RunState, state: EMAHookState, info: EventInfo
    ) -> tuple[RunState, EMAHookState]:
        if state.stash is None:
            return run, state
        return run.emit(LoadWeights(state.stash)), attrs.evolve(state, stash=None)

    def before_save_checkpoint(
        run: RunState, state: EMAHookState, info: EventInfo
    ) -> tuple[RunState, EMAHookState]:
        checkpoint = info.checkpoint
        if state.ema is None or checkpoint is None or "state_dict" not in checkpoint:
            return run, state
        raw = dict(checkpoint["state_dict"])
        # Saved mid-validation, the model holds the average: the raw weights are in the stash.
        raw.update({n: checkpoint_tensor(t) for n, t in (state.stash or {}).items()})
        exported = fc_ema.ema_state_dict(state.ema, order=raw)
        # No copies on CPU: the hook's state (saved beside) holds the same storages, which
        # torch.save writes once. The checkpoint is written before the next (in-place) update.
        exported = {k: checkpoint_tensor(v) for k, v in exported.items()}
        model, averaged = swap_state_dicts(raw, exported)
        run = run.emit(
            AddToCheckpoint("ema_state_dict", averaged), AddToCheckpoint("state_dict", model)
        )
        return run, state

    def after_load_checkpoint(
        run: RunState, state: EMAHookState, info: EventInfo
    ) -> tuple[RunState, EMAHookState]:
        checkpoint = info.checkpoint
        if checkpoint is None:
            return run, state
        ema = ready(run, state)
        weights = checkpoint.get("state_dict", checkpoint)
        averaged = checkpoint.get("ema_state_dict")
        if averaged is not None and run.resumed:
            model, averaged = swap_state_dicts(weights, averaged)
            ema = fc_ema.load_ema_state_dict(ema, averaged, strict=strict_load)
            run = run.emit(
                AddToCheckpoint("state_dict", model), AddToCheckpoint("ema_state_dict", averaged)
            )
        else:
            if run.resumed:
                message = (
                    "There is no `ema_state_dict` in checkpoint. `EMAHook` will make a copy of "
                    "`state_dict` as the initial `ema_state_dict`"
                )
                run = run.emit(LogText(message, level=_WARNING))
            tensors = {k: v for k, v in weights.items() if isinstance(v, Tensor)}
            ema = fc_ema.load_weights(ema, tensors, strict=strict_load)
        return run, attrs.evolve(state, ema=ema, stash=None)

    on: dict[Event, Handler[EMAHookState]] = {
        Event.BEFORE_RUN: before_run,
        Event.BEFORE_TRAIN: before_train,
        Event.AFTER_TRAIN_ITER: after_train_iter,
        Event.BEFORE_VAL_EPOCH: swap_in,
        Event.AFTER_VAL_EPOCH: swap_out,
        Event.BEFORE_TEST_EPOCH: swap_in,
        Event.AFTER_TEST_EPOCH: swap_out,
        Event.BEFORE_SAVE_CHECKPOINT: before_save_checkpoint,
        Event.AFTER_LOAD_CHECKPOINT: after_load_checkpoint,
    }
    return FnHook(name=name, priority=priority, init=EMAHookState(), on=on)


_BUILTIN: Mapping[str, type[fc_ema.Averager]] = {
    "ExponentialMovingAverage": fc_ema.ExponentialMovingAverage,
    "MomentumAnnealingEMA": fc_ema.MomentumAnnealingEMA,
    "StochasticWeightAverage": fc_ema.StochasticWeightAverage,
}


def _takes(cls: Any, keyword: str) -> bool:
    params = inspect.signature(cls).parameters.values()
    return any(p.name == keyword or p.kind is inspect.Parameter.VAR_KEYWORD for p in params)


def build_averager(
    ema_type: str | type, momentum: float, update_buffers: bool, interval: int, **kwargs: Any
) -> fc_ema.Averager:
    """The pure averager for an ``EMAHook`` configuration.

    Built-in names map to :mod:`fengine.core.ema`; any other name (or class) is looked up in
    ``MODELS``, built over an empty module and asked for its ``averager()`` (fengine's averaged
    models, including subclasses that only define ``avg_func``).

    Args:
        ema_type: ``'ExponentialMovingAverage'``, ``'MomentumAnnealingEMA'``,
            ``'StochasticWeightAverage'``, another registered name, or a class.
        momentum: passed to types that take one (SWA takes none: only the default is accepted).
        update_buffers: average floating-point buffers too.
        interval: average every ``interval``-th iteration.
        **kwargs: further arguments of the type (``gamma``).

    Returns:
        The averager.

    Raises:
        TypeError: arguments the type does not take, or a type without ``averager()``.
        ValueError: an invalid hyper-parameter.
    """
    args: dict[str, Any] = {"interval": interval, "update_buffers": update_buffers, **kwargs}
    cls: Any = _BUILTIN.get(ema_type) if isinstance(ema_type, str) else None
    if cls is None:
        cls = MODELS.resolve(ema_type)
    if _takes(cls, "momentum"):
        args["momentum"] = momentum
    elif momentum != _DEFAULT_MOMENTUM:
        raise TypeError(
            f"EMAHook: ema_type {ema_type!r} takes no momentum, got momentum={momentum!r}"
        )
    if cls in _BUILTIN.values():
        unknown = sorted(set(args) - set(attrs.fields_dict(cls)))
        if unknown:
            raise TypeError(
                f"EMAHook: ema_type {ema_type!r} does not take {unknown}; it takes "
                f"{sorted(attrs.fields_dict(cls))}"
            )
        averager: fc_ema.Averager = cls(**args)
        return averager
    built = cls(nn.Module(), **args)
    if not callable(getattr(built, "averager", None)):
        raise TypeError(
            f"EMAHook: ema_type {ema_type!r} builds {type(built).__name__}, which has no averager(); "
            "subclass fengine.model.BaseAveragedModel"
        )
    result: fc_ema.Averager = built.averager()
    return result


@HOOKS.register_module()
class EMAHook(BuiltinHook):
    """Keeps an exponential (or other) moving average of the model's weights.

    Validation and testing run on the average; training continues on the source weights;
    checkpoints store the average as ``state_dict`` and the raw weights in ``ema_state_dict``
    (MMEngine's layout). See the module docstring for each event.

    Args:
        ema_type: the averaging rule: ``'ExponentialMovingAverage'``,
            ``'MomentumAnnealingEMA'``, ``'StochasticWeightAverage'`` or a registered
            averaged-model class (name or class).
        momentum: weight of the new value, in ``(0, 1)``.
        update_buffers: average floating-point buffers too (else they are copied).
        priority: the hook's priority (49: just before NORMAL).
        strict_load: require the names of a loaded checkpoint to match exactly.
        begin_iter: average from this iteration on; copy the weights before it.
        begin_epoch: average from this epoch on (instead of ``begin_iter``).
        interval: average every ``interval``-th iteration.
        **kwargs: further arguments of ``ema_type`` (``gamma``), and ``device``.

    Raises:
        ValueError: negative ``begin_iter``/``begin_epoch``, both set, or a bad hyper-parameter.
        TypeError: arguments that ``ema_type`` does not take.
    """

    handles: ClassVar[Mapping[Event, str]] = {
        Event.BEFORE_RUN: "Start the average from the model.",
        Event.BEFORE_TRAIN: "Check ``begin_iter``/``begin_epoch`` against the run's length.",
        Event.AFTER_TRAIN_ITER: "Fold the model's weights into the average (or copy them before the begin point).",
        Event.BEFORE_VAL_EPOCH: "Put the average into the model.",
        Event.AFTER_VAL_EPOCH: "Put the source weights back.",
        Event.BEFORE_TEST_EPOCH: "Put the average into the model.",
        Event.AFTER_TEST_EPOCH: "Put the source weights back.",
        Event.BEFORE_SAVE_CHECKPOINT: "Store the average as ``state_dict`` and the raw weights in ``ema_state_dict``.",
        Event.AFTER_LOAD_CHECKPOINT: "Restore the average (resume) or start it from the loaded weights.",
    }

    priority: PriorityLike = 49
    owns: ClassVar[frozenset[str]] = frozenset(
        {"the checkpoint's 'ema_state_dict' and the model's weights (swapped for the average in validation)"}
    )


    def __init__(
        self,
        ema_type: str | type = "ExponentialMovingAverage",
        momentum: float = _DEFAULT_MOMENTUM,
        update_buffers: bool = False,
        priority: PriorityLike = 49,
        *,
        strict_load: bool = False,
        begin_iter: int = 0,
        begin_epoch: int = 0,
        interval: int = 1,
        **kwargs: Any,
    ) -> None:
        for key, value in (("begin_iter", begin_iter), ("begin_epoch", begin_epoch)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise EMAHookArgumentError(f"EMAHook `{key}` must be an int >= 0, got {value!r}")
        if begin_iter and begin_epoch:
            raise EMAHookArgumentError(
                f"EMAHook `begin_iter` and `begin_epoch` should not be both set, got "
                f"begin_iter={begin_iter} and begin_epoch={begin_epoch}"
            )
        self.device = kwargs.pop("device", None)
        self.averager = build_averager(ema_type, momentum, update_buffers, interval, **kwargs)
        self._model_args: dict[str, Any] = {"momentum": momentum, "interval": interval, "update_buffers": update_buffers, **kwargs}
        self._view: BaseAveragedModel | None = None
        self.ema_type = ema_type
        self.priority = priority
        self.strict_load = strict_load
        self.begin_iter = begin_iter
        self.begin_epoch = begin_epoch
        self.enabled_by_epoch = begin_epoch > 0

    @property
    def src_model(self) -> nn.Module | None:
        """The model being trained (unwrapped), in the runner this hook last ran in."""
        runner = bound_runner(self)
        if runner is None:
            return None
        model: nn.Module = runner.model
        return model.module if is_model_wrapper(model) else model  # type: ignore[return-value]

    @property
    def ema_model(self) -> BaseAveragedModel | None:
        """The average as MMEngine's averaged-model module (``steps``, ``module.<name>``).

        A view: its tensors are the hook's own (updated in place as training goes on), and while
        validation or testing runs on the average it holds the source weights, as MMEngine's
        swapped module does. ``None`` before the hook has seen a model.
        """
        state = bound_state(self)
        source = self.src_model
        if not isinstance(state, EMAHookState) or state.ema is None or source is None:
            return None
        if self._view is None or self._view.module.__class__ is not source.__class__:
            cls: Any = MODELS.resolve(self.ema_type)
            args = {k: v for k, v in self._model_args.items() if k != "momentum" or _takes(cls, k)}
            self._view = cls(source, device=self.device, **args)
        view = self._view
        shown = {**state.ema.params, **state.ema.buffers, **(state.stash or {})}
        for name, tensor in [*view.module.named_parameters(), *view.module.named_buffers()]:
            if name in shown:
                tensor.data = shown[name]
        view.steps.fill_(state.ema.steps)
        return view

    def pure_fn_hook(self, name: str) -> FnHook[EMAHookState]:
        """This hook's pure handlers as a pipeline member named ``name`` (updates donated)."""
        return ema_fn_hook(
            name,
            self.averager,
            priority=self.priority,
            begin_iter=self.begin_iter,
            begin_epoch=self.begin_epoch,
            strict_load=self.strict_load,
            device=self.device,
            donate=True,
        )
