"""``Config``: MMEngine-style config files, ``_base_`` inheritance, ``--cfg-options``, ``dump``.

A config file is a Python module whose public module-level variables are the settings::

    _base_ = ['./schedule.py']                # optional: configs this one extends
    model = dict(type='MyNet', width=32)
    train_cfg = dict(by_epoch=True, max_epochs=10)

Running the file registers whatever classes it defines (``@MODELS.register_module()``), so a
config can carry its own model and dataset. Imported modules, functions and classes are not
settings and are left out, as is any name bound by an ``import`` statement. JSON and YAML files
(data only) work too; :mod:`fengine.config_reading` describes the reading rules.
"""

from __future__ import annotations

import argparse
import ast
import copy
import difflib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from fengine.config_dict import ConfigDict, ConfigError, ConfigSyntaxError
from fengine.config_reading import import_custom_modules as _import_custom_modules
from fengine.config_reading import read_config, yaml_module
from fengine.config_source import python_source
from fengine.utils.fileio import atomic_write

__all__ = [
    "RUNNER_SETTINGS",
    "Config",
    "ConfigDict",
    "ConfigError",
    "ConfigSyntaxError",
    "DictAction",
    "parse_cfg_option",
]

_OPTION_FORM = "KEY=VALUE, e.g. train_cfg.max_epochs=1 or model.widths=[16,32]"


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


#: How alike (difflib's ratio) a new key and an existing one must be to be taken for a typo.
_TYPO_RATIO = 0.85


def _check_new_key(settings: Mapping[str, Any], key: str, option: str, where: str) -> None:
    """Refuse a new key ``key`` below ``where`` that is a near miss of an existing key there."""
    close = difflib.get_close_matches(key, [str(k) for k in settings], n=3, cutoff=_TYPO_RATIO)
    if close:
        raise ConfigError(
            f"--cfg-options {option}=...: {where!r} has no key {key!r}; did you mean "
            f"{' or '.join(repr(c) for c in close)}? {where!r} has {', '.join(sorted(map(str, settings)))} "
            "(pass allow_new_keys=True to add a key this close to an existing one)"
        )


class DictAction(argparse.Action):
    """An ``argparse`` action that gathers ``KEY=VALUE`` items into a dict (MMEngine's).

    Each value is read by :func:`parse_cfg_option`; repeated options extend the same dict, so
    ``--cfg-options a=1 --cfg-options b=2`` gives ``{'a': 1, 'b': 2}``. Pass the result to
    :meth:`Config.merge_from_dict`.
    """

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        options = dict(getattr(namespace, self.dest, None) or {})
        items = [values] if isinstance(values, str) else list(values or ())
        try:
            options.update(parse_cfg_option(str(item)) for item in items)
        except ConfigError as error:
            parser.error(str(error))
        setattr(namespace, self.dest, options)


class Config(ConfigDict):
    """The settings of a config file: a :class:`ConfigDict` (keys read as attributes at every level).

    ``cfg.work_dir = 'out'`` sets ``cfg['work_dir']``; ``cfg.model.type`` reads a nested key.
    ``Runner.from_cfg(cfg)`` takes it as it is.

    Args:
        settings: the initial settings (MMEngine's ``cfg_dict``).
        filename: the file they came from, if any.
    """

    def __init__(
        self, settings: Mapping[str, Any] | None = None, filename: str | os.PathLike[str] | None = None
    ) -> None:
        super().__init__(settings or {})
        object.__setattr__(self, "filename", None if filename is None else os.fspath(filename))

    @classmethod
    def fromfile(cls, filename: str | os.PathLike[str], import_custom_modules: bool = True) -> Config:
        """Read a config file (``.py``, ``.json``, or ``.yaml``/``.yml`` with PyYAML), after its bases.

        The files named by ``_base_`` are read first, in order; later files override earlier
        ones, and dict values merge key by key unless the overriding dict holds
        ``_delete_=True``, which replaces the whole dict. ``{{...}}`` substitutions and
        ``_base_.key`` references follow MMEngine (see :mod:`fengine.config_reading`); the
        modules named by ``custom_imports`` are imported.

        Args:
            filename: the config file.
            import_custom_modules: import the modules named by ``custom_imports``.

        Returns:
            The merged settings.

        Raises:
            FileNotFoundError: the file or one of its bases does not exist.
            ConfigError: a base path is not a string or list, the files inherit in a cycle, an
                unknown extension, a missing environment variable or base key, bad JSON/YAML.
            ConfigSyntaxError: a file is not valid Python (naming the file and line, showing it).
            ImportError: a ``custom_imports`` module cannot be imported.
        """
        path = os.path.abspath(os.fspath(filename))
        cfg = cls(read_config(path), filename=path)
        if import_custom_modules:
            _import_custom_modules(cfg, path)
        return cfg

    def merge_from_dict(
        self, options: Mapping[str, Any] | Iterable[tuple[str, Any]], *, allow_new_keys: bool = False
    ) -> None:
        """Set values by dotted keys (``{'train_cfg.max_epochs': 1}``), creating missing dicts.

        A numeric part indexes a list (``custom_hooks.0.momentum``). The first part must be a
        setting of the config or one the Runner reads (:data:`RUNNER_SETTINGS`), so a typo
        (``trian_cfg.max_epochs=1``) is an error instead of a setting nobody reads; below it,
        dicts may gain new keys, as in MMEngine, except one that is a near miss of a key the
        dict has (``train_cfg.max_epoch=1`` beside ``max_epochs``), taken for a typo.

        Args:
            options: dotted keys and their values.
            allow_new_keys: accept any new key, near misses too (MMEngine's behaviour).

        Raises:
            ConfigError: an unknown top-level key or a new key that is a near miss of an
                existing one (naming the closest known ones), a key that
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
                    if not allow_new_keys and depth > 0 and part not in node:
                        _check_new_key(node, part, key, ".".join(parts[:depth]))
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
        """The settings as the text of a Python config file (:func:`fengine.config_source.python_source`)."""
        return python_source(self)

    def dump(self, file: str | os.PathLike[str] | None = None) -> str | None:
        """Write the settings to ``file`` (atomically), or return them as Python config text.

        The format follows the extension: ``.py`` (read back by :meth:`fromfile`; values that are
        not plain data are written as ``None`` after a comment with their ``repr``), ``.json``, or
        ``.yaml``/``.yml`` (needs PyYAML). The file stands alone: inherited settings are in it.

        Args:
            file: the destination; ``None`` returns the Python text instead.

        Returns:
            The text when ``file`` is ``None``, else ``None``.

        Raises:
            ConfigError: an unknown extension, YAML without PyYAML, or a value JSON/YAML cannot hold.
        """
        if file is None:
            return self.pretty_text
        path = os.fspath(file)
        data = self.to_dict()
        if path.endswith(".py"):
            text = python_source(data)
        elif path.endswith(".json"):
            try:
                text = json.dumps(data)
            except (TypeError, ValueError) as error:
                raise ConfigError(f"Config.dump({path!r}): {error}; dump to a .py file instead") from error
        elif path.endswith((".yaml", ".yml")):
            yaml = yaml_module(f"Config.dump({path!r}): writing YAML", "dump to a .py or .json file")
            try:
                text = yaml.safe_dump(data)
            except yaml.YAMLError as error:
                raise ConfigError(f"Config.dump({path!r}): {error}; dump to a .py file instead") from error
        else:
            raise ConfigError(f"Config.dump({path!r}): the file must end with .py, .json, .yaml or .yml")
        atomic_write(path, text.encode("utf-8"))
        return None

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(
                f"the config has no setting {name!r}; it has {sorted(self)}"
            ) from None

    def __repr__(self) -> str:
        return f"Config (path: {self.filename}): {dict.__repr__(self)}"

    def __reduce__(self) -> Any:
        return (type(self), (dict(self), self.filename))

    def copy(self) -> Config:
        """A shallow copy that is a ``Config`` with the same file name."""
        return type(self)(self, self.filename)

    def __deepcopy__(self, memo: dict[int, Any]) -> Config:
        copied = type(self)(filename=self.filename)
        memo[id(self)] = copied
        for key, value in self.items():
            copied[copy.deepcopy(key, memo)] = copy.deepcopy(value, memo)
        return copied

