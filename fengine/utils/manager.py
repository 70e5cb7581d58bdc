"""Named global instances per class (MMEngine's ``ManagerMixin``)."""

from __future__ import annotations

import threading
import warnings
from collections import OrderedDict
from typing import Any, ClassVar, TypeVar

_T = TypeVar("_T", bound="ManagerMixin")
_LOCK = threading.RLock()


class ManagerMixin:
    """Give a class a registry of named instances: ``get_instance(name)``/``get_current_instance()``.

    Each subclass gets its own table. ``get_instance(name, **kwargs)`` creates the instance on first
    use (passing ``name`` and ``kwargs`` to the constructor) and returns it afterwards;
    ``get_current_instance()`` returns the most recently *created* one. Constructing the class
    directly does not register the instance, as in MMEngine.

    Args:
        name: the instance's name (``instance_name``).
    """

    _instance_dict: ClassVar[OrderedDict[str, Any]] = OrderedDict()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls._instance_dict = OrderedDict()

    def __init__(self, name: str = "", **kwargs: Any) -> None:
        if not isinstance(name, str):
            raise TypeError(f"{type(self).__name__}: `name` must be a str, got {name!r}")
        self._instance_name = name

    @classmethod
    def get_instance(cls: type[_T], name: str, **kwargs: Any) -> _T:
        """The instance called ``name``, created with ``kwargs`` if it does not exist yet.

        Args:
            name: the instance name.
            **kwargs: constructor arguments, used only when creating.

        Returns:
            The named instance.
        """
        with _LOCK:
            table = cls._instance_dict
            if name not in table:
                table[name] = cls(name=name, **kwargs)
            elif kwargs:
                warnings.warn(
                    f"{cls.__name__} instance {name!r} already exists; get_instance ignores the "
                    f"arguments {sorted(kwargs)}",
                    stacklevel=2,
                )
            instance: _T = table[name]
            return instance

    @classmethod
    def get_current_instance(cls: type[_T]) -> _T:
        """The most recently created instance.

        Raises:
            RuntimeError: no instance has been created through ``get_instance``.
        """
        with _LOCK:
            if not cls._instance_dict:
                raise RuntimeError(
                    f"{cls.__name__}.get_current_instance(): no instance exists yet; call "
                    f"{cls.__name__}.get_instance(name) first"
                )
            instance: _T = next(reversed(cls._instance_dict.values()))
            return instance

    @classmethod
    def check_instance_created(cls, name: str) -> bool:
        """Whether an instance called ``name`` exists."""
        return name in cls._instance_dict

    @property
    def instance_name(self) -> str:
        """The name this instance was created with."""
        return self._instance_name
