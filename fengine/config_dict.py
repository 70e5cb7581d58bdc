"""``ConfigDict``: a dict whose keys read and write as attributes, and the config errors."""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["ConfigDict", "ConfigError", "ConfigSyntaxError", "to_config_values"]


class ConfigError(ValueError):
    """A config file that cannot be read or merged, or a bad ``--cfg-options`` item."""


class ConfigSyntaxError(ConfigError, SyntaxError):
    """A config file that is not valid Python; the message shows the file, line and the line.

    ``filename``, ``lineno``, ``offset`` and ``text`` are those of the :class:`SyntaxError`.
    """

    def __init__(self, message: str, error: SyntaxError) -> None:
        SyntaxError.__init__(self, message, (error.filename, error.lineno, error.offset, error.text))

    def __str__(self) -> str:
        return str(self.msg)


def to_config_values(value: Any) -> Any:
    """``value`` with every plain dict in it (inside lists and tuples too) as a :class:`ConfigDict`."""
    if isinstance(value, dict) and not isinstance(value, ConfigDict):
        return ConfigDict(value)
    if isinstance(value, list):
        return [to_config_values(item) for item in value]
    if isinstance(value, tuple):
        items = map(to_config_values, value)
        return type(value)(*items) if hasattr(value, "_fields") else tuple(items)
    return value


class ConfigDict(dict[str, Any]):
    """A dict whose keys also read and write as attributes, at every depth (MMEngine's ``ConfigDict``).

    ``cfg.train_cfg.max_epochs = 3`` sets ``cfg['train_cfg']['max_epochs']``: dicts stored in it,
    also inside lists and tuples, become ``ConfigDict`` s when stored. A missing attribute is an
    ``AttributeError`` naming the keys that exist. It prints and compares as a dict.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        self.update(*args, **kwargs)

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, to_config_values(value))

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"the config has no key {name!r}; it has {sorted(map(str, self))}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(f"the config has no key {name!r}; it has {sorted(map(str, self))}") from None

    def update(self, *args: Any, **kwargs: Any) -> None:
        """Set every key of ``dict(*args, **kwargs)`` (nested dicts become ``ConfigDict`` s)."""
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:
        """``self[key]``, set to ``default`` first when missing."""
        if key not in self:
            self[key] = default
        return self[key]

    def copy(self) -> ConfigDict:
        """A shallow copy that is a ``ConfigDict`` too."""
        return ConfigDict(self)

    def __reduce__(self) -> Any:
        return (type(self), (dict(self),))

    def __deepcopy__(self, memo: dict[int, Any]) -> ConfigDict:
        copied = ConfigDict()
        memo[id(self)] = copied
        for key, value in self.items():
            copied[copy.deepcopy(key, memo)] = copy.deepcopy(value, memo)
        return copied

    def to_dict(self) -> dict[str, Any]:
        """The contents as plain nested dicts (lists and tuples kept)."""

        def plain(value: Any) -> Any:
            if isinstance(value, ConfigDict):
                return {k: plain(v) for k, v in value.items()}
            if isinstance(value, list):
                return [plain(v) for v in value]
            if type(value) is tuple:
                return tuple(plain(v) for v in value)
            return value

        return {k: plain(v) for k, v in self.items()}
