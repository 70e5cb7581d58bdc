"""Gradient clipping by global norm and by value, bit-identical to ``torch.nn.utils``'s clippers."""

from __future__ import annotations

import math
from collections.abc import Mapping

import attrs
import torch
from torch import Tensor

from fengine.core import plain
from fengine.core.optim.base import GradientTransform, Grads
from fengine.core.tree import global_norm, group_by_device_dtype, take


@plain.register("optim.ClipNormState")
@attrs.frozen(eq=False)
class ClipNormState:
    """The total gradient norm seen by the last update (``None`` before the first).

    Kept as a 0-dim tensor, so reading it for logging is the caller's (single) host sync.
    """

    total_norm: Tensor | None = None


def _present(grads: Grads) -> tuple[list[str], list[Tensor]]:
    names = [n for n, g in grads.items() if g is not None]
    return names, [grads[n] for n in names]  # type: ignore[misc]


def clip_grad_norm(
    max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False
) -> GradientTransform[ClipNormState]:
    """Scale all gradients together so that their global norm is at most ``max_norm``.

    ``total = ‖(‖g₁‖, ‖g₂‖, ...)‖_p`` and every gradient is multiplied by
    ``min(max_norm / (total + 1e-6), 1)``, with ``torch.nn.utils.clip_grad_norm_``'s op order
    (bit-identical to it). The coefficient stays a tensor, so there is no host sync unless
    ``error_if_nonfinite`` asks for one. The state records ``total`` (before clipping), which is
    what MMEngine logs as ``grad_norm``.

    Args:
        max_norm: the largest allowed global norm.
        norm_type: the p of the p-norm; ``float('inf')`` for the max-norm.
        error_if_nonfinite: raise if the total norm is NaN or infinite (costs a host sync).

    Returns:
        A gradient stage (``returns='grads'``; names without a gradient are left out); its
        state is a :class:`ClipNormState`.

    Raises:
        ValueError: a negative or NaN ``max_norm``.
    """
    max_norm, norm_type = float(max_norm), float(norm_type)
    if not max_norm >= 0:
        raise ValueError(f"max_norm must be >= 0, got max_norm={max_norm!r}")

    def init(params: Mapping[str, Tensor]) -> ClipNormState:
        return ClipNormState()

    def update(
        grads: Grads, state: ClipNormState, params: Mapping[str, Tensor], *, donate: bool = False
    ) -> tuple[dict[str, Tensor], ClipNormState]:
        names, gs = _present(grads)
        out = dict(zip(names, gs))
        with torch.no_grad():
            total = global_norm(gs, norm_type)
            if not gs:
                return out, ClipNormState(total)
            if error_if_nonfinite and not math.isfinite(float(total)):
                raise RuntimeError(
                    f"the total norm of order {norm_type} of the gradients is {float(total)}, so "
                    "they cannot be clipped; pass error_if_nonfinite=False to scale them anyway"
                )
            coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
            for bucket in group_by_device_dtype(gs):
                part = take(gs, bucket)
                scale = coef.to(part[0].device)
                if donate:
                    torch._foreach_mul_(part, scale)
                else:
                    part = list(torch._foreach_mul(part, scale))
                    if scale.dtype != gs[bucket[0]].dtype:
                        # A 0-dim gradient promotes; in place torch rounds back to its dtype.
                        part = [t.to(gs[i].dtype) for i, t in zip(bucket, part)]
                out.update((names[i], t) for i, t in zip(bucket, part))
        return out, ClipNormState(total)

    return GradientTransform(init, update, returns="grads")


def clip_grad_value(clip_value: float) -> GradientTransform[None]:
    """Clamp every gradient element into ``[-clip_value, clip_value]``.

    Bit-identical to ``torch.nn.utils.clip_grad_value_`` (a foreach ``clamp_min`` then
    ``clamp_max``). The state is ``None``.

    Args:
        clip_value: the bound.

    Returns:
        A gradient stage (``returns='grads'``; names without a gradient are left out).
    """
    clip_value = float(clip_value)

    def init(params: Mapping[str, Tensor]) -> None:
        return None

    def update(
        grads: Grads, state: None, params: Mapping[str, Tensor], *, donate: bool = False
    ) -> tuple[dict[str, Tensor], None]:
        names, gs = _present(grads)
        out = dict(zip(names, gs))
        with torch.no_grad():
            for bucket in group_by_device_dtype(gs):
                part = take(gs, bucket)
                if donate:
                    torch._foreach_clamp_min_(part, -clip_value)
                else:
                    part = list(torch._foreach_clamp_min(part, -clip_value))
                torch._foreach_clamp_max_(part, clip_value)
                out.update((names[i], t) for i, t in zip(bucket, part))
        return out, None

    return GradientTransform(init, update, returns="grads")
