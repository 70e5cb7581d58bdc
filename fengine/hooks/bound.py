"""The runner a class hook last ran in, so a façade can show its state as MMEngine attributes.

A hook's state lives in its runner's run record, not in the hook object; MMEngine's hooks keep it
in attributes (``EMAHook.ema_model``, ``EarlyStoppingHook.best_score``, ...). The runner binds
each hook it registers or runs by hand (weakly), and a façade reads its state through it.
"""

from __future__ import annotations

import weakref
from typing import Any

_ATTRIBUTE = "_fengine_runner"


def bind_runner(hook: object, runner: object) -> None:
    """Remember (weakly) that ``hook`` runs in ``runner``."""
    object.__setattr__(hook, _ATTRIBUTE, weakref.ref(runner))


def bound_runner(hook: object) -> Any | None:
    """The runner ``hook`` last ran in, if it still exists."""
    ref = getattr(hook, _ATTRIBUTE, None)
    return ref() if ref is not None else None


def bound_state(hook: object) -> Any | None:
    """``hook``'s current state in the runner it last ran in (``None`` before any)."""
    runner = bound_runner(hook)
    return runner.state_of(hook) if runner is not None else None
