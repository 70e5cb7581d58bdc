"""fengine: MMEngine's models-and-hooks layer over a pure-functional training core."""

__version__ = "0.1.0"

# Imported after __version__, which hooks read while the runner package loads.
from fengine.runner import Runner

__all__ = ["Runner", "__version__"]
