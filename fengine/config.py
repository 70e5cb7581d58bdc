"""``Config``: MMEngine-style Python config files, ``_base_`` inheritance and ``--cfg-options``.

A config file is a Python module whose public module-level variables are the settings::

    _base_ = ['./schedule.py']                # optional: configs this one extends
    model = dict(type='MyNet', width=32)
    train_cfg = dict(by_epoch=True, max_epochs=10)

Running the file registers whatever classes it defines (``@MODELS.register_module()``), so a
config can carry its own model and dataset. Imported modules, functions and classes are not
settings and are left out, as is any name bound by an ``import`` statement.
"""

from __future__ import annotations

import ast
import copy
import difflib
import hashlib
import importlib.util
import os
import pprint
import sys
import types
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["RUNNER_SETTINGS", "Config", "ConfigDict", "ConfigError", "ConfigSyntaxError", "parse_cfg_option"]

_DELETE = "_delete_"
_OPTION_FORM = "KEY=VALUE, e.g. train_cfg.max_epochs=1 or model.widths=[16,32]"


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


def _syntax_error(path: str, error: SyntaxError) -> ConfigSyntaxError:
    line = (error.text or "").rstrip("\n")
    shown = line.lstrip()
    caret = ""
    if shown and error.offset:
        column = max(error.offset - 1 - (len(line) - len(shown)), 0)
        caret = "\n    " + " " * column + "^"
    where = f"{error.filename or path}, line {error.lineno}"
    text = f"\n    {shown}{caret}" if shown else ""
    return ConfigSyntaxError(f"config file {where}: {error.msg}{text}", error)


def _imported_names(path: str) -> set[str]:
    """Names the file binds by ``import`` statements: the tools of a config, not its settings."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), filename=path)
    return {
        (alias.asname or alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }


def _is_setting(name: str, value: Any, imported: set[str]) -> bool:
    if name.startswith("_") or name in imported:
        return False
    return not isinstance(
        value, types.ModuleType | types.FunctionType | types.BuiltinFunctionType | type
    )


def _merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``update``: dicts merge key by key unless ``update`` sets ``_delete_``."""
    merged = dict(base)
    for key, value in update.items():
        if (
            isinstance(value, Mapping)
            and not value.get(_DELETE, False)
            and isinstance(merged.get(key), Mapping)
        ):
            merged[key] = _merge(merged[key], value)
        elif isinstance(value, Mapping):
            merged[key] = {k: v for k, v in value.items() if k != _DELETE}
        else:
            merged[key] = value
    return merged


def _run_file(path: str) -> dict[str, Any]:
    """Execute the config file as a module and return its namespace."""
    # A stable module name per file, so records defined in a config resolve again on resume.
    digest = hashlib.sha1(path.encode()).hexdigest()[:10]
    name = f"fengine_config_{os.path.splitext(os.path.basename(path))[0]}_{digest}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot load config {path!r}: it must be a Python file (*.py)")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as error:
        del sys.modules[name]
        raise _syntax_error(path, error) from error
    except BaseException:
        del sys.modules[name]
        raise
    return dict(vars(module))


def _load(path: str, chain: tuple[str, ...]) -> dict[str, Any]:
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        where = f" (a _base_ of {chain[-1]!r})" if chain else ""
        raise FileNotFoundError(f"config file {path!r}{where} does not exist")
    if path in chain:
        raise ConfigError(f"config files inherit in a cycle: {' -> '.join((*chain, path))}")
    namespace = _run_file(path)
    bases = namespace.get("_base_", [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list | tuple) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a path or a list of paths, got {bases!r}")
    merged: dict[str, Any] = {}
    for base in bases:
        merged = _merge(merged, _load(os.path.join(os.path.dirname(path), base), (*chain, path)))
    imported = _imported_names(path)
    return _merge(merged, {k: v for k, v in namespace.items() if _is_setting(k, v, imported)})


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    try:
        return float(text)  # inf, -inf, nan: not literals, but numbers to a user
    except ValueError:
        pass
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered == "none":
        return None
    if "," in text:
        return [_parse_value(part.strip()) for part in text.split(",")]
    return text


def parse_cfg_option(item: str) -> tuple[str, Any]:
    """Split one ``--cfg-options`` item into its dotted key and its value.

    The value is read as a Python literal (``1``, ``0.5``, ``[1, 2]``, ``'text'``, ``True``) or a
    float (``inf``); ``true``/``false``/``none`` in any case are booleans and ``None``; ``a,b`` is a list; anything
    else is kept as a string.

    Args:
        item: ``KEY=VALUE``, e.g. ``train_cfg.max_epochs=1``.

    Returns:
        ``(key, value)``.

    Raises:
        ConfigError: no ``=``, or an empty key or key part; the message names the item and
            shows the accepted form.
    """
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError(f"--cfg-options: {item!r} is not of the form {_OPTION_FORM}")
    return key, _parse_value(value.strip())


#: Top-level settings the Runner reads (``Runner.from_cfg``), which an option may add to a config
#: that does not set them yet.
RUNNER_SETTINGS = frozenset((
    "model", "work_dir", "train_dataloader", "val_dataloader", "test_dataloader", "train_cfg",
    "val_cfg", "test_cfg", "auto_scale_lr", "optim_wrapper", "param_scheduler", "val_evaluator",
    "test_evaluator", "default_hooks", "custom_hooks", "data_preprocessor", "load_from", "resume",
    "launcher", "env_cfg", "log_processor", "log_level", "visualizer", "default_scope", "randomness",
    "experiment_name", "compile", "sync_bn", "model_wrapper_cfg", "find_unused_parameters",
))


def _check_top_key(settings: Mapping[str, Any], key: str, option: str) -> None:
    if key in settings or key in RUNNER_SETTINGS:
        return
    known = sorted(set(settings) | RUNNER_SETTINGS)
    close = difflib.get_close_matches(key, known, n=3)
    hint = f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
    raise ConfigError(
        f"--cfg-options {option}=...: unknown top-level key {key!r}; {hint}the config and the "
        f"Runner know {', '.join(known)} (pass allow_new_keys=True to add a new one)"
    )


class Config(dict[str, Any]):
    """The settings of a config file: a dict whose top-level keys also read as attributes.

    ``cfg.work_dir = 'out'`` sets ``cfg['work_dir']``; nested values are plain dicts and lists.
    ``Runner.from_cfg(cfg)`` takes it as it is.

    Args:
        settings: the initial settings.
        filename: the file they came from, if any.
    """

    def __init__(
        self, settings: Mapping[str, Any] | None = None, filename: str | None = None
    ) -> None:
        super().__init__(settings or {})
        object.__setattr__(self, "filename", filename)

    @classmethod
    def fromfile(cls, filename: str | os.PathLike[str]) -> Config:
        """Read a Python config file, after the files named by its ``_base_`` (in order).

        Later files override earlier ones; dict values merge key by key unless the overriding
        dict holds ``_delete_=True``, which replaces the whole dict.

        Args:
            filename: the config file.

        Returns:
            The merged settings.

        Raises:
            FileNotFoundError: the file or one of its bases does not exist.
            ConfigError: a base path is not a string or list, or the files inherit in a cycle.
            ConfigSyntaxError: a file is not valid Python (naming the file and line, showing it).
        """
        path = os.fspath(filename)
        return cls(_load(path, ()), filename=os.path.abspath(path))

    def merge_from_dict(
        self, options: Mapping[str, Any] | Iterable[tuple[str, Any]], *, allow_new_keys: bool = False
    ) -> None:
        """Set values by dotted keys (``{'train_cfg.max_epochs': 1}``), creating missing dicts.

        A numeric part indexes a list (``custom_hooks.0.momentum``). The first part must be a
        setting of the config or one the Runner reads (:data:`RUNNER_SETTINGS`), so a typo
        (``trian_cfg.max_epochs=1``) is an error instead of a setting nobody reads; below it,
        dicts may gain new keys, as in MMEngine.

        Args:
            options: dotted keys and their values.
            allow_new_keys: accept any new top-level key (MMEngine's behaviour).

        Raises:
            ConfigError: an unknown top-level key (naming the closest known ones), a key that
                goes through a value that is neither a dict nor a list, or a list index out of
                range.
        """
        items = options.items() if isinstance(options, Mapping) else options
        for key, value in items:
            parts = key.split(".")
            if not allow_new_keys:
                _check_top_key(self, parts[0], key)
            node: Any = self
            for depth, part in enumerate(parts):
                last = depth == len(parts) - 1
                where = ".".join(parts[: depth + 1])
                if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                    index: Any = int(part)
                elif isinstance(node, dict):
                    index = part
                    if not last and not isinstance(node.get(part), dict | list):
                        node[part] = {} if node.get(part) is None else node[part]
                else:
                    raise ConfigError(
                        f"--cfg-options {key}=...: {'.'.join(parts[:depth]) or 'the config'} is a "
                        f"{type(node).__name__}, so {where!r} cannot be set (use dict keys, or list "
                        "indices within range)"
                    )
                if last:
                    node[index] = copy.deepcopy(value)
                else:
                    node = node[index]

    @property
    def pretty_text(self) -> str:
        """The settings, pretty-printed."""
        return pprint.pformat(dict(self), sort_dicts=False)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"the config has no setting {name!r}; it has {sorted(self)}"
            ) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __reduce__(self) -> Any:
        return (type(self), (dict(self), self.filename))


def _attribute_dicts(value: Any) -> Any:
    if isinstance(value, dict) and not isinstance(value, ConfigDict):
        return ConfigDict(value)
    if isinstance(value, list):
        return [_attribute_dicts(item) for item in value]
    if isinstance(value, tuple):
        return type(value)(*map(_attribute_dicts, value)) if hasattr(value, "_fields") else tuple(
            map(_attribute_dicts, value)
        )
    return value


class ConfigDict(dict[str, Any]):
    """A dict whose keys also read and write as attributes, at every depth (MMEngine's ``ConfigDict``).

    ``cfg.train_cfg.max_epochs = 3`` sets ``cfg['train_cfg']['max_epochs']``: dicts stored in it,
    also inside lists and tuples, become ``ConfigDict`` s when stored. A missing attribute is an
    ``AttributeError`` naming the keys that exist.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__()
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __setitem__(self, key: str, value: Any) -> None:
        super().__setitem__(key, _attribute_dicts(value))

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"the config has no key {name!r}; it has {sorted(self)}") from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(f"the config has no key {name!r}; it has {sorted(self)}") from None

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
