"""Reading config files: Python, JSON and YAML, ``_base_`` inheritance, ``{{...}}`` substitutions.

Before a file is parsed, its text is substituted (MMEngine's rules):

* ``{{fileDirname}}``, ``{{fileBasename}}``, ``{{fileBasenameNoExtension}}``, ``{{fileExtname}}``:
  the file's folder, name, name without extension and extension;
* ``{{$NAME:default}}`` (also quoted, ``{{'$NAME:default'}}``): the environment variable
  ``NAME``, else ``default``;
* ``{{_base_.key.sub}}``: a copy of that value of the inherited settings.

A Python file may also read its bases' settings as ``_base_.key`` (a copy, so ``a =
_base_.model; a.type = 'Other'`` leaves the inherited ``model`` as it was). JSON and YAML files are
data only (YAML through ``yaml.safe_load``, which builds no objects; it needs PyYAML). Nothing in a
config is imported or called by name: ``type`` strings are looked up in the registries when the
Runner builds them, and only ``custom_imports`` imports modules, exactly those it names.
"""

from __future__ import annotations

import ast
import copy
import hashlib
import importlib
import json
import os
import re
import sys
import types
import warnings
from collections.abc import Mapping
from typing import Any

from fengine.config_dict import ConfigDict, ConfigError, ConfigSyntaxError

__all__ = ["import_custom_modules", "merge", "read_config", "yaml_module"]

_DELETE = "_delete_"
_BASE_NAME = "_fengine_base_"
_PREDEFINED = re.compile(r"\{\{\s*(fileDirname|fileBasename|fileBasenameNoExtension|fileExtname)\s*\}\}")
_ENVIRONMENT = re.compile(r"\{\{\s*(['\"]?)\$(\w+)(?::(.*?))?\1\s*\}\}")
_BASE_REFERENCE = re.compile(r"(['\"]?)\{\{\s*_base_\.([\w.]+)\s*\}\}\1")
_BASE_MARKER = "\x00fengine_base\x00"
_EXTENSIONS = (".py", ".json", ".yaml", ".yml")


def merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``update``: dicts merge key by key unless ``update`` sets ``_delete_``."""
    merged = dict(base)
    for key, value in update.items():
        if (
            isinstance(value, Mapping)
            and not value.get(_DELETE, False)
            and isinstance(merged.get(key), Mapping)
        ):
            merged[key] = merge(merged[key], value)
        elif isinstance(value, Mapping):
            merged[key] = {k: v for k, v in value.items() if k != _DELETE}
        else:
            merged[key] = value
    return merged


def yaml_module(doing: str, instead: str) -> Any:
    """The ``yaml`` module (PyYAML), or a :class:`ConfigError` saying ``doing`` needs it.

    Args:
        doing: what needs it, e.g. ``"config file c.yaml: reading YAML configs"``.
        instead: what to do without it, e.g. ``"use a .py or .json config"``.
    """
    try:
        return importlib.import_module("yaml")
    except ImportError:
        raise ConfigError(
            f"{doing} needs PyYAML (pip install pyyaml), which fengine does not install; {instead} instead"
        ) from None


def _substitute(text: str, path: str) -> str:
    name = os.path.basename(path)
    predefined = {
        "fileDirname": os.path.dirname(path),
        "fileBasename": name,
        "fileBasenameNoExtension": os.path.splitext(name)[0],
        "fileExtname": os.path.splitext(name)[1],
    }

    def environment(match: re.Match[str]) -> str:
        variable, default = match.group(2), match.group(3)
        if variable in os.environ:
            return os.environ[variable]
        if default is None:
            raise ConfigError(
                f"config file {path}: {match.group(0)} names the environment variable {variable!r}, "
                f"which is not set and has no default (write {{{{${variable}:DEFAULT}}}})"
            )
        return default

    text = _PREDEFINED.sub(lambda m: predefined[m.group(1)], text)
    return _ENVIRONMENT.sub(environment, text)


def _lookup(settings: Mapping[str, Any], dotted: str, path: str) -> Any:
    value: Any = settings
    for depth, part in enumerate(dotted.split(".")):
        if not isinstance(value, Mapping) or part not in value:
            where = ".".join(["_base_", *dotted.split(".")[:depth]])
            known = sorted(value) if isinstance(value, Mapping) else type(value).__name__
            raise ConfigError(f"config file {path}: _base_.{dotted}: {where} has no {part!r} ({known})")
        value = value[part]
    return copy.deepcopy(value)


def _syntax_error(path: str, error: SyntaxError) -> ConfigSyntaxError:
    line = (error.text or "").rstrip("\n")
    shown = line.lstrip()
    caret = ""
    if shown and error.offset:
        column = max(error.offset - 1 - (len(line) - len(shown)), 0)
        caret = "\n    " + " " * column + "^"
    text = f"\n    {shown}{caret}" if shown else ""
    where = f"{error.filename or path}, line {error.lineno}"
    return ConfigSyntaxError(f"config file {where}: {error.msg}{text}", error)


class _BaseReferences(ast.NodeTransformer):
    """``_base_`` read in the file (not the ``_base_ = [...]`` list itself) names the bases."""

    def visit_Name(self, node: ast.Name) -> ast.AST:
        if node.id == "_base_" and isinstance(node.ctx, ast.Load):
            return ast.copy_location(ast.Name(id=_BASE_NAME, ctx=ast.Load()), node)
        return node


def _base_list(value: Any, path: str) -> list[str]:
    bases = [value] if isinstance(value, str) else value
    if not isinstance(bases, list | tuple) or not all(isinstance(b, str) for b in bases):
        raise ConfigError(f"{path}: _base_ must be a path or a list of paths, got {value!r}")
    return list(bases)


def _python_bases(tree: ast.Module, path: str) -> list[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "_base_" for t in node.targets
        ):
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                raise ConfigError(
                    f"config file {path}, line {node.lineno}: _base_ must be a literal path or "
                    "list of paths"
                ) from None
            return _base_list(value, path)
    return []


def _imported_names(tree: ast.Module) -> set[str]:
    """Names the file binds by ``import`` statements: the tools of a config, not its settings."""
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


def _run_python(path: str, tree: ast.Module, bases: dict[str, Any]) -> dict[str, Any]:
    """Execute the file as a module (``_base_`` reading ``bases``); returns its namespace."""
    # A stable module name per file, so records defined in a config resolve again on resume.
    digest = hashlib.sha1(path.encode()).hexdigest()[:10]
    name = f"fengine_config_{os.path.splitext(os.path.basename(path))[0]}_{digest}"
    module = types.ModuleType(name)
    module.__file__ = path
    setattr(module, _BASE_NAME, ConfigDict(copy.deepcopy(bases)))
    code = compile(ast.fix_missing_locations(_BaseReferences().visit(tree)), path, "exec")
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)
    except BaseException:
        del sys.modules[name]
        raise
    imported = _imported_names(tree)
    return {k: v for k, v in vars(module).items() if _is_setting(k, v, imported)}


def _read_data(path: str, text: str) -> dict[str, Any]:
    text = _BASE_REFERENCE.sub(lambda m: json.dumps(_BASE_MARKER + m.group(2)), text)
    if path.endswith(".json"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"config file {path}, line {error.lineno}: {error.msg}") from error
    else:
        yaml = yaml_module(f"config file {path}: reading YAML configs", "use a .py or .json config")
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {path}: {error}") from error
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping, got {type(data).__name__}")
    return data


def _resolve_markers(value: Any, bases: Mapping[str, Any], path: str) -> Any:
    if isinstance(value, str) and value.startswith(_BASE_MARKER):
        return _lookup(bases, value[len(_BASE_MARKER) :], path)
    if isinstance(value, dict):
        return {k: _resolve_markers(v, bases, path) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve_markers(v, bases, path) for v in value]
    return value


def _load_bases(bases: list[str], path: str, chain: tuple[str, ...]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for base in bases:
        merged = merge(merged, read_config(os.path.join(os.path.dirname(path), base), (*chain, path)))
    return merged


def read_config(path: str, chain: tuple[str, ...] = ()) -> dict[str, Any]:
    """The settings of a config file after those of its ``_base_`` files (in order).

    Args:
        path: a ``.py``, ``.json``, ``.yaml`` or ``.yml`` file.
        chain: the files inheriting from this one (for cycle detection and messages).

    Returns:
        The merged settings (plain dicts).

    Raises:
        FileNotFoundError: the file does not exist.
        ConfigError: an unsupported extension, a bad ``_base_``, an inheritance cycle, a
            missing environment variable or base key, unreadable JSON/YAML, or YAML without
            PyYAML.
        ConfigSyntaxError: a Python file that does not parse.
    """
    path = os.path.abspath(path)
    if not os.path.isfile(path):
        where = f" (a _base_ of {chain[-1]!r})" if chain else ""
        raise FileNotFoundError(f"config file {path!r}{where} does not exist")
    if path in chain:
        raise ConfigError(f"config files inherit in a cycle: {' -> '.join((*chain, path))}")
    if not path.endswith(_EXTENSIONS):
        raise ConfigError(f"cannot load config {path!r}: it must be a {', '.join(_EXTENSIONS)} file")
    with open(path, encoding="utf-8") as handle:
        text = _substitute(handle.read(), path)
    if path.endswith(".py"):
        text = _BASE_REFERENCE.sub(lambda m: f"_base_.{m.group(2)}", text)
        try:
            tree = ast.parse(text, filename=path)
        except SyntaxError as error:
            raise _syntax_error(path, error) from error
        bases = _load_bases(_python_bases(tree, path), path, chain)
        return merge(bases, _run_python(path, tree, bases))
    data = _read_data(path, text)
    bases = _load_bases(_base_list(data.pop("_base_", []), path), path, chain)
    return merge(bases, _resolve_markers(data, bases, path))


def import_custom_modules(settings: Mapping[str, Any], path: str | None) -> None:
    """Import the modules a config names in ``custom_imports`` (so they register their classes).

    ``custom_imports = dict(imports=['my_module'], allow_failed_imports=False)``: each module is
    imported with :func:`importlib.import_module`, which runs its code, so a config names only
    modules of its author's choice; nothing else in a config is ever imported.

    Args:
        settings: the config's settings.
        path: the config file, for messages.

    Raises:
        ConfigError: ``custom_imports`` is not such a dict.
        ImportError: a module cannot be imported and ``allow_failed_imports`` is not set.
    """
    spec = settings.get("custom_imports")
    if spec is None:
        return
    where = f"config {path}: " if path else ""
    names = spec.get("imports") if isinstance(spec, Mapping) else None
    names = [names] if isinstance(names, str) else names
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ConfigError(
            f"{where}custom_imports must be dict(imports=['module', ...], allow_failed_imports="
            f"False), got {spec!r}"
        )
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as error:
            if not spec.get("allow_failed_imports", False):
                raise ImportError(f"{where}custom_imports: cannot import {name!r}: {error}") from error
            warnings.warn(f"{where}custom_imports: {name!r} failed to import and is skipped: {error}", stacklevel=2)
