"""Visualizer: a named global that forwards scalars and configs to its backends (rank 0 only)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fengine.dist import master_only
from fengine.registry import VISBACKENDS, VISUALIZERS
from fengine.utils.manager import ManagerMixin
from fengine.visualization.vis_backend import BaseVisBackend


@VISUALIZERS.register_module()
class Visualizer(ManagerMixin):
    """Send scalars and configs to every backend (``LocalVisBackend``, ``TensorboardVisBackend``).

    Backends given as config dicts are built from ``VISBACKENDS`` with
    ``save_dir=<save_dir>/vis_data`` unless they name their own; a dict's ``name`` key names the
    backend (default: its class name). Writing methods act on rank 0 only. Images are stored
    (``add_image``) but drawing on them (``draw_bboxes``, ``draw_featmap``, ...) is not provided;
    ``fig_save_cfg``/``fig_show_cfg`` are accepted for config compatibility.

    Args:
        name: the instance name (``Visualizer.get_instance(name)``).
        image: an ``(H, W, 3)`` RGB image for :meth:`get_image`.
        vis_backends: a backend or config dict, or a list of them.
        save_dir: the run's log folder; backends write into its ``vis_data`` sub-folder.

    Raises:
        TypeError: ``vis_backends`` holds something else than dicts and backends.
        ValueError: two backends share a name.
    """

    def __init__(
        self,
        name: str = "visualizer",
        image: np.ndarray | None = None,
        vis_backends: Mapping[str, Any] | BaseVisBackend | Sequence[Any] | None = None,
        save_dir: str | None = None,
        fig_save_cfg: Mapping[str, Any] | None = None,
        fig_show_cfg: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(name)
        self._dataset_meta: dict[str, Any] | None = None
        self._image: np.ndarray | None = None if image is None else np.asarray(image)
        self._vis_backends: dict[str, BaseVisBackend] = {}
        if vis_backends is None:
            backends: Sequence[Any] = []
        elif isinstance(vis_backends, (Mapping, BaseVisBackend)):
            backends = [vis_backends]
        else:
            backends = vis_backends
        root = None if save_dir is None else os.path.join(save_dir, "vis_data")
        for item in backends:
            backend_name = None
            if isinstance(item, Mapping):
                cfg = dict(item)
                backend_name = cfg.pop("name", None)
                cfg.setdefault("save_dir", root)
                item = VISBACKENDS.build(cfg)
            if not isinstance(item, BaseVisBackend):
                raise TypeError(
                    "Visualizer: `vis_backends` must be backend objects or config dicts, got "
                    f"{type(item).__name__}"
                )
            backend_name = backend_name or type(item).__name__
            if backend_name in self._vis_backends:
                raise ValueError(
                    f"Visualizer: two backends are named {backend_name!r}; give one a `name`"
                )
            self._vis_backends[backend_name] = item

    @classmethod
    def get_instance(cls, name: str, **kwargs: Any) -> Visualizer:
        """The named instance (created with ``kwargs`` if absent), also visible to
        ``Visualizer.get_current_instance()`` when ``cls`` is a subclass."""
        instance: Visualizer = super().get_instance(name, **kwargs)
        Visualizer._instance_dict[name] = instance
        return instance

    @property
    def dataset_meta(self) -> dict[str, Any] | None:
        """The dataset's meta information, if set."""
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict[str, Any] | None) -> None:
        self._dataset_meta = dataset_meta

    def get_backend(self, name: str) -> BaseVisBackend | None:
        """The backend called ``name``, or ``None``."""
        return self._vis_backends.get(name)

    @master_only
    def add_config(self, config: Any, **kwargs: Any) -> None:
        """Record the run's config in every backend."""
        for backend in self._vis_backends.values():
            backend.add_config(config, **kwargs)

    def set_image(self, image: np.ndarray) -> None:
        """Set the image that :meth:`get_image` returns (drawing on it is not provided)."""
        self._image = np.asarray(image)

    def get_image(self) -> np.ndarray:
        """The image given to the constructor or :meth:`set_image`.

        Raises:
            ValueError: no image was set.
        """
        if self._image is None:
            raise ValueError("Visualizer.get_image: no image was set (pass image= or call set_image)")
        return self._image

    @master_only
    def add_image(self, name: str, image: np.ndarray, step: int = 0, **kwargs: Any) -> None:
        """Record an ``(H, W, 3)`` RGB image at ``step`` in every backend."""
        for backend in self._vis_backends.values():
            backend.add_image(name, image, step, **kwargs)

    @master_only
    def add_scalar(self, name: str, value: Any, step: int = 0, **kwargs: Any) -> None:
        """Record one scalar at ``step`` in every backend."""
        for backend in self._vis_backends.values():
            backend.add_scalar(name, value, step, **kwargs)

    @master_only
    def add_scalars(
        self,
        scalar_dict: Mapping[str, Any],
        step: int = 0,
        file_path: str | None = None,
        **kwargs: Any,
    ) -> None:
        """Record ``scalar_dict`` at ``step`` in every backend (``file_path``: an extra JSON file)."""
        for backend in self._vis_backends.values():
            backend.add_scalars(scalar_dict, step, file_path, **kwargs)

    def close(self) -> None:
        """Close every backend."""
        for backend in self._vis_backends.values():
            backend.close()
