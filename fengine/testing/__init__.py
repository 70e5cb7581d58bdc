"""Test kits: property-test your hooks, and run them in small real runners.

``from fengine.testing import check_hook`` in a test function checks the default contract; use
:func:`events` with ``@given`` for your own properties, and :class:`HookMachine` for properties over
time. Those need hypothesis (``pip install 'fengine[testing]'``) and import it when first used.
:class:`RunnerTestCase` (tiny runner configs, clean global state), :func:`assert_allclose` and the
key checks need nothing beyond fengine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fengine.testing.compare import assert_allclose, assert_dict_has_keys, assert_keys_equal
from fengine.testing.runner_test_case import RunnerTestCase
from fengine.testing.simulation import EventStep, RunScript, Simulation, as_fn_hook

if TYPE_CHECKING:
    from fengine.testing.contracts import ContractError, check_hook, through_checkpoint
    from fengine.testing.machine import HookMachine
    from fengine.testing.strategies import events, losses, metrics, run_states, train_states

# Names whose modules import hypothesis, imported on first access.
_NEEDS_HYPOTHESIS = {
    "ContractError": "contracts",
    "check_hook": "contracts",
    "through_checkpoint": "contracts",
    "HookMachine": "machine",
    "events": "strategies",
    "losses": "strategies",
    "metrics": "strategies",
    "run_states": "strategies",
    "train_states": "strategies",
}


def __getattr__(name: str) -> Any:
    module = _NEEDS_HYPOTHESIS.get(name)
    if module is None:
        raise AttributeError(f"module 'fengine.testing' has no attribute {name!r}")
    try:
        importlib.import_module("hypothesis")
    except ImportError as error:
        raise ImportError(
            f"fengine.testing.{name} needs hypothesis; install it with `pip install 'fengine[testing]'` "
            "(or `pip install hypothesis`)"
        ) from error
    value = getattr(importlib.import_module(f"fengine.testing.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "ContractError",
    "EventStep",
    "HookMachine",
    "RunScript",
    "RunnerTestCase",
    "Simulation",
    "as_fn_hook",
    "assert_allclose",
    "assert_dict_has_keys",
    "assert_keys_equal",
    "check_hook",
    "events",
    "losses",
    "metrics",
    "run_states",
    "through_checkpoint",
    "train_states",
]
