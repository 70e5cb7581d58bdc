"""fengine: MMEngine's models-and-hooks layer over a pure-functional training core."""

__version__ = "0.1.0"
