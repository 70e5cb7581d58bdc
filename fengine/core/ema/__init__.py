"""Weight averaging (EMA, annealed EMA, SWA) as pure init/update functions over flat tensor dicts.

An *averager* is a small frozen record of hyper-parameters with two methods:
``init(params, buffers) -> EMAState`` copies the source tensors, and
``update(state, params, buffers) -> EMAState`` folds one more source snapshot in. The state holds
the averaged tensors (named like ``state_dict``) and ``steps``, the number of ``update`` calls so
far, as a Python int (no device sync to branch on it).

Every ``update`` call, following MMEngine's ``BaseAveragedModel.update_parameters``:

* ``steps == 0``: the averaged entries become copies of the source (no averaging);
* else if ``steps % interval == 0``: each floating-point averaged entry is averaged in;
* entries that are not averaged track the source (copied every call): all buffers when
  ``update_buffers`` is false, and non-floating-point entries (``num_batches_tracked``) always;
* ``steps`` grows by one.

``momentum`` is the weight of the *new* value, ``avg ← (1 − m)·avg + m·src`` (``torch.lerp``);
``torch.optim.swa_utils.get_ema_multi_avg_fn(decay)`` calls the same thing ``1 − decay``.

Pure by default: no input tensor is written. With ``donate=True`` the state's tensors are updated
in place (``torch._foreach_*_``) and reused in the returned state, bit-identical to the pure path
(see :mod:`fengine.core.ema.plan` for how repeated donated updates skip per-name work).

Modules, each importing only those above it: :mod:`~fengine.core.ema.record` (the state and
lookups), :mod:`~fengine.core.ema.plan` (the donated-update cache),
:mod:`~fengine.core.ema.base` (:class:`Averager`, :func:`sync`),
:mod:`~fengine.core.ema.averagers` (the concrete averagers) and
:mod:`~fengine.core.ema.state_dict` (MMEngine's layout, weight loading). Checkpoints name the records by their registered tags
(``ema.EMAState``, ``ema.ExponentialMovingAverage``, ...), not by module.
"""

from fengine.core.ema.averagers import (
    CustomAverage,
    ExponentialMovingAverage,
    MomentumAnnealingEMA,
    StochasticWeightAverage,
)
from fengine.core.ema.base import Averager, sync
from fengine.core.ema.record import EMAState
from fengine.core.ema.state_dict import ema_state_dict, load_ema_state_dict, load_weights

__all__ = [
    "Averager",
    "CustomAverage",
    "EMAState",
    "ExponentialMovingAverage",
    "MomentumAnnealingEMA",
    "StochasticWeightAverage",
    "ema_state_dict",
    "load_ema_state_dict",
    "load_weights",
    "sync",
]
