"""Scalar backends of the Visualizer: a local JSON-lines file and (if installed) TensorBoard."""

from __future__ import annotations

import functools
import json
import os
import pprint
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import numpy as np
import torch

from fengine.config_source import python_source
from fengine.registry import VISBACKENDS
from fengine.utils.fileio import append_text, atomic_write, sync_appended
from fengine.visualization.png import png_bytes

F = TypeVar("F", bound=Callable[..., Any])


def _json_default(value: Any) -> Any:
    if isinstance(value, (set, range)):
        return list(value)
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} cannot be written to a JSON scalar log: {value!r}")


#: ``json.dumps(record, default=_json_default)`` without building an encoder per line.
_ENCODER = json.JSONEncoder(default=_json_default)


def config_text(config: Any) -> str:
    """A config as text: its ``pretty_text`` if it has one, a dict as a Python config file
    (:func:`fengine.config_source.python_source`), else the string or its pretty-printed form."""
    text = getattr(config, "pretty_text", None)
    if isinstance(text, str):
        return text
    if isinstance(config, str):
        return config
    if isinstance(config, Mapping):
        return python_source(config)
    return pprint.pformat(config)


def force_init_env(method: F) -> F:
    """Run the backend's ``_init_env`` (create folders, open writers) before its first use."""

    @functools.wraps(method)
    def wrapper(self: BaseVisBackend, *args: Any, **kwargs: Any) -> Any:
        if not self._env_initialized:
            self._init_env()
            self._env_initialized = True
        return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class BaseVisBackend:
    """A destination for scalars and configs; every method is a no-op unless overridden.

    Args:
        save_dir: the folder the backend writes into (created on first write).
    """

    def __init__(self, save_dir: str | None) -> None:
        self._save_dir = save_dir
        self._env_initialized = False

    def _init_env(self) -> None:
        """Prepare the backend before its first write."""

    @property
    def experiment(self) -> Any:
        """The underlying writer object (the backend itself for local files)."""
        return self

    def add_config(self, config: Any, **kwargs: Any) -> None:
        """Record the run's config."""

    def add_image(self, name: str, image: np.ndarray, step: int = 0, **kwargs: Any) -> None:
        """Record an RGB image at ``step``."""

    def add_scalar(self, name: str, value: Any, step: int = 0, **kwargs: Any) -> None:
        """Record one scalar at ``step``."""

    def add_scalars(
        self,
        scalar_dict: Mapping[str, Any],
        step: int = 0,
        file_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Record several scalars at ``step``."""

    def close(self) -> None:
        """Flush and release the backend's resources."""


@VISBACKENDS.register_module()
class LocalVisBackend(BaseVisBackend):
    """Write scalars as JSON lines and the config as text under ``save_dir``.

    ``add_scalars(d, step)`` appends ``json.dumps({**d, 'step': step})`` (``step`` only if ``d``
    has none) plus a newline to ``<save_dir>/scalars.json`` and, when ``file_path`` is given, to
    ``<save_dir>/<file_path>`` as well. Appends are flushed at once and fsynced in batches (before
    every checkpoint or other atomic write, at :meth:`close` and at exit; see
    :mod:`fengine.utils.fileio`), so earlier lines are never torn; the config file is replaced
    atomically.

    Args:
        save_dir: the folder to write into.
        img_save_dir: sub-folder for images (PNG files ``<name>_<step>.png``).
        config_save_file: file name of the config.
        scalar_save_file: file name of the scalar log; must end with ``.json``.

    Raises:
        ValueError: ``scalar_save_file`` does not end with ``.json``.
    """

    def __init__(
        self,
        save_dir: str,
        img_save_dir: str = "vis_image",
        config_save_file: str = "config.py",
        scalar_save_file: str = "scalars.json",
    ) -> None:
        if not scalar_save_file.endswith(".json"):
            raise ValueError(
                f"LocalVisBackend: `scalar_save_file` must end with .json, got {scalar_save_file!r}"
            )
        super().__init__(save_dir)
        self._img_save_dir = img_save_dir
        self._config_save_file = config_save_file
        self._scalar_save_file = scalar_save_file
        self._extra_files: dict[str, str] = {}  # checked `file_path` -> the file it names

    def _init_env(self) -> None:
        if self._save_dir is None:
            raise ValueError("LocalVisBackend needs a `save_dir` to write into")
        os.makedirs(self._save_dir, exist_ok=True)
        self._config_save_file = os.path.join(self._save_dir, self._config_save_file)
        self._scalar_save_file = os.path.join(self._save_dir, self._scalar_save_file)

    @force_init_env
    def add_config(self, config: Any, **kwargs: Any) -> None:
        """Write the config's text to ``<save_dir>/config.py`` (atomically)."""
        atomic_write(self._config_save_file, config_text(config).encode("utf-8"))

    @force_init_env
    def add_image(self, name: str, image: np.ndarray, step: int = 0, **kwargs: Any) -> None:
        """Write ``image`` (``(H, W, 3)`` RGB) to ``<save_dir>/<img_save_dir>/<name>_<step>.png``."""
        folder = os.path.join(str(self._save_dir), self._img_save_dir)
        atomic_write(os.path.join(folder, f"{name}_{step}.png"), png_bytes(image))

    @force_init_env
    def add_scalar(self, name: str, value: Any, step: int = 0, **kwargs: Any) -> None:
        """Append ``{name: value, "step": step}`` to the scalar log."""
        if isinstance(value, torch.Tensor):
            value = value.item()
        append_text(self._scalar_save_file, _ENCODER.encode({name: value, "step": step}) + "\n")

    @force_init_env
    def add_scalars(
        self,
        scalar_dict: Mapping[str, Any],
        step: int = 0,
        file_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Append ``scalar_dict`` with ``step`` to the scalar log (and to ``file_path``).

        Raises:
            TypeError: ``scalar_dict`` is not a dict.
            ValueError: ``file_path`` does not end with ``.json`` or names the scalar log itself.
        """
        if not isinstance(scalar_dict, Mapping):
            raise TypeError(f"add_scalars expects a dict, got {type(scalar_dict).__name__}")
        record = dict(scalar_dict)
        record.setdefault("step", step)
        line = _ENCODER.encode(record) + "\n"
        if file_path is not None:
            extra = self._extra_files.get(file_path)
            if extra is None:
                extra = self._extra_files[file_path] = self._extra_file(file_path)
            append_text(extra, line)
        append_text(self._scalar_save_file, line)

    def _extra_file(self, file_path: str) -> str:
        if not file_path.endswith(".json"):
            raise ValueError(f"add_scalars: `file_path` must end with .json, got {file_path!r}")
        extra = os.path.join(str(self._save_dir), file_path)
        if os.path.abspath(extra) == os.path.abspath(self._scalar_save_file):
            raise ValueError(
                f"add_scalars: `file_path` {file_path!r} is the scalar log itself; name another"
            )
        return extra

    def close(self) -> None:
        """Make the appended scalar lines durable (fsync)."""
        sync_appended()


@VISBACKENDS.register_module()
class TensorboardVisBackend(BaseVisBackend):
    """Write scalars and the config to TensorBoard event files under ``save_dir``.

    Needs the ``tensorboard`` package; without it the backend warns once and does nothing.

    Args:
        save_dir: the folder of the event files.
    """

    _warned = False

    def __init__(self, save_dir: str) -> None:
        super().__init__(save_dir)
        self._writer: Any = None

    @staticmethod
    def _writer_class() -> Any:
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter

    def _init_env(self) -> None:
        try:
            writer_class = self._writer_class()
        except ImportError:
            if not TensorboardVisBackend._warned:
                TensorboardVisBackend._warned = True
                warnings.warn(
                    "TensorboardVisBackend: the `tensorboard` package is not installed, so "
                    "nothing is written to TensorBoard (pip install tensorboard)",
                    stacklevel=3,
                )
            return
        if self._save_dir is None:
            raise ValueError("TensorboardVisBackend needs a `save_dir` to write into")
        os.makedirs(self._save_dir, exist_ok=True)
        self._writer = writer_class(self._save_dir)

    @property
    @force_init_env
    def experiment(self) -> Any:
        """The ``SummaryWriter`` (``None`` without tensorboard)."""
        return self._writer

    @force_init_env
    def add_config(self, config: Any, **kwargs: Any) -> None:
        """Record the config's text under the tag ``config``."""
        if self._writer is not None:
            self._writer.add_text("config", config_text(config))

    @force_init_env
    def add_scalar(self, name: str, value: Any, step: int = 0, **kwargs: Any) -> None:
        """Record a number (int, float, NumPy number or 1-element array/tensor); warn otherwise."""
        if self._writer is None:
            return
        if isinstance(value, (int, float, torch.Tensor, np.ndarray, np.number)):
            self._writer.add_scalar(name, value, step)
        else:
            warnings.warn(
                f"TensorboardVisBackend: {name!r} is a {type(value).__name__}, not a number; skipped",
                stacklevel=2,
            )

    @force_init_env
    def add_scalars(
        self,
        scalar_dict: Mapping[str, Any],
        step: int = 0,
        file_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        """:meth:`add_scalar` for each item (``file_path`` is for local files and is ignored)."""
        for name, value in scalar_dict.items():
            self.add_scalar(name, value, step)

    def close(self) -> None:
        """Close the writer, if one was opened."""
        if self._writer is not None:
            self._writer.close()
