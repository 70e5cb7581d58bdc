"""fengine: MMEngine's models-and-hooks layer over a pure-functional training core."""

__version__ = "0.1.0"

# Imported after __version__, which hooks read while the runner package loads.
from fengine.config import Config, ConfigDict, DictAction
from fengine.registry import *  # noqa: F403  (the root registries and build functions, as MMEngine's top level)
from fengine.registry import __all__ as _registry_names
from fengine.runner import Runner
from fengine.utils import ManagerMixin

__all__ = ["Config", "ConfigDict", "DictAction", "ManagerMixin", "Runner", "__version__", *_registry_names]
