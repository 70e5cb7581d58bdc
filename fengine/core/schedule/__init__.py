"""Parameter schedules: MMEngine's scheduler families as pure functions of the step.

A schedule is a frozen record of hyper-parameters and a window ``[begin, end)`` counted in epochs
(``by_epoch=True``) or iterations. :meth:`Schedule.update` is one step of MMEngine's *chained*
recursion: given the parameter's current value, its base (initial) value and the window-relative
step ``k = step - begin``, it returns the next value. Chaining is what lets several schedules act on
one parameter (a warm-up on top of a decay): each multiplies (or affinely maps) whatever value the
others left. :func:`value_at` folds those updates in the order MMEngine's schedulers apply them, so
``value_at(schedules, base, step)`` is the value in effect during ``step`` (0-based), with no state.

Alone, each family follows the closed form given in its docstring (``n = end - begin - 1``); a
window that has ended keeps its last value. Values equal ``torch.optim.lr_scheduler`` (same
recursions, same floating-point operations where torch has the family).

Modules, each importing only those above it: :mod:`~fengine.core.schedule.base` (the window,
:data:`INF`, field validators), :mod:`~fengine.core.schedule.factors` and
:mod:`~fengine.core.schedule.annealing` (the families), :mod:`~fengine.core.schedule.compose`
(:func:`value_at`, :func:`trajectory`, :func:`convert_to_iter_based`). Checkpoints name the
records by their registered tags (``schedule.Linear``, ...), not by module.
"""

from fengine.core.schedule.annealing import Cosine, CosineRestart, OneCycle, Poly
from fengine.core.schedule.base import INF, Schedule, ScheduleError
from fengine.core.schedule.compose import advance, convert_to_iter_based, trajectory, value_at
from fengine.core.schedule.factors import Constant, Exponential, Linear, MultiStep, Step

__all__ = [
    "INF",
    "Constant",
    "Cosine",
    "CosineRestart",
    "Exponential",
    "Linear",
    "MultiStep",
    "OneCycle",
    "Poly",
    "Schedule",
    "ScheduleError",
    "Step",
    "advance",
    "convert_to_iter_based",
    "trajectory",
    "value_at",
]
