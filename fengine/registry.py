"""Registries: build objects from ``dict(type=..., **kwargs)`` configs, as MMEngine does."""

from __future__ import annotations

import contextlib
import copy
import datetime
import difflib
import importlib
import inspect
import itertools
import json
import logging
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar, overload

from fengine.logging.logger import print_log
from fengine.utils.fileio import atomic_write
from fengine.utils.manager import ManagerMixin

T = TypeVar("T")


class RegistryError(KeyError):
    """An unknown or duplicate name, or a config that cannot be built."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


class ConfigError(TypeError):
    """A config that is not a dict, lacks ``type``, or whose arguments the constructor rejects."""


class MissingTypeError(ConfigError, KeyError):
    """A config (with its ``default_args``) that names no ``type``; a ``KeyError`` too, as in MMEngine."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class RegistryArgumentError(TypeError, AssertionError):
    """A bad ``Registry`` argument (also an ``AssertionError``, as MMEngine's ``assert`` was)."""


class DefaultScope(ManagerMixin):
    """The scope (``'mmdet'``, ``'myproject'``) whose registries ``build`` looks in first.

    Create one with ``DefaultScope.get_instance(name, scope_name=...)`` or
    :func:`init_default_scope`; the most recently created instance is the current scope.

    Args:
        name: the instance name.
        scope_name: the scope, the ``scope`` of a registry in the tree.
    """

    def __init__(self, name: str, scope_name: str) -> None:
        super().__init__(name)
        if not isinstance(scope_name, str):
            raise RegistryArgumentError(f"DefaultScope: scope_name must be a str, got {scope_name!r}")
        self._scope_name = scope_name

    @property
    def scope_name(self) -> str:
        """The scope's name."""
        return self._scope_name

    @classmethod
    def get_current_instance(cls) -> DefaultScope | None:  # type: ignore[override]
        """The most recently created scope, or ``None`` when there is none."""
        if not cls._instance_dict:
            return None
        current: DefaultScope = next(reversed(cls._instance_dict.values()))
        return current

    @classmethod
    @contextlib.contextmanager
    def overwrite_default_scope(cls, scope_name: str | None) -> Iterator[None]:
        """Make ``scope_name`` the current scope inside the ``with`` block (``None``: keep it)."""
        if scope_name is None:
            yield
            return
        name = f"overwrite-{next(_OVERWRITES)}"
        cls.get_instance(name, scope_name=scope_name)
        try:
            yield
        finally:
            cls._instance_dict.pop(name, None)


_OVERWRITES = itertools.count()


def init_default_scope(scope: str) -> None:
    """Make ``scope`` the current default scope, warning when another one was current."""
    current = DefaultScope.get_current_instance()
    if current is None or not DefaultScope.check_instance_created(scope):
        DefaultScope.get_instance(scope, scope_name=scope)
    elif current.scope_name != scope:
        print_log(
            f"The current default scope {current.scope_name!r} is not {scope!r}; "
            f"init_default_scope makes {scope!r} the current scope",
            logger="current",
            level=logging.WARNING,
        )
        DefaultScope.get_instance(f"{scope}-{datetime.datetime.now()}", scope_name=scope)


def _caller_scope() -> str:
    # The top-level package of the module that created the registry, as MMEngine infers it:
    # the first frame outside `_caller_scope` and the `__init__` of a Registry (or a subclass's).
    frame = inspect.currentframe()
    frame = frame.f_back if frame is not None else None
    while frame is not None and frame.f_code.co_name == "__init__" and isinstance(frame.f_locals.get("self"), Registry):
        frame = frame.f_back
    module = frame.f_globals.get("__name__", "") if frame is not None else ""
    return str(module).split(".")[0] or "__main__"


def get_object_from_string(path: str) -> Any | None:
    """The module or attribute named by a dotted path (``'torch.nn.Linear'``), else ``None``."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: Any = importlib.import_module(".".join(parts[:cut]))
        except (ImportError, ValueError):
            continue
        try:
            for attribute in parts[cut:]:
                obj = getattr(obj, attribute)
        except AttributeError:
            return None
        return obj
    return None


class Registry:
    """A name → class (or function) table with ``build`` from config dicts, in a tree of scopes.

    Registries form a tree: a child (``parent=``) sees its ancestors' entries, and any registry of
    the tree reaches another's by scope, ``'mmdet.ResNet'``. ``build`` looks first in the registry
    of the current :class:`DefaultScope` (or of a config's ``_scope_``).

    Args:
        name: what the registry holds (used in messages), e.g. ``'hook'``.
        build_func: builds an object from ``(cfg, registry, default_args)``; defaults to the
            parent's, else :func:`build_from_cfg`.
        parent: a registry whose entries are visible from this one (looked up after its own).
        scope: the scope's name; defaults to the top-level package of the module creating it.
        locations: modules imported on the first look-up, so that their registrations happen.
    """

    def __init__(
        self,
        name: str,
        build_func: Callable[..., Any] | None = None,
        parent: Registry | None = None,
        scope: str | None = None,
        locations: Sequence[str] = (),
    ) -> None:
        if parent is not None and not isinstance(parent, Registry):
            raise RegistryArgumentError(f"Registry {name!r}: parent must be a Registry or None, got {parent!r}")
        if scope is not None and not isinstance(scope, str):
            raise RegistryArgumentError(f"Registry {name!r}: scope must be a str or None, got {scope!r}")
        self.name = name
        self._scope = _caller_scope() if scope is None else scope
        self.parent = parent
        self._module_dict: dict[str, Any] = {}
        self._replaceable: set[str] = set()  # fengine's own extras a user's class may take over
        self._children: dict[str, Registry] = {}
        self._locations = list(locations)
        self._imported = not self._locations
        if parent is not None:
            if self._scope in parent._children:
                raise RegistryArgumentError(
                    f"Registry {name!r}: its parent {parent.name!r} already has a child of scope "
                    f"{self._scope!r}; give this one another scope"
                )
            parent._children[self._scope] = self
        self.build_func: Callable[..., Any] = (
            build_func if build_func is not None
            else parent.build_func if parent is not None
            else build_from_cfg
        )

    @property
    def scope(self) -> str:
        """The scope's name."""
        return self._scope

    @property
    def children(self) -> Mapping[str, Registry]:
        """The child registries by scope."""
        return self._children

    @property
    def module_dict(self) -> dict[str, Any]:
        """The registered entries of this registry (not its parent's); changing it unregisters."""
        return self._module_dict

    def __len__(self) -> int:
        return len(self._module_dict)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._module_dict)

    def __repr__(self) -> str:
        return f"Registry of {self.name} (scope {self._scope!r}): {sorted(self._module_dict)}"

    @staticmethod
    def split_scope_key(key: str) -> tuple[str | None, str]:
        """``'mmdet.ResNet'`` → ``('mmdet', 'ResNet')``; a key without a dot has no scope."""
        scope, dot, rest = key.partition(".")
        return (scope, rest) if dot else (None, key)

    def _get_root_registry(self) -> Registry:
        root = self
        while root.parent is not None:
            root = root.parent
        return root

    def _search_child(self, scope: str) -> Registry | None:
        """The registry of ``scope`` among this one and its descendants."""
        if self._scope == scope:
            return self
        for child in self._children.values():
            found = child._search_child(scope)
            if found is not None:
                return found
        return None

    def import_from_location(self) -> None:
        """Import the ``locations`` modules once, so that the entries they register exist."""
        if self._imported:
            return
        self._imported = True
        for location in self._locations:
            try:
                importlib.import_module(location)
            except ImportError as error:
                self._imported = False
                raise RegistryError(
                    f"the {self.name} registry of scope {self._scope!r} cannot import its location "
                    f"{location!r}: {error}"
                ) from error

    def get(self, key: str) -> Any | None:
        """The entry ``key`` names, else ``None``.

        A plain key is looked up here, then in the parents. ``'scope.key'`` is looked up in the
        registry of that scope anywhere in the tree; a dotted path that names no registry entry
        may name a module or attribute (``'torch.nn.ReLU'``).

        Raises:
            TypeError: ``key`` is not a str.
        """
        if not isinstance(key, str):
            raise RegistryArgumentError(f"{self.name} registry: the key must be a str, got {key!r}")
        self.import_from_location()
        scope, real_key = self.split_scope_key(key)
        obj: Any | None = None
        if scope is None or scope == self._scope:
            registry: Registry | None = self
            while registry is not None and obj is None:
                registry.import_from_location()
                obj = registry._module_dict.get(real_key)
                registry = registry.parent
        else:
            target = self._get_root_registry()._search_child(scope)
            if target is not None:
                obj = target.get(real_key)
        if obj is None and scope is not None:
            obj = get_object_from_string(key)
        return obj

    @contextlib.contextmanager
    def switch_scope_and_registry(self, scope: str | None) -> Iterator[Registry]:
        """Within the block, ``scope`` (if given) is the default scope; yields its registry.

        The registry of the current default scope in this tree is yielded, or this one (with a
        warning) when the tree has no registry of that scope.
        """
        with DefaultScope.overwrite_default_scope(scope):
            current = DefaultScope.get_current_instance()
            registry = self._default_scope_registry()
            if current is not None and registry is self and current.scope_name != self._scope:
                warnings.warn(
                    f"the {self.name} registry tree has no registry of the default scope "
                    f"{current.scope_name!r}; building from the {self._scope!r} registry",
                    stacklevel=3,
                )
            yield registry

    def _all_names(self) -> list[str]:
        names = list(self._module_dict)
        if self.parent is not None:
            names += self.parent._all_names()
        return names

    def _register(
        self, module: Any, name: str | Sequence[str] | None, force: bool, replaceable: bool = False
    ) -> None:
        if not isinstance(force, bool):
            raise RegistryArgumentError(f"{self.name} registry: force must be a boolean, but got {type(force)}")
        if not callable(module):
            raise RegistryArgumentError(
                f"{self.name} registry: module must be Callable, but got {type(module)} ({module!r}); "
                "register a class or a function"
            )
        if name is None:
            names = [module.__name__]
        elif isinstance(name, str):
            names = [name]
        elif isinstance(name, Sequence) and all(isinstance(n, str) for n in name):
            names = list(name)
        else:
            raise RegistryArgumentError(
                f"{self.name} registry: name must be None, an instance of str, or a sequence of str, "
                f"but got {type(name)}"
            )
        for key in names:
            existing = self._module_dict.get(key)
            taken = existing is not None and existing is not module
            if taken and not force and key not in self._replaceable:
                raise RegistryError(
                    f"{key} is already registered in {self.name} at "
                    f"{getattr(existing, '__module__', '?')} (as {existing!r}); pass force=True to "
                    "replace it"
                )
            self._module_dict[key] = module
            if replaceable:
                self._replaceable.add(key)
            else:
                self._replaceable.discard(key)

    @overload
    def register_module(
        self,
        name: str | Sequence[str] | None = None,
        force: bool = False,
        module: None = None,
        *,
        replaceable: bool = False,
    ) -> Callable[[T], T]: ...

    @overload
    def register_module(
        self, name: str | Sequence[str] | None = None, force: bool = False, *, module: T,
        replaceable: bool = False,
    ) -> T: ...

    @overload
    def register_module(
        self, name: str | Sequence[str] | None, force: bool, module: T, *, replaceable: bool = False
    ) -> T: ...

    def register_module(
        self,
        name: str | Sequence[str] | None = None,
        force: bool = False,
        module: Any = None,
        *,
        replaceable: bool = False,
    ) -> Any:
        """Register a class or function, as a decorator or a call.

        Args:
            name: the key (or keys); defaults to ``module.__name__``.
            force: replace an existing entry of the same name.
            module: register this directly instead of returning a decorator.
            replaceable: a later registration of the same name replaces this one without
                ``force`` (fengine's own additions that MMEngine lacks, e.g. the ``Accuracy``
                metric, so that code written for MMEngine can register its own of that name).
        """
        if module is not None:
            self._register(module, name, force, replaceable)
            return module
        if not isinstance(force, bool):
            raise RegistryArgumentError(f"{self.name} registry: force must be a boolean, but got {type(force)}")

        def decorator(obj: T) -> T:
            self._register(obj, name, force, replaceable)
            return obj

        return decorator

    def _default_scope_registry(self) -> Registry:
        """The registry of the current default scope in this tree, else this one."""
        current = DefaultScope.get_current_instance()
        if current is None or current.scope_name == self._scope:
            return self
        found = self._get_root_registry()._search_child(current.scope_name)
        return self if found is None else found  # (an empty registry is falsy: no `or`)

    def resolve(self, type_: Any) -> Any:
        """A class/function from a registered name, or ``type_`` itself if it is callable.

        A name is looked up from the registry of the current default scope (when this tree has
        one), so that scope's entries come first, then its parents'.
        """
        if isinstance(type_, str):
            obj = self._default_scope_registry().get(type_)
            if obj is None:
                close = difflib.get_close_matches(type_, self._all_names(), n=5, cutoff=0.5)
                hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
                raise RegistryError(
                    f"{type_} is not in the {self._scope}::{self.name} registry{hint} "
                    f"(registered: {', '.join(sorted(self._all_names())) or 'nothing'})"
                )
            return obj
        if callable(type_):
            return type_
        raise ConfigError(
            f"type must be a str or valid type, but got {type(type_)} ({type_!r}) in the {self.name} "
            "registry: give a registered name or a class"
        )

    def build(self, cfg: Any, *args: Any, **kwargs: Any) -> Any:
        """Build an object from ``cfg`` with this registry's ``build_func`` (see :func:`build_from_cfg`)."""
        return self.build_func(cfg, *args, **kwargs, registry=self)


def build_from_cfg(
    cfg: Any, registry: Registry, default_args: Mapping[str, Any] | None = None
) -> Any:
    """Build ``cfg['type'](**rest)`` with ``default_args`` filling missing keys.

    The caller's dict is not modified. ``cfg['_scope_']`` makes that scope the default one while
    building (so nested builds look there first). Raises :class:`ConfigError` for a non-dict
    config, a missing ``type`` (:class:`MissingTypeError`, a ``KeyError`` too), or arguments the
    constructor rejects (naming the type and the keyword), and :class:`RegistryError` for an
    unknown name (listing the closest registered names).
    """
    if not isinstance(cfg, Mapping):
        raise ConfigError(
            f"{_registry_name(registry)} registry: cfg should be a dict, ConfigDict or Config, but "
            f"got {type(cfg)} ({cfg!r})"
        )
    if not isinstance(registry, Registry):
        raise ConfigError(
            f"registry must be a mmengine.Registry object, but got {type(registry)} ({registry!r}); "
            "fengine.registry.Registry is fengine's"
        )
    if default_args is not None and not isinstance(default_args, Mapping):
        raise ConfigError(
            f"{registry.name} registry: default_args should be a dict, ConfigDict, Config or None, "
            f"but got {type(default_args)}"
        )
    args = dict(copy.copy(cfg))
    for key, value in (default_args or {}).items():
        args.setdefault(key, value)
    if "type" not in args:
        raise MissingTypeError(
            f'a {registry.name} config or its default_args must contain the key "type" (a '
            f"registered name or a class), got keys {sorted(map(str, cfg))}"
        )
    with registry.switch_scope_and_registry(args.pop("_scope_", None)) as scoped:
        obj_cls = scoped.resolve(args.pop("type"))
        return _construct(obj_cls, args, scoped)


def _registry_name(registry: Any) -> str:
    return registry.name if isinstance(registry, Registry) else repr(registry)


def _construct(obj_cls: Any, args: dict[str, Any], registry: Registry) -> Any:
    name = getattr(obj_cls, "__name__", repr(obj_cls))
    try:
        signature = inspect.signature(obj_cls)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        try:
            signature.bind(**args)
        except TypeError as error:
            accepted = [p for p in signature.parameters if p not in ("self", "args", "kwargs")]
            raise ConfigError(
                f"{name} (from the {registry.name} registry) rejects its arguments: {error}; "
                f"given {sorted(args)}, accepted {accepted}"
            ) from None
    if inspect.isclass(obj_cls) and issubclass(obj_cls, ManagerMixin) and "name" in args:
        # Named globals (Visualizer, MessageHub, ...) are built as instances `get_current_instance`
        # finds, as MMEngine does.
        return obj_cls.get_instance(**args)
    return obj_cls(**args)


def build_model_from_cfg(
    cfg: Any, registry: Registry, default_args: Mapping[str, Any] | None = None
) -> Any:
    """:func:`build_from_cfg`, except that a list of configs builds an ``nn.Sequential`` of them."""
    if isinstance(cfg, list):
        from torch import nn

        return nn.Sequential(*(build_from_cfg(item, registry, default_args) for item in cfg))
    return build_from_cfg(cfg, registry, default_args)


def build_runner_from_cfg(cfg: Any, registry: Registry) -> Any:
    """A runner from a whole config: ``from_cfg`` of the registered ``runner_type`` (``'Runner'``).

    ``cfg['_scope_']`` is the default scope while it is built; ``cfg`` is not modified.
    """
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"runner registry: cfg should be a dict, ConfigDict or Config, but got {type(cfg)} ({cfg!r})")
    args = copy.copy(cfg)
    scope = args.pop("_scope_", None) if isinstance(args, dict) else None
    with registry.switch_scope_and_registry(scope) as scoped:
        runner_cls = scoped.resolve(args.get("runner_type", "Runner"))
        return runner_cls.from_cfg(args) if hasattr(runner_cls, "from_cfg") else runner_cls(**args)


def traverse_registry_tree(registry: Registry, verbose: bool = True) -> list[dict[str, Any]]:
    """One entry per registry of ``registry``'s tree, root first (breadth first).

    Each entry has ``num_modules``, ``scope`` and ``name``; ``verbose`` logs each at INFO.
    """
    result: list[dict[str, Any]] = []
    queue = [registry._get_root_registry()]
    while queue:
        node = queue.pop(0)
        entry = {"num_modules": len(node), "scope": node.scope, "name": node.name}
        result.append(entry)
        if verbose:
            print_log(f"registry {node.name!r} of scope {node.scope!r}: {len(node)} modules", logger="current")
        queue.extend(node.children.values())
    return result


def count_registered_modules(save_path: str | None = None, verbose: bool = True) -> dict[str, Any]:
    """The registries of fengine's root registries (:data:`root`) and how many entries each holds.

    Args:
        save_path: a folder to write the result to, as ``modules_statistic_results.json``.
        verbose: log each registry at INFO.

    Returns:
        ``{'scan_date': ..., 'registries': {'MODELS': traverse_registry_tree(MODELS), ...}}``.
    """
    registries = {
        name: traverse_registry_tree(value, verbose)
        for name, value in sorted(vars(root).items())
        if isinstance(value, Registry) and value.parent is None
    }
    result = {"scan_date": datetime.datetime.now().strftime("%Y%m%d_%H%M%S"), "registries": registries}
    if save_path is not None:
        os.makedirs(save_path, exist_ok=True)
        atomic_write(os.path.join(save_path, "modules_statistic_results.json"), json.dumps(result, indent=2).encode())
    return result


MODELS = Registry("model", build_model_from_cfg)
HOOKS = Registry("hook")
OPTIMIZERS = Registry("optimizer")
OPTIM_WRAPPERS = Registry("optim_wrapper")
OPTIM_WRAPPER_CONSTRUCTORS = Registry("optimizer wrapper constructor")
PARAM_SCHEDULERS = Registry("parameter scheduler")
DATASETS = Registry("dataset")
DATA_SAMPLERS = Registry("data sampler")
FUNCTIONS = Registry("function")
METRICS = Registry("metric")
EVALUATOR = Registry("evaluator")
LOOPS = Registry("loop")
MODEL_WRAPPERS = Registry("model wrapper")
WEIGHT_INITIALIZERS = Registry("weight initializer")
VISBACKENDS = Registry("vis_backend")
VISUALIZERS = Registry("visualizer")
LOG_PROCESSORS = Registry("log_processor")
RUNNERS = Registry("runner", build_runner_from_cfg)
TRANSFORMS = Registry("transform")

#: The module holding the root registries (MMEngine's ``mmengine.registry.root``).
root = sys.modules[__name__]

__all__ = [
    "DATASETS",
    "DATA_SAMPLERS",
    "EVALUATOR",
    "FUNCTIONS",
    "HOOKS",
    "LOG_PROCESSORS",
    "LOOPS",
    "METRICS",
    "MODELS",
    "MODEL_WRAPPERS",
    "OPTIMIZERS",
    "OPTIM_WRAPPERS",
    "OPTIM_WRAPPER_CONSTRUCTORS",
    "PARAM_SCHEDULERS",
    "RUNNERS",
    "TRANSFORMS",
    "VISBACKENDS",
    "VISUALIZERS",
    "WEIGHT_INITIALIZERS",
    "ConfigError",
    "DefaultScope",
    "MissingTypeError",
    "Registry",
    "RegistryArgumentError",
    "RegistryError",
    "build_from_cfg",
    "build_model_from_cfg",
    "build_runner_from_cfg",
    "count_registered_modules",
    "get_object_from_string",
    "init_default_scope",
    "root",
    "traverse_registry_tree",
]
