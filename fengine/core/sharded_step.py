"""The pure steps of :mod:`fengine.core.step` for a model sharded by FSDP2's ``fully_shard``.

``fully_shard`` turns each parameter into a ``DTensor`` holding this rank's shard; before a
sharded module runs, its hooks all-gather the full parameters *from the module's own sharded
parameters*, and after backward they reduce-scatter the gradients into those parameters'
``.grad``. Tensors swapped into the module's slots (how :class:`~fengine.core.step.ModelView`
runs a plain module on a state) would be ignored, and ``torch.autograd.grad`` would skip the
reduce-scatter. So the module's sharded parameters serve as the step's working storage:

1. the state's parameter shards are copied into the module's (a copy of 1/world_size of the
   parameters; nothing when they are the same tensors),
2. ``loss_fn`` runs the module on them and on the state's buffers (swapped in as usual: FSDP
   leaves buffers alone), and ``loss.backward()`` lets FSDP all-gather and reduce-scatter,
3. the sharded gradients (the mean over ranks, as DDP's) are taken out of ``.grad`` and the
   optimizer transform updates the state's shards (foreach ops on ``DTensor``s: each rank updates
   its own shard; a ``clip_grad_norm`` stage's total norm is the global one across shards).

The input state is never written, as for a plain model; only the module's sharded parameters
and their ``.grad`` change (the module is the step's scratch space, never its truth).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from fengine.core.optim import GradientTransform
from fengine.core.state import TrainState
from fengine.core.step import (
    EvalStep,
    LossFn,
    ModelView,
    StepOutput,
    TrainStep,
    _eval_step,
    _loss_and_logs,
    _loss_forward,
    _slots,
    _updated,
)
from fengine.core.tree import is_dtensor, is_fsdp_module

__all__ = ["checkpoint_tensor", "is_fully_sharded", "make_sharded_eval_step", "make_sharded_train_step"]


def is_fully_sharded(model: nn.Module) -> bool:
    """Whether ``fully_shard`` was applied to ``model`` or to one of its submodules."""
    return any(is_fsdp_module(module) for module in model.modules())


def checkpoint_tensor(tensor: Tensor) -> Tensor:
    """A tensor as a checkpoint holds it: detached on the CPU, or, a ``DTensor`` shard, detached
    where it is (a sharded checkpoint writes each rank's shards from their device, and stores a
    tensor that several entries hold once, by its storage)."""
    return tensor.detach() if is_dtensor(tensor) else tensor.detach().cpu()


def _sharded_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    own = dict(model.named_parameters())
    plain = [name for name, p in own.items() if not is_dtensor(p)]
    if plain:
        raise ValueError(
            f"the model is only partly sharded: parameters {plain[:5]} are not DTensors; apply "
            "fully_shard to the root module too (after its submodules), so every parameter is sharded"
        )
    return own


def _buffer_slots(model: nn.Module) -> tuple[tuple[dict[str, Any], str, str], ...]:
    names = {name for name, _ in model.named_buffers()}  # a slot's last field: its first name
    return tuple(slot for slot in _slots(model) if slot[2] in names)


def _load_shards(own: Mapping[str, nn.Parameter], params: Mapping[str, Tensor]) -> None:
    """Copy the state's parameter shards into the module's (the tensors FSDP gathers from)."""
    missing = sorted(set(own) - set(params))
    if missing:
        raise KeyError(
            f"the state lacks parameters of the model: {missing}; build it with "
            "TrainState.create(model, tx) from the same sharded model"
        )
    with torch.no_grad():
        for name, target in own.items():
            source = params[name]
            if source is not target:
                target.copy_(source)


def make_sharded_train_step(
    model: nn.Module,
    loss_fn: LossFn,
    tx: GradientTransform[Any],
    *,
    compile: bool | Mapping[str, Any] = False,
) -> TrainStep:
    """:func:`~fengine.core.step.make_train_step` for a ``fully_shard``-ed model (see the module).

    Args:
        model: the sharded module; every parameter must be a ``DTensor`` (``fully_shard`` the
            root too).
        loss_fn: ``loss_fn(view, batch)`` → a scalar tensor or a dict of losses.
        tx: an optimizer transform; it runs on the parameter and gradient shards.
        compile: as ``make_train_step``'s.

    Returns:
        ``step(state, batch, *, donate=False) -> (new_state, StepOutput)``.

    Raises:
        ValueError: a parameter of ``model`` is not sharded.
    """
    own = _sharded_parameters(model)
    trainable = tuple(n for n, p in own.items() if p.requires_grad)
    slots = _buffer_slots(model)
    update = tx.update
    forward = _loss_forward(model, loss_fn, slots, compile)

    def step(
        state: TrainState[Any], batch: Any, *, donate: bool = False
    ) -> tuple[TrainState[Any], StepOutput]:
        if not model.training:
            model.train()
        params, buffers = state.params, state.buffers
        _load_shards(own, params)
        tensors = dict(buffers if donate else {n: b.clone() for n, b in buffers.items()})
        for name in trainable:
            own[name].grad = None
        with torch.enable_grad():
            loss, log_vars = _loss_and_logs(forward(tensors, batch))
            loss.backward()  # type: ignore[no-untyped-call]
        grads: dict[str, Tensor | None] = {}
        for name in trainable:
            grads[name], own[name].grad = own[name].grad, None
        return _updated(state, update, grads, tensors, loss, log_vars, donate)

    return step


def make_sharded_eval_step(
    model: nn.Module, forward: Callable[[ModelView, Any], Any] | None = None
) -> EvalStep:
    """:func:`~fengine.core.step.make_eval_step` for a ``fully_shard``-ed model.

    The state's parameter shards are copied into the module's, then the module runs in eval
    mode under ``torch.no_grad()`` on them and on the state's buffers.

    Args:
        model: the sharded module.
        forward: ``forward(view, batch)`` → outputs; default ``view(batch)``.

    Returns:
        ``eval_step(state, batch) -> outputs``.

    Raises:
        ValueError: a parameter of ``model`` is not sharded.
    """
    own = _sharded_parameters(model)

    def tensors_of(state: TrainState[Any]) -> dict[str, Tensor]:
        _load_shards(own, state.params)
        return dict(state.buffers)

    return _eval_step(model, forward, _buffer_slots(model), tensors_of)
