"""Property-test your hooks: hypothesis strategies, contract checks and a state machine.

``from fengine.testing import check_hook`` in a test function checks the default contract; use
:func:`events` with ``@given`` for your own properties, and :class:`HookMachine` for properties over
time. Needs hypothesis (``pip install 'fengine[testing]'``).
"""

from __future__ import annotations

try:
    import hypothesis  # noqa: F401
except ImportError as error:  # pragma: no cover - exercised only without hypothesis
    raise ImportError(
        "fengine.testing needs hypothesis; install it with `pip install 'fengine[testing]'` "
        "(or `pip install hypothesis`)"
    ) from error

from fengine.testing.compare import assert_allclose
from fengine.testing.contracts import ContractError, check_hook, through_checkpoint
from fengine.testing.machine import HookMachine
from fengine.testing.simulation import EventStep, RunScript, Simulation, as_fn_hook
from fengine.testing.strategies import events, losses, metrics, run_states, train_states

__all__ = [
    "ContractError",
    "EventStep",
    "HookMachine",
    "RunScript",
    "Simulation",
    "as_fn_hook",
    "assert_allclose",
    "check_hook",
    "events",
    "losses",
    "metrics",
    "run_states",
    "through_checkpoint",
    "train_states",
]
