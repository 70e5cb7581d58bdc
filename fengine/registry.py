"""Registries: build objects from ``dict(type=..., **kwargs)`` configs, as MMEngine does."""

from __future__ import annotations

import copy
import difflib
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar, overload

from fengine.utils.manager import ManagerMixin

T = TypeVar("T")


class RegistryError(KeyError):
    """An unknown or duplicate name, or a config that cannot be built."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


class ConfigError(TypeError):
    """A config that is not a dict, lacks ``type``, or whose arguments the constructor rejects."""


class Registry:
    """A name → class (or function) table with ``build`` from config dicts.

    Args:
        name: what the registry holds (used in messages), e.g. ``'hook'``.
        parent: a registry whose entries are visible from this one (looked up after its own).
    """

    def __init__(self, name: str, parent: Registry | None = None) -> None:
        self.name = name
        self.parent = parent
        self._modules: dict[str, Any] = {}
        self.children: list[Registry] = []
        if parent is not None:
            parent.children.append(self)

    def __len__(self) -> int:
        return len(self._modules)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(self._modules)

    def __repr__(self) -> str:
        return f"Registry(name={self.name!r}, items={sorted(self._modules)})"

    @property
    def module_dict(self) -> Mapping[str, Any]:
        """The registered entries of this registry (not its parent's)."""
        return dict(self._modules)

    def get(self, key: str) -> Any | None:
        """The entry registered as ``key`` here or in a parent, else ``None``."""
        if key in self._modules:
            return self._modules[key]
        return self.parent.get(key) if self.parent is not None else None

    def _all_names(self) -> list[str]:
        names = list(self._modules)
        if self.parent is not None:
            names += self.parent._all_names()
        return names

    def _register(self, module: Any, name: str | list[str] | None, force: bool) -> None:
        if not callable(module):
            raise TypeError(f"{self.name} registry: only classes and functions can be registered, got {module!r}")
        names = [module.__name__] if name is None else [name] if isinstance(name, str) else list(name)
        for key in names:
            if not force and key in self._modules and self._modules[key] is not module:
                raise RegistryError(
                    f"{key!r} is already registered in the {self.name} registry "
                    f"(as {self._modules[key]!r}); pass force=True to replace it"
                )
            self._modules[key] = module

    @overload
    def register_module(
        self, name: str | list[str] | None = None, force: bool = False, module: None = None
    ) -> Callable[[T], T]: ...

    @overload
    def register_module(self, name: str | list[str] | None, force: bool, module: T) -> T: ...

    def register_module(
        self, name: str | list[str] | None = None, force: bool = False, module: Any = None
    ) -> Any:
        """Register a class or function, as a decorator or a call.

        Args:
            name: the key (or keys); defaults to ``module.__name__``.
            force: replace an existing entry of the same name.
            module: register this directly instead of returning a decorator.
        """
        if module is not None:
            self._register(module, name, force)
            return module

        def decorator(obj: T) -> T:
            self._register(obj, name, force)
            return obj

        return decorator

    def resolve(self, type_: Any) -> Any:
        """A class/function from a registered name, or ``type_`` itself if it is callable."""
        if isinstance(type_, str):
            obj = self.get(type_)
            if obj is None:
                close = difflib.get_close_matches(type_, self._all_names(), n=5, cutoff=0.5)
                hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
                raise RegistryError(
                    f"{type_!r} is not registered in the {self.name} registry{hint} "
                    f"(registered: {', '.join(sorted(self._all_names())) or 'nothing'})"
                )
            return obj
        if callable(type_):
            return type_
        raise ConfigError(
            f"`type` must be a registered name (str) or a class, got {type_!r} "
            f"in the {self.name} registry"
        )

    def build(self, cfg: Any, default_args: Mapping[str, Any] | None = None) -> Any:
        """Build an object from ``cfg`` (see :func:`build_from_cfg`)."""
        return build_from_cfg(cfg, self, default_args)


def build_from_cfg(
    cfg: Any, registry: Registry, default_args: Mapping[str, Any] | None = None
) -> Any:
    """Build ``cfg['type'](**rest)`` with ``default_args`` filling missing keys.

    The caller's dict is not modified. Raises :class:`ConfigError` for a non-dict config, a
    missing ``type``, or arguments the constructor rejects (naming the type and the keyword), and
    :class:`RegistryError` for an unknown name (listing the closest registered names).
    """
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"a {registry.name} config must be a dict, got {type(cfg).__name__}: {cfg!r}")
    args = dict(copy.copy(cfg))
    if default_args:
        for key, value in default_args.items():
            args.setdefault(key, value)
    if "type" not in args:
        raise ConfigError(
            f"a {registry.name} config needs a `type` key (a registered name or a class), "
            f"got keys {sorted(map(str, cfg))}"
        )
    obj_cls = registry.resolve(args.pop("type"))
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


MODELS = Registry("model")
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
RUNNERS = Registry("runner")

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
    "VISBACKENDS",
    "VISUALIZERS",
    "WEIGHT_INITIALIZERS",
    "ConfigError",
    "Registry",
    "RegistryError",
    "build_from_cfg",
]
