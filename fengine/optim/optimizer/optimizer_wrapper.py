"""``OptimWrapper``: MMEngine's optimizer wrapper (accumulation, clipping) over an optimizer."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from fengine.core import optim as fo
from fengine.optim.optimizer.base import BaseOptimWrapper, OptimWrapperError, message_hub, warn
from fengine.registry import OPTIM_WRAPPERS, OPTIMIZERS

_NO_CONTEXT: AbstractContextManager[None] = nullcontext()

_CLIP_KEYS = {
    "norm": ({"max_norm"}, {"max_norm", "norm_type", "error_if_nonfinite", "foreach"}),
    "value": ({"clip_value"}, {"clip_value", "foreach"}),
}


def _build_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    if isinstance(optimizer, torch.optim.Optimizer):
        return optimizer
    if isinstance(optimizer, Mapping):
        if "params" not in optimizer:
            raise TypeError(
                f"optimizer config {dict(optimizer)!r} has no 'params'; give the parameters "
                "(params=model.parameters()) or build the wrapper with build_optim_wrapper(model, cfg)"
            )
        built: torch.optim.Optimizer = OPTIMIZERS.build(optimizer)
        return built
    raise TypeError(
        f"optimizer must be a torch.optim.Optimizer or a config dict, got {type(optimizer).__name__}"
    )


def _has_batch_norm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@OPTIM_WRAPPERS.register_module()
class OptimWrapper(BaseOptimWrapper):
    """Backward, optional gradient clipping, optimizer step and gradient accumulation.

    ``update_params(loss)`` divides ``loss`` by the accumulation factor, back-propagates it, and
    every ``accumulative_counts`` calls (or at the last call set by
    :meth:`initialize_count_status`) clips the gradients, steps and zeroes them. The last, shorter
    group of an epoch is divided by its own size (the remainder), not ``accumulative_counts``.
    Clipping by norm logs the total norm before clipping as ``train/grad_norm`` to the current
    message hub. Clipping runs :func:`fengine.core.optim.clip_grad_norm`/``clip_grad_value``
    (bit-identical to ``torch.nn.utils``'s) in place on the gradients.

    Args:
        optimizer: a ``torch.optim.Optimizer``, or an optimizer config dict that includes
            ``params`` (built through the ``OPTIMIZERS`` registry).
        accumulative_counts: backward passes per optimizer step, ≥ 1.
        clip_grad: ``None`` or a non-empty dict: ``type='norm'`` (default; keys ``max_norm``,
            ``norm_type``, ``error_if_nonfinite``, ``foreach``) or ``type='value'`` (keys
            ``clip_value``, ``foreach``). The caller's dict is not modified.

    Raises:
        OptimWrapperError: ``accumulative_counts`` < 1; ``clip_grad`` empty, not a dict, or
            without its required key or with an unknown one.
        ValueError: an unknown clip ``type``.
    """

    def __init__(
        self, optimizer: Any, accumulative_counts: int = 1, clip_grad: dict[str, Any] | None = None
    ) -> None:
        if not isinstance(accumulative_counts, int) or accumulative_counts < 1:
            raise OptimWrapperError(
                f"accumulative_counts must be an int >= 1, got accumulative_counts={accumulative_counts!r}"
            )
        super().__init__(_build_optimizer(optimizer))
        self._accumulative_counts = accumulative_counts
        self.clip_grad_kwargs: dict[str, Any] | None = None
        self.clip_grad_type = "norm"
        if clip_grad is not None:
            self.clip_grad_type, self.clip_grad_kwargs = self._parse_clip(clip_grad)
        self._inner_count = 0
        self._max_counts = -1
        self._remainder_counts = -1

    @staticmethod
    def _parse_clip(clip_grad: Any) -> tuple[str, dict[str, Any]]:
        if not isinstance(clip_grad, Mapping) or not clip_grad:
            raise OptimWrapperError(
                f"clip_grad must be None or a non-empty dict of clipping arguments, got {clip_grad!r}"
            )
        kwargs = dict(clip_grad)
        clip_type = kwargs.pop("type", "norm")
        if clip_type not in _CLIP_KEYS:
            raise ValueError(f"clip_grad type must be 'norm' or 'value', got type={clip_type!r}")
        required, accepted = _CLIP_KEYS[clip_type]
        if not kwargs:
            raise OptimWrapperError(
                f"clip_grad={dict(clip_grad)!r} has only a type; {clip_type!r} clipping needs {sorted(required)}"
            )
        missing, unknown = required - set(kwargs), set(kwargs) - accepted
        if missing or unknown:
            raise OptimWrapperError(
                f"clip_grad={dict(clip_grad)!r}: {clip_type!r} clipping needs {sorted(required)} and "
                f"accepts {sorted(accepted)}; missing {sorted(missing)}, unknown {sorted(unknown)}"
            )
        return clip_type, kwargs

    def update_params(
        self,
        loss: torch.Tensor,
        step_kwargs: dict[str, Any] | None = None,
        zero_kwargs: dict[str, Any] | None = None,
    ) -> None:
        """Scale ``loss``, back-propagate it, and step then zero the gradients when due.

        Args:
            loss: the loss of this iteration.
            step_kwargs: keyword arguments for :meth:`step`.
            zero_kwargs: keyword arguments for :meth:`zero_grad`.
        """
        loss = self.scale_loss(loss)
        self.backward(loss)
        if self.should_update():
            self.step(**(step_kwargs or {}))
            self.zero_grad(**(zero_kwargs or {}))

    def backward(self, loss: torch.Tensor, **kwargs: Any) -> None:
        """``loss.backward(**kwargs)`` and count the call (subclasses must count too)."""
        loss.backward(**kwargs)  # type: ignore[no-untyped-call]
        self._inner_count += 1

    def zero_grad(self, **kwargs: Any) -> None:
        """``optimizer.zero_grad(**kwargs)``."""
        self.optimizer.zero_grad(**kwargs)

    def step(self, **kwargs: Any) -> None:
        """Clip the gradients if configured, then ``optimizer.step(**kwargs)``."""
        if self.clip_grad_kwargs:
            self._clip_grad()
        self.optimizer.step(**kwargs)

    def _clip_grad(self) -> None:
        params = [
            p for group in self.optimizer.param_groups for p in group["params"]
            if p.requires_grad and p.grad is not None
        ]
        if not params:
            return
        kwargs = dict(self.clip_grad_kwargs or {})
        if kwargs.pop("foreach", None) is False:
            # The per-tensor kernels may round differently from foreach ones: use torch's own.
            if self.clip_grad_type == "norm":
                self._log_grad_norm(torch.nn.utils.clip_grad_norm_(params, foreach=False, **kwargs))
            else:
                torch.nn.utils.clip_grad_value_(params, foreach=False, **kwargs)
            return
        self.clip_grads([p.grad for p in params if p.grad is not None])

    def clip_grads(self, grads: list[torch.Tensor]) -> None:
        """Clip ``grads`` in place as configured (``foreach`` kernels); log the norm when by norm.

        Args:
            grads: the gradients of the optimizer's parameters that have one, in
                ``param_groups`` order.
        """
        kwargs = dict(self.clip_grad_kwargs or {})
        kwargs.pop("foreach", None)
        named = {str(i): g for i, g in enumerate(grads)}
        # Donated: each gradient is clipped in place.
        if self.clip_grad_type == "norm":
            _, state = fo.clip_grad_norm(**kwargs).update(named, fo.ClipNormState(), {}, donate=True)
            if state.total_norm is not None:
                self._log_grad_norm(state.total_norm)
        else:
            fo.clip_grad_value(**kwargs).update(named, None, {}, donate=True)

    @staticmethod
    def _log_grad_norm(total: torch.Tensor) -> None:
        hub = message_hub()
        if hub is not None:
            hub.update_scalar("train/grad_norm", float(total))

    def optim_context(self, model: nn.Module) -> AbstractContextManager[Any]:
        """Skip DDP's gradient all-reduce (``model.no_sync()``) when the next backward won't step.

        Args:
            model: the model run inside the context.

        Returns:
            ``model.no_sync()`` while accumulating over a model that has it, else a context that
            does nothing (one shared object: this runs every iteration).
        """
        no_sync = getattr(model, "no_sync", None)
        if no_sync is not None and not self.should_sync():
            return no_sync()  # type: ignore[no-any-return]
        return _NO_CONTEXT

    def initialize_count_status(self, model: nn.Module, init_counts: int, max_counts: int) -> None:
        """Set the counters so the last, shorter accumulation group also steps.

        Warns when ``init_counts`` is not a multiple of ``accumulative_counts`` and the model
        holds no gradients (a resumed run lost part of a group; fengine's checkpoints carry them)
        and when accumulating over a model with BatchNorm.

        Args:
            model: the trained model.
            init_counts: backward passes already done (the resumed iteration).
            max_counts: total backward passes of the run.
        """
        self._inner_count = init_counts
        self._max_counts = max_counts
        # A resumed run whose checkpoint carried the unfinished group's gradients lost nothing.
        group_restored = any(p.grad is not None for p in model.parameters())
        if init_counts % self._accumulative_counts != 0 and not group_restored:
            warn(
                "Resumed iteration number is not divisible by `_accumulative_counts`, which means "
                "the gradient of some iterations is lost and the result may be influenced slightly."
            )
        if self._accumulative_counts > 1 and _has_batch_norm(model):
            warn("Gradient accumulative may slightly decrease performance because the model has BatchNorm layers.")
        self._remainder_counts = max_counts % self._accumulative_counts

    def should_update(self) -> bool:
        """Whether the backward just done completes a group (then :meth:`step` is due)."""
        return self._inner_count % self._accumulative_counts == 0 or self._inner_count == self._max_counts

    def should_sync(self) -> bool:
        """Whether the *next* backward completes a group (so DDP must all-reduce it)."""
        nxt = self._inner_count + 1
        return nxt % self._accumulative_counts == 0 or nxt == self._max_counts

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss`` divided by the size of the current accumulation group.

        Raises:
            OptimWrapperError: the counters put this call past the last group (factor ≤ 0).
        """
        if self._accumulative_counts == 1:
            # ``loss / 1`` is ``loss`` bit for bit, gradient included; skipping it saves an
            # autograd node per step. (A non-tensor ``0`` still becomes ``0.0`` as before.)
            if isinstance(loss, torch.Tensor):
                return loss
            factor = 1
        elif self._max_counts == -1:
            factor = self._accumulative_counts
        else:
            if self._inner_count < self._max_counts - self._remainder_counts:
                factor = self._accumulative_counts
            else:
                factor = self._remainder_counts
            if factor <= 0:
                raise OptimWrapperError(
                    f"loss factor {factor} <= 0 at inner_count={self._inner_count} with "
                    f"max_counts={self._max_counts}; check initialize_count_status(init_counts, max_counts)"
                )
        return loss / factor

    @property
    def inner_count(self) -> int:
        """Backward passes counted so far."""
        return self._inner_count

    def __repr__(self) -> str:
        return (
            f"Type: {type(self).__name__}\n_accumulative_counts: {self._accumulative_counts}\n"
            f"optimizer: \n{self.optimizer!r}\n"
        )
