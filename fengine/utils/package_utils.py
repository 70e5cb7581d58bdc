"""Whether a package is installed (MMEngine's ``mmengine.utils.is_installed``)."""

from __future__ import annotations

import importlib.metadata
import importlib.util


def is_installed(package: str) -> bool:
    """``True`` if a distribution named ``package`` is installed or a module of that name imports.

    Args:
        package: a distribution name (``'tensorboard'``) or a top-level module name.

    Returns:
        Whether it is available, found without importing it.
    """
    try:
        importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        try:
            return importlib.util.find_spec(package) is not None
        except (ImportError, ValueError):
            return False
    return True


__all__ = ["is_installed"]
