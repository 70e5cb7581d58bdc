"""EMA states in MMEngine's averaged-model ``state_dict`` layout, and weights loaded into them.

Separate from the update path: these only read or replace whole states at checkpoint time.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs
import torch
from torch import Tensor

from fengine.core.ema.record import EMAState, TensorDict


def ema_state_dict(state: EMAState, order: Iterable[str] | None = None) -> dict[str, Tensor]:
    """The state in MMEngine's averaged-model layout: ``steps``, then ``module.<name>``.

    Args:
        state: the EMA state.
        order: names in the order to write them (e.g. the model's ``state_dict`` keys); names of
            the state not in it follow, parameters before buffers.

    Returns:
        A new dict; ``steps`` is a 0-d ``torch.long`` tensor, the other values are the state's
        tensors themselves (not copies).
    """
    tensors = {**state.params, **state.buffers}
    names = [n for n in (order or ()) if n in tensors]
    names += [n for n in tensors if n not in set(names)]
    out: dict[str, Tensor] = {"steps": torch.tensor(state.steps, dtype=torch.long)}
    out.update((f"module.{n}", tensors[n]) for n in names)
    return out


def load_weights(state: EMAState, tensors: TensorDict, *, strict: bool = False) -> EMAState:
    """Copy ``tensors`` (plain ``state_dict`` names) into new averages; ``steps`` unchanged.

    Values are converted to each average's dtype and device. Without ``strict``, names on only
    one side are ignored (as ``load_state_dict(strict=False)``).

    Args:
        state: the state to start from (not modified).
        tensors: values by name.
        strict: require exactly the state's names.

    Returns:
        A state whose loaded entries are new tensors; the other entries are shared.

    Raises:
        KeyError: with ``strict``, missing or unexpected names (both listed).
        ValueError: a shape differs from the average's.
    """
    if strict:
        known = {*state.params, *state.buffers}
        missing = sorted(known - set(tensors))
        unexpected = sorted(set(tensors) - known)
        if missing or unexpected:
            raise KeyError(
                f"averaged weights do not match: missing keys {missing}, unexpected keys {unexpected}"
            )

    def load(avg: TensorDict) -> dict[str, Tensor]:
        out = dict(avg)
        for name, current in avg.items():
            if name in tensors:
                value = tensors[name]
                if value.shape != current.shape:
                    raise ValueError(
                        f"size mismatch for {name!r}: the averaged tensor has shape "
                        f"{tuple(current.shape)}, the loaded one {tuple(value.shape)}"
                    )
                out[name] = value.detach().to(device=current.device, dtype=current.dtype, copy=True)
        return out

    return attrs.evolve(state, params=load(state.params), buffers=load(state.buffers))


def load_ema_state_dict(
    state: EMAState, state_dict: TensorDict, *, strict: bool = False
) -> EMAState:
    """Restore a state from MMEngine's averaged-model layout (see :func:`ema_state_dict`).

    Args:
        state: a state with the right names, devices and dtypes (e.g. fresh from ``init``).
        state_dict: ``steps`` and ``module.<name>`` entries.
        strict: require exactly the state's names and a ``steps`` entry.

    Returns:
        The restored state (``steps`` kept when absent and not ``strict``).

    Raises:
        KeyError: with ``strict``, mismatching names or no ``steps``.
        ValueError: a shape mismatch.
    """
    if strict and "steps" not in state_dict:
        raise KeyError(f"averaged state dict has no 'steps' entry; keys: {list(state_dict)}")
    weights = {k[len("module.") :]: v for k, v in state_dict.items() if k.startswith("module.")}
    if strict:
        others = sorted(k for k in state_dict if k != "steps" and not k.startswith("module."))
        if others:
            raise KeyError(f"unexpected keys in averaged state dict: {others}")
    loaded = load_weights(state, weights, strict=strict)
    steps = state_dict.get("steps")
    return loaded if steps is None else attrs.evolve(loaded, steps=int(steps))
