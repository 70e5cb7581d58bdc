"""The runner's forwarded attributes: MMEngine's names answered by the room that holds them.

:class:`Via` forwards an attribute (or method) of the runner to an attribute of one of its rooms
(``Via("_host", "run")``); :class:`LazyLoop` is ``runner.<mode>_loop``, built from its config on
first access. Both are data on the :class:`~fengine.runner.runner.Runner` class, so the façade
lists what each room answers in one table instead of one property per name.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

from fengine.runner.base_loop import BaseLoop

__all__ = ["LazyLoop", "MissingLoopError", "Via"]

T = TypeVar("T")


class MissingLoopError(ValueError, RuntimeError):
    """``train``/``val``/``test`` called on a runner built without that stage's components."""


class Via(Generic[T]):
    """A runner attribute (or method) that is ``attribute`` of what ``path`` leads to from the
    runner (a dotted chain of attributes: ``'_host.run'``); read-only unless ``writable``."""

    def __init__(self, path: str, attribute: str, *, writable: bool = True) -> None:
        self._path, self._attribute, self._writable = tuple(path.split(".")), attribute, writable

    def __set_name__(self, owner: Any, name: str) -> None:
        self._name = name

    def _room(self, runner: Any) -> Any:
        room = runner
        for name in self._path:
            room = getattr(room, name)
        return room

    def __get__(self, runner: Any, owner: Any = None) -> T:
        if runner is None:
            return self  # type: ignore[return-value]  # the descriptor itself, on the class
        value: T = getattr(self._room(runner), self._attribute)
        return value

    def __set__(self, runner: Any, value: T) -> None:
        if not self._writable:
            raise AttributeError(f"Runner.{self._name} is read-only")
        setattr(self._room(runner), self._attribute, value)


class LazyLoop:
    """``runner.<mode>_loop``: the loop, built from its config on first access, or ``None``."""

    def __init__(self, mode: str) -> None:
        self._mode = mode
        self.__doc__ = f"The {mode} loop (built on first access), or ``None`` without its components."

    def __get__(self, runner: Any, owner: Any = None) -> Any:
        if runner is None:
            return self
        loop = getattr(runner._parts, f"{self._mode}_loop")
        if loop is not None and not isinstance(loop, BaseLoop):
            loop = getattr(runner, f"build_{self._mode}_loop")(loop)
            setattr(runner._parts, f"{self._mode}_loop", loop)
        return loop

    def __set__(self, runner: Any, value: Any) -> None:
        raise AttributeError(f"Runner.{self._mode}_loop is read-only (give {self._mode}_cfg to the Runner)")
