"""The runner's training step: the pure step over the run's ``TrainState``, or the model's own.

``runner_train_step(model, optim_wrapper, check_finite)`` returns
``step(state, data_batch) -> (state, outputs)``. For a :class:`~fengine.model.BaseModel` whose
``train_step`` is BaseModel's own, it is :func:`fengine.core.step.make_train_step` over the model
(preprocessing, ``forward(mode='loss')`` and ``total_loss`` run on the state's tensors), with the
optimizer wrapper's clipping and optimizer as the transform, donated: the state's tensors are the
module's own parameters and buffers, updated in place, so the module is a view of the record.
Everything else takes the compatibility path: ``model.train_step(data_batch, optim_wrapper)``, as
MMEngine calls it, and the record follows the module. Both give the same numbers bit for bit.

The compatibility path is chosen when ``train_step`` is overridden (by the class or the
instance), the model is wrapped (DDP, whose reducer runs inside ``backward``), the wrapper is not
exactly :class:`~fengine.optim.OptimWrapper` (AMP, a dict of wrappers) or accumulates gradients,
the model's forward is compiled, or ``check_finite='skip'`` needs the loss before the update.
Within the pure path, steps that only torch's own optimizer can take (options no transform
covers, sparse gradients, registered optimizer step hooks, the profiler recording) hand the
gradients to ``.grad`` and call the wrapper's ``step``, exactly as the compatibility path does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn

from fengine.core.optim import GradientTransform
from fengine.core.state import TrainState
from fengine.core.step import ModelView, make_train_step
from fengine.model.base_model.base_model import BaseModel
from fengine.model.wrappers import is_model_wrapper
from fengine.optim.optimizer.optimizer_wrapper import OptimWrapper
from fengine.optim.optimizer.pure_step import PureStepOptimizer
from fengine.optim.scheduler.base import count_step

__all__ = ["RunnerStep", "compat_reason", "follow_module", "runner_train_step"]

#: ``step(state, data_batch) -> (new_state, outputs)``: one training iteration's update.
RunnerStep = Callable[[TrainState[Any], Any], tuple[TrainState[Any], Any]]


def compat_reason(model: Any, optim_wrapper: Any, check_finite: bool | str, compiled: bool) -> str | None:
    """Why the runner calls ``model.train_step`` instead of the pure step (``None``: it does not).

    Args:
        model: the runner's model (maybe wrapped).
        optim_wrapper: the built optimizer wrapper.
        check_finite: the train loop's setting.
        compiled: whether the model's forward runs under ``torch.compile``.

    Returns:
        A short reason, or ``None`` when the pure step applies.
    """
    if is_model_wrapper(model):
        return "the model is wrapped"
    if not isinstance(model, BaseModel):
        return "the model is not a BaseModel"
    if type(model).train_step is not BaseModel.train_step or "train_step" in vars(model):
        return "train_step is overridden"
    if type(optim_wrapper) is not OptimWrapper:
        return f"the optimizer wrapper is a {type(optim_wrapper).__name__}"
    if optim_wrapper._accumulative_counts != 1:
        return "gradients are accumulated"
    if compiled:
        return "the forward is compiled"
    persistent = model.state_dict(keep_vars=True)
    if any(name not in persistent for name, _ in model.named_buffers()):
        return "the model has non-persistent buffers (the run's record holds the state_dict's tensors)"
    if check_finite == "skip":
        return "check_finite='skip' needs the loss before the update"
    return None


class _WrapperTransform:
    """The optimizer wrapper as a :class:`~fengine.core.optim.GradientTransform` over parameter names.

    ``update`` clips the gradients as the wrapper does and steps the optimizer's record with its
    pure transform, donated (the parameters are the module's, updated in place); the record stays
    the optimizer's state, so ``state_dict()``, schedulers and ``param_groups`` see it.
    """

    def __init__(self, wrapper: OptimWrapper, model: nn.Module) -> None:
        self.wrapper = wrapper
        self._params = dict(model.named_parameters())
        self._names = {id(p): name for name, p in self._params.items()}

    def init(self, params: Mapping[str, Tensor]) -> Any:
        """The optimizer's current record (``None`` for optimizers fengine does not step)."""
        optimizer = self.wrapper.optimizer
        return optimizer.opt_state if isinstance(optimizer, PureStepOptimizer) else None

    def update(
        self, grads: Mapping[str, Tensor | None], state: Any, params: Mapping[str, Tensor], *, donate: bool = False
    ) -> tuple[dict[str, Tensor], Any]:
        # Parameters are updated in place: the state's own mapping is handed back (mappings are
        # never mutated), so whoever keys a cache by it (EMA's plan) keeps hitting.
        kept = params if isinstance(params, dict) else dict(params)
        wrapper = self.wrapper
        optimizer = wrapper.optimizer
        wrapper._inner_count += 1  # the backward the wrapper would have counted
        if isinstance(optimizer, PureStepOptimizer) and optimizer.opt_state is not None and not self._torch_only(optimizer):
            flat = optimizer.flat_params
            names = self._names
            glist = [grads.get(names.get(id(p), "")) for p in flat]
            record = optimizer.step_record(glist, self._clip if wrapper.clip_grad_kwargs else None)
            if record is not None:
                # What ``wrapper.step()`` (and the ``optimizer.step()`` it calls) count for
                # the schedulers stepping them, so their order check sees this step.
                count_step(wrapper)
                count_step(optimizer)
                return kept, record
        # Only torch's own step fits: the gradients go where ``backward`` would have put them.
        params_by_name = self._params
        for name, grad in grads.items():
            if grad is not None:
                param = params_by_name[name]
                param.grad = grad if param.grad is None else param.grad.add_(grad)
        wrapper.step()
        wrapper.zero_grad()
        return kept, optimizer.opt_state if isinstance(optimizer, PureStepOptimizer) else None

    def _clip(self, grads: list[Tensor | None]) -> None:
        """The wrapper's clipping on ``grads`` (aligned with the optimizer's parameters)."""
        optimizer = self.wrapper.optimizer
        assert isinstance(optimizer, PureStepOptimizer)  # only the pure path clips here
        flat = optimizer.flat_params
        self.wrapper.clip_grads([g for p, g in zip(flat, grads) if g is not None and p.requires_grad])

    def _torch_only(self, optimizer: PureStepOptimizer) -> bool:
        clip = self.wrapper.clip_grad_kwargs
        return optimizer.step_hooks_active() or bool(clip and clip.get("foreach") is False)


def runner_train_step(model: Any, optim_wrapper: Any, check_finite: bool | str, compiled: bool) -> RunnerStep:
    """The training step the runner's train loop calls (see the module docstring).

    Args:
        model: the runner's model (maybe wrapped).
        optim_wrapper: the built optimizer wrapper.
        check_finite: the train loop's setting (``'skip'`` wraps the optimizer wrapper).
        compiled: whether the model's forward runs under ``torch.compile``.

    Returns:
        ``step(state, data_batch) -> (new_state, outputs)``; ``outputs`` is what ``train_step``
        returns (``log_vars``), handed to the ``after_train_iter`` hooks.
    """
    if compat_reason(model, optim_wrapper, check_finite, compiled) is not None:

        def compat(state: TrainState[Any], data_batch: Any) -> tuple[TrainState[Any], Any]:
            outputs = model.train_step(data_batch, optim_wrapper=optim_wrapper)
            return follow_module(state, optim_wrapper), outputs

        return compat

    tx = _WrapperTransform(optim_wrapper, model)
    forward = _loss_of(model)
    pure = make_train_step(model, forward, GradientTransform(tx.init, tx.update))

    def step(state: TrainState[Any], data_batch: Any) -> tuple[TrainState[Any], Any]:
        new_state, out = pure(state, data_batch, donate=True)
        old = state.buffers
        if new_state.buffers is not old and any(b is not old.get(n) for n, b in new_state.buffers.items()):
            _adopt_buffers(model, old, new_state.buffers)  # the forward reassigned a buffer
        return new_state, out.log_vars

    return step


def follow_module(state: TrainState[Any], optim_wrapper: Any) -> TrainState[Any]:
    """The record after ``model.train_step`` updated the module in place: one more step, and the
    optimizer's record (``None`` for optimizers fengine does not step itself).

    Args:
        state: the record before the step (its tensors are the module's, already updated).
        optim_wrapper: the optimizer wrapper the step used.

    Returns:
        The new record.
    """
    record = getattr(getattr(optim_wrapper, "optimizer", None), "opt_state", None)
    return state.replace(step=state.step + 1, opt_state=record)


def _loss_of(model: BaseModel) -> Callable[[ModelView, Any], Any]:
    """``loss_fn(view, batch)``: BaseModel's ``train_step`` up to the backward, on the view's tensors."""

    def losses(data_batch: Any) -> Any:
        data = model.data_preprocessor(data_batch, True)
        return model.total_loss(model._run_forward(data, mode="loss"))

    def loss_fn(view: ModelView, data_batch: Any) -> Any:
        return view.apply(losses, data_batch)

    return loss_fn


def _adopt_buffers(model: nn.Module, old: Mapping[str, Tensor], new: Mapping[str, Tensor]) -> None:
    for name, tensor in new.items():
        if tensor is not old.get(name):
            owner, _, attr = name.rpartition(".")
            model.get_submodule(owner)._buffers[attr] = tensor
