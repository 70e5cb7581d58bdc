"""Evaluator: feeds predictions to one or several metrics and merges their results."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from itertools import islice
from typing import Any

from fengine.dataset.utils import pseudo_collate
from fengine.evaluator.metric import BaseMetric
from fengine.registry import EVALUATOR, METRICS


def _chunks(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


@EVALUATOR.register_module()
class Evaluator:
    """Run several metrics over the same predictions.

    Args:
        metrics: a metric or metric config dict (built from ``METRICS``), or a list of them.

    Raises:
        TypeError: an item is neither a metric object nor a config dict.
    """

    def __init__(self, metrics: BaseMetric | Mapping[str, Any] | Sequence[Any]) -> None:
        self._dataset_meta: dict[str, Any] | None = None
        items = [metrics] if isinstance(metrics, (Mapping, BaseMetric)) else list(metrics)
        self.metrics: list[Any] = []
        for i, metric in enumerate(items):
            if isinstance(metric, Mapping):
                metric = METRICS.build(metric)
            elif not (
                callable(getattr(metric, "process", None))
                and callable(getattr(metric, "evaluate", None))
            ):
                raise TypeError(
                    f"Evaluator: metrics[{i}] must be a metric (with process/evaluate) or a "
                    f"config dict, got {type(metric).__name__}: {metric!r}"
                )
            self.metrics.append(metric)

    @property
    def dataset_meta(self) -> dict[str, Any] | None:
        """Meta information of the dataset; setting it sets it on every metric."""
        return self._dataset_meta

    @dataset_meta.setter
    def dataset_meta(self, dataset_meta: dict[str, Any] | None) -> None:
        self._dataset_meta = dataset_meta
        for metric in self.metrics:
            metric.dataset_meta = dataset_meta

    def process(self, data_samples: Sequence[Any], data_batch: Any = None) -> None:
        """Hand one batch of predictions (data elements become dicts) to every metric."""
        samples = [
            s.to_dict() if callable(getattr(s, "metainfo_keys", None)) else s for s in data_samples
        ]
        for metric in self.metrics:
            metric.process(data_batch, samples)

    def evaluate(self, size: int) -> dict[str, Any]:
        """Every metric's results, merged.

        Args:
            size: the dataset's length.

        Raises:
            ValueError: two metrics produced the same name (set different prefixes).
        """
        merged: dict[str, Any] = {}
        for metric in self.metrics:
            results = metric.evaluate(size)
            clash = sorted(set(results) & set(merged))
            if clash:
                raise ValueError(
                    f"Evaluator: several metrics report {clash}; give the metrics different "
                    "`prefix` values"
                )
            merged.update(results)
        return merged

    def offline_evaluate(
        self, data_samples: Sequence[Any], data: Sequence[Any] | None = None, chunk_size: int = 1
    ) -> dict[str, Any]:
        """Evaluate saved predictions (and, optionally, their inputs) in chunks.

        Args:
            data_samples: the predictions.
            data: the matching inputs, collated per chunk with ``pseudo_collate``.
            chunk_size: predictions per ``process`` call.

        Raises:
            ValueError: ``data`` and ``data_samples`` differ in length.
        """
        if data is not None and len(data) != len(data_samples):
            raise ValueError(
                "offline_evaluate: `data_samples` and `data` must have the same length, got "
                f"{len(data_samples)} and {len(data)}"
            )
        inputs = _chunks(data, chunk_size) if data is not None else None
        size = 0
        for chunk in _chunks(data_samples, chunk_size):
            batch = pseudo_collate(next(inputs)) if inputs is not None else None
            self.process(chunk, batch)
            size += len(chunk)
        return self.evaluate(size)
