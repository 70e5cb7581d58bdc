"""Optimizers as pure ``init``/``update`` transforms, bit-identical to ``torch.optim``.

Each is a :class:`GradientTransform` ``(init, update)``, after optax:
``tx = chain(clip_grad_norm(1.0), sgd(0.1, momentum=0.9))``; ``state = tx.init(params)``;
``params, state = tx.update(grads, state, params)``. Parameters, gradients and states are flat
``dict[str, Tensor]`` trees. Hyper-parameters live in the state (per param group) and are read
with :func:`hyperparams` and replaced with :func:`set_hyperparams`, so a schedule changes them by
returning a new state.
"""

from fengine.core.optim.adam import AdamHyper, AdamState, adam, adamw
from fengine.core.optim.base import GradientTransform, Grads, ParamGroup
from fengine.core.optim.clip import ClipNormState, clip_grad_norm, clip_grad_value
from fengine.core.optim.compose import AccumState, ChainState, accumulate, chain
from fengine.core.optim.hyperparams import grad_norm, hyperparams, set_hyperparams
from fengine.core.optim.sgd import SGDHyper, SGDState, sgd

__all__ = [
    "AccumState",
    "AdamHyper",
    "AdamState",
    "ChainState",
    "ClipNormState",
    "GradientTransform",
    "Grads",
    "ParamGroup",
    "SGDHyper",
    "SGDState",
    "accumulate",
    "adam",
    "adamw",
    "chain",
    "clip_grad_norm",
    "clip_grad_value",
    "grad_norm",
    "hyperparams",
    "set_hyperparams",
    "sgd",
]
