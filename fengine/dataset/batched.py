"""In-memory tensor datasets that fetch a whole batch at once (``__getitems__``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, overload

import torch

from fengine.registry import DATASETS

Sample = tuple[torch.Tensor, ...] | dict[str, torch.Tensor]


class BatchedSamples(Sequence[Sample]):
    """Samples fetched together: ``batch`` holds them stacked along a new first dimension.

    It is a sequence of per-sample views, so any collate function still works sample by sample;
    ``pseudo_collate``/``default_collate`` recognise it and use ``batch`` directly instead.

    Args:
        batch: a tuple or dict of tensors whose first dimension is the batch.
    """

    __slots__ = ("batch",)

    def __init__(self, batch: Sample) -> None:
        self.batch = batch

    def _tensors(self) -> Sequence[torch.Tensor]:
        return list(self.batch.values()) if isinstance(self.batch, dict) else self.batch

    def __len__(self) -> int:
        tensors = self._tensors()
        return int(tensors[0].shape[0]) if tensors else 0

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> list[Sample]: ...

    def __getitem__(self, index: int | slice) -> Sample | list[Sample]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self))[index]]
        if isinstance(self.batch, dict):
            return {k: v[index] for k, v in self.batch.items()}
        return tuple(t[index] for t in self.batch)

    def __repr__(self) -> str:
        return f"BatchedSamples(len={len(self)})"


@DATASETS.register_module()
class InMemoryDataset:
    """A dataset of tensors held in memory, indexed along their first dimension.

    ``dataset[i]`` is ``(t[i] for t in tensors)`` as a tuple, or ``{name: t[i]}`` when the tensors
    are given by keyword (e.g. ``InMemoryDataset(inputs=x, data_samples=y)``, the layout
    ``BaseModel`` expects). ``dataset.__getitems__(indices)`` — which ``torch``'s ``DataLoader``
    calls with a whole batch of indices — gathers every tensor with one ``index_select`` and
    returns :class:`BatchedSamples`, so a batch costs one fetch and no per-sample collation.

    Args:
        *tensors: tensors with equal first dimensions (tuple samples).
        metainfo: optional dataset meta information (e.g. class names).
        **named_tensors: tensors with equal first dimensions (dict samples).

    Raises:
        ValueError: no tensors, both positional and keyword tensors, or first dimensions differ.
        TypeError: an argument is not a tensor.
    """

    def __init__(
        self,
        *tensors: torch.Tensor,
        metainfo: Mapping[str, Any] | None = None,
        **named_tensors: torch.Tensor,
    ) -> None:
        if tensors and named_tensors:
            raise ValueError(
                "InMemoryDataset: give the tensors either positionally (tuple samples) or by "
                f"name (dict samples), not both; got {len(tensors)} positional and "
                f"{sorted(named_tensors)}"
            )
        items = dict(named_tensors) if named_tensors else {str(i): t for i, t in enumerate(tensors)}
        if not items:
            raise ValueError("InMemoryDataset needs at least one tensor")
        for name, tensor in items.items():
            if not isinstance(tensor, torch.Tensor) or tensor.dim() == 0:
                raise TypeError(
                    f"InMemoryDataset: tensor {name!r} must be a tensor with a first dimension, "
                    f"got {type(tensor).__name__}"
                )
        sizes = {name: int(t.shape[0]) for name, t in items.items()}
        if len(set(sizes.values())) != 1:
            raise ValueError(f"InMemoryDataset: tensors differ in their first dimension: {sizes}")
        self.tensors: Sample = dict(named_tensors) if named_tensors else tuple(tensors)
        self._size = next(iter(sizes.values()))
        self._metainfo = dict(metainfo or {})

    @property
    def metainfo(self) -> dict[str, Any]:
        """The dataset's meta information (a copy)."""
        return dict(self._metainfo)

    def __len__(self) -> int:
        return self._size

    def __getitem__(self, index: int) -> Sample:
        if isinstance(self.tensors, dict):
            return {k: v[index] for k, v in self.tensors.items()}
        return tuple(t[index] for t in self.tensors)

    def __getitems__(self, indices: Sequence[int]) -> BatchedSamples:
        """The samples at ``indices``, stacked (one ``index_select`` per tensor)."""
        tensors = self.tensors.values() if isinstance(self.tensors, dict) else self.tensors
        index = torch.as_tensor(indices, dtype=torch.long)
        picked = [t.index_select(0, index if t.is_cpu else index.to(t.device)) for t in tensors]
        if isinstance(self.tensors, dict):
            return BatchedSamples(dict(zip(self.tensors, picked)))
        return BatchedSamples(tuple(picked))
