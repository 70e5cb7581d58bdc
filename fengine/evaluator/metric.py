"""BaseMetric: per-batch ``process`` on each rank, one ``compute_metrics`` over all results."""

from __future__ import annotations

import logging
import pickle
from abc import ABCMeta, abstractmethod
from collections.abc import Sequence
from typing import Any

import torch

from fengine.dist import broadcast_object_list, collect_results, is_main_process
from fengine.logging import print_log
from fengine.registry import METRICS
from fengine.utils.fileio import atomic_write


def to_cpu(data: Any) -> Any:
    """``data`` with every tensor (and ``.to``-able data element) moved to the CPU."""
    if isinstance(data, torch.Tensor) or callable(getattr(data, "metainfo_keys", None)):
        return data.to("cpu")
    if isinstance(data, list):
        return [to_cpu(d) for d in data]
    if isinstance(data, tuple):
        return tuple(to_cpu(d) for d in data)
    if isinstance(data, dict):
        return {k: to_cpu(v) for k, v in data.items()}
    return data


class BaseMetric(metaclass=ABCMeta):
    """A metric: ``process`` appends per-sample results to ``self.results``; ``evaluate`` reduces.

    ``evaluate(size)`` gathers every rank's ``results`` in dataset order (dropping the samples the
    sampler repeated to pad the last shard), calls ``compute_metrics`` on rank 0, prefixes each
    key as ``<prefix>/<name>`` when a prefix is set, shares the dict with every rank and clears
    ``results``.

    Subclasses implement ``process(data_batch, data_samples)`` and ``compute_metrics(results)``.

    Args:
        collect_device: ``'cpu'`` or ``'gpu'``: where results are gathered across ranks.
        prefix: prefix of the metric names (default: the class's ``default_prefix``).
        collect_dir: accepted for compatibility; results are gathered in memory.

    Raises:
        TypeError: the subclass does not implement ``process`` and ``compute_metrics``.
        ValueError: ``collect_device`` is neither ``'cpu'`` nor ``'gpu'``, or ``collect_dir`` is
            given with ``collect_device='gpu'``.
    """

    default_prefix: str | None = None

    def __new__(cls, *args: Any, **kwargs: Any) -> BaseMetric:
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        if missing:
            raise TypeError(
                f"{cls.__name__} cannot be created: it must implement {', '.join(missing)} "
                "(process(self, data_batch, data_samples) appends to self.results; "
                "compute_metrics(self, results) returns a dict of metric values)"
            )
        return super().__new__(cls)

    def __init__(
        self, collect_device: str = "cpu", prefix: str | None = None, collect_dir: str | None = None
    ) -> None:
        if collect_device not in ("cpu", "gpu"):
            raise ValueError(f"`collect_device` must be 'cpu' or 'gpu', got {collect_device!r}")
        if collect_dir is not None and collect_device != "cpu":
            raise ValueError("`collect_dir` can only be set with collect_device='cpu'")
        self._dataset_meta: dict[str, Any] | None = None
        self.collect_device = collect_device
        self.collect_dir = collect_dir
        self.results: list[Any] = []
        self.prefix = prefix or self.default_prefix
        if self.prefix is None:
            print_log(
                f"The prefix is not set in metric class {type(self).__name__}.",
                logger="current",
                level=logging.WARNING,
            )

    @property
    def dataset_meta(self) -> dict[str, Any] | None:
        """Meta information of the evaluated dataset (e.g. class names)."""
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict[str, Any] | None) -> None:
        self._dataset_meta = dataset_meta

    @abstractmethod
    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Append the results of one batch to ``self.results``."""

    @abstractmethod
    def compute_metrics(self, results: list[Any]) -> dict[str, Any]:
        """The metrics over all ``results`` (every rank's, in dataset order)."""

    def evaluate(self, size: int) -> dict[str, Any]:
        """Gather, compute and share the metrics of the ``size`` processed samples.

        Args:
            size: the dataset's length (results beyond it were padding).

        Returns:
            ``{'<prefix>/<name>': value}`` (or ``{name: value}`` without a prefix).

        Raises:
            TypeError: ``compute_metrics`` did not return a dict.
        """
        if not self.results:
            print_log(
                f"{type(self).__name__} got empty `self.results`. Please ensure that the "
                "processed results are properly added into `self.results` in `process` method.",
                logger="current",
                level=logging.WARNING,
            )
        results = collect_results(self.results, size, self.collect_device)
        shared: list[Any] = [None]
        if is_main_process():
            metrics = self.compute_metrics(to_cpu(results))
            if not isinstance(metrics, dict):
                raise TypeError(
                    f"{type(self).__name__}.compute_metrics must return a dict, got "
                    f"{type(metrics).__name__}"
                )
            if self.prefix:
                metrics = {f"{self.prefix}/{k}": v for k, v in metrics.items()}
            shared[0] = metrics
        broadcast_object_list(shared)
        self.results.clear()
        out: dict[str, Any] = shared[0]
        return out


@METRICS.register_module()
class DumpResults(BaseMetric):
    """Save every prediction to a pickle file instead of computing metrics.

    Args:
        out_file_path: the ``.pkl``/``.pickle`` file to write (atomically, on rank 0).
        collect_device: see :class:`BaseMetric`.
        collect_dir: see :class:`BaseMetric`.

    Raises:
        ValueError: the file name does not end with ``.pkl`` or ``.pickle``.
    """

    def __init__(
        self, out_file_path: str, collect_device: str = "cpu", collect_dir: str | None = None
    ) -> None:
        super().__init__(collect_device=collect_device, collect_dir=collect_dir)
        if not out_file_path.endswith((".pkl", ".pickle")):
            raise ValueError(f"DumpResults: The output file must be a pkl file, got {out_file_path!r}")
        self.out_file_path = out_file_path

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Keep the predictions (on the CPU)."""
        self.results.extend(to_cpu(list(data_samples)))

    def compute_metrics(self, results: list[Any]) -> dict[str, Any]:
        """Write ``results`` to the pickle file; no metrics."""
        atomic_write(self.out_file_path, pickle.dumps(results))
        print_log(f"Results has been saved to {self.out_file_path}.", logger="current")
        return {}
