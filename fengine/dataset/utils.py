"""Collate functions (MMEngine's ``pseudo_collate``/``default_collate``) and worker seeding."""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import default_collate as torch_default_collate

from fengine.dataset.batched import BatchedSamples
from fengine.registry import FUNCTIONS


def worker_init_fn(
    worker_id: int, num_workers: int, rank: int, seed: int, disable_subprocess_warning: bool = False
) -> None:
    """Seed a dataloader worker with ``num_workers * rank + worker_id + seed``.

    Python's ``random``, NumPy and torch are seeded, so every worker of every rank draws a
    different, reproducible stream.

    Args:
        worker_id: the worker's index in ``[0, num_workers)``.
        num_workers: workers per rank.
        rank: the process's rank.
        seed: the run's seed.
        disable_subprocess_warning: silence warnings in every worker but the first.
    """
    worker_seed = num_workers * rank + worker_id + seed
    np.random.seed(worker_seed)
    random.seed(worker_seed)
    torch.manual_seed(worker_seed)
    if disable_subprocess_warning and worker_id != 0:
        warnings.simplefilter("ignore")


def _is_data_element(item: Any) -> bool:
    return callable(getattr(item, "metainfo_keys", None))


def _first(data_batch: Sequence[Any], name: str) -> Any:
    if len(data_batch) == 0:
        raise ValueError(f"{name}: cannot collate an empty batch")
    return data_batch[0]


def _transpose(data_batch: Sequence[Any], name: str) -> list[tuple[Any, ...]]:
    size = len(data_batch[0])
    if any(len(item) != size for item in data_batch):
        raise RuntimeError(f"{name}: every sample of a batch must have the same length")
    return list(zip(*data_batch))


@FUNCTIONS.register_module()
def pseudo_collate(data_batch: Sequence[Any]) -> Any:
    """Group a batch field by field without stacking: a list of samples becomes lists per field.

    Dicts give a dict of lists; tuples and lists give a list of per-field tuples (named tuples
    keep their type); leaves (tensors, arrays, numbers, strings) stay as the per-sample values. A :class:`BatchedSamples` batch gives the same structure from
    its stacked tensors (``unbind``), without touching the samples one by one.

    Args:
        data_batch: the samples of one batch.

    Returns:
        The batch with the samples' structure, holding lists of per-sample values.

    Raises:
        ValueError: the batch is empty.
        RuntimeError: sequence samples of different lengths.
    """
    if isinstance(data_batch, BatchedSamples):
        batch = data_batch.batch
        if isinstance(batch, dict):
            return {k: list(v.unbind(0)) for k, v in batch.items()}
        return [t.unbind(0) for t in batch]  # fields of tuple samples are tuples, as below
    return _collate_structure(
        data_batch, pseudo_collate, keep=lambda item: isinstance(item, (str, bytes)), leaf=lambda batch: batch
    )


@FUNCTIONS.register_module()
def default_collate(data_batch: Sequence[Any]) -> Any:
    """Like :func:`pseudo_collate`, but leaves are stacked by ``torch``'s ``default_collate``.

    Tensors are stacked, NumPy arrays and numbers become tensors; strings, bytes and data
    elements stay lists. A :class:`BatchedSamples` batch is returned as its stacked tensors
    directly (a list for tuple samples, a dict for dict samples).

    Args:
        data_batch: the samples of one batch.

    Returns:
        The batch with the samples' structure, holding stacked tensors.

    Raises:
        ValueError: the batch is empty.
        RuntimeError: sequence samples of different lengths.
    """
    if isinstance(data_batch, BatchedSamples):
        batch = data_batch.batch
        return dict(batch) if isinstance(batch, dict) else list(batch)
    return _collate_structure(
        data_batch,
        default_collate,
        keep=lambda item: isinstance(item, (str, bytes)) or _is_data_element(item),
        leaf=lambda batch: torch_default_collate(list(batch)),
    )


def _collate_structure(
    data_batch: Sequence[Any],
    collate: Callable[[Sequence[Any]], Any],
    keep: Callable[[Any], bool],
    leaf: Callable[[Sequence[Any]], Any],
) -> Any:
    """The samples' structure, shared by both collates: recurse into named tuples, sequences and
    mappings with ``collate``; return the batch as is where ``keep`` says so; ``leaf`` elsewhere."""
    name = collate.__name__
    item = _first(data_batch, name)
    if keep(item):
        return data_batch
    if isinstance(item, tuple) and hasattr(item, "_fields"):
        return type(item)(*(collate(field) for field in zip(*data_batch)))
    if isinstance(item, Sequence):
        fields = [collate(field) for field in _transpose(data_batch, name)]
        if isinstance(item, tuple):
            return fields
        try:
            return type(item)(fields)  # type: ignore[call-arg]
        except TypeError:
            return fields
    if isinstance(item, Mapping):
        return type(item)({k: collate([d[k] for d in data_batch]) for k in item})  # type: ignore[call-arg]
    return leaf(data_batch)
