"""Starting a dataloader pass part-way through, at the index level.

A resumed run continues a pass of the dataloader after the batches it already trained. Reading
and discarding those batches (MMEngine's way) costs as much data loading as training them. For a
``torch.utils.data.DataLoader`` over a map-style dataset, fengine instead advances the *index*
sampler (the batch sampler, or the sampler) before the pass's iterator exists: the skipped
indices are drawn, so the order of the rest is exactly the uninterrupted one, but no sample is
fetched, transformed or collated, and no worker sees them.

The sampler is swapped for the creation of the iterator only (DataLoader forbids replacing it
afterwards, so the swap bypasses that guard); the iterator keeps a wrapper that skips on its first
pass only, so persistent workers' later passes are whole. Anything else (iterable datasets, other
loaders) falls back to fetching and dropping the batches.

With ``num_workers > 0``, worker processes are seeded when the pass starts; samples drawn with
their random generators (random augmentation) are the same as the uninterrupted run's only when
no skip happens, because the workers have not consumed the skipped samples' draws.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator
from typing import Any

from torch.utils.data import DataLoader, IterableDataset


class _Entries:
    """One pass of the index sampler; the owner's pending skip is taken by the first pass that is read.

    The drop happens at the first request or at :meth:`advance`, whichever comes first: after
    the DataLoader iterator drew its base seed, as a normal pass draws the sampler's own seed
    (``RandomSampler``) only when the first batch is requested. (A multi-process iterator opens
    the sampler twice before reading it, so the skip cannot be bound to the first opening.)
    """

    def __init__(self, entries: Iterator[Any], owner: _SkipFirst) -> None:
        self._entries = entries
        self._owner = owner

    def advance(self) -> None:
        """Drop the owner's pending entries now (fewer when the pass is shorter)."""
        pending, self._owner.pending = self._owner.pending, 0
        self._owner.skipped += sum(1 for _ in itertools.islice(self._entries, pending))

    def __iter__(self) -> _Entries:
        return self

    def __next__(self) -> Any:
        if self._owner.pending:
            self.advance()
        return next(self._entries)


class _SkipFirst:
    """An index sampler whose first pass read starts ``skip`` entries in (later passes are whole)."""

    def __init__(self, inner: Any, skip: int) -> None:
        self._inner = inner
        self.pending = skip
        self.skipped = 0
        self.latest: _Entries | None = None

    def __iter__(self) -> Iterator[Any]:
        self.latest = _Entries(iter(self._inner), self)
        return self.latest

    def __len__(self) -> int:
        return len(self._inner)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _index_level(dataloader: Any) -> str | None:
    """The attribute holding the loader's index sampler, when skipping there is possible."""
    if not isinstance(dataloader, DataLoader) or isinstance(dataloader.dataset, IterableDataset):
        return None
    if getattr(dataloader, "_iterator", None) is not None:  # persistent workers reuse their own
        return None
    return "batch_sampler" if dataloader.batch_sampler is not None else "sampler"


def iterate_from(dataloader: Iterable[Any], skip: int) -> tuple[Iterator[Any], int, bool]:
    """A new pass over ``dataloader`` that starts after its first ``skip`` batches.

    Args:
        dataloader: a DataLoader (skipped at the index level) or any iterable (skipped by
            fetching).
        skip: batches to pass over (``<= 0``: none).

    Returns:
        ``(iterator, skipped, by_index)``: the pass; how many batches were passed over (fewer
        than ``skip`` when the pass is shorter, and then the iterator is exhausted); whether
        the skip happened without fetching anything.
    """
    if skip <= 0:
        return iter(dataloader), 0, True
    attribute = _index_level(dataloader)
    if attribute is None:
        batches = iter(dataloader)
        return batches, sum(1 for _ in itertools.islice(batches, skip)), False
    original = getattr(dataloader, attribute)
    wrapper = _SkipFirst(original, skip)
    object.__setattr__(dataloader, attribute, wrapper)
    try:
        batches = iter(dataloader)  # the iterator takes the index sampler now
    finally:
        object.__setattr__(dataloader, attribute, original)
    if wrapper.latest is None:  # an iterator that opens its sampler lazily skips at its first batch
        return batches, skip, True
    wrapper.latest.advance()
    return batches, wrapper.skipped, True


def seeded_sampler(dataloader: Any) -> Any:
    """The dataloader's sampler that has a ``seed`` (directly or inside its batch sampler), or ``None``."""
    for sampler in (
        getattr(dataloader, "sampler", None),
        getattr(getattr(dataloader, "batch_sampler", None), "sampler", None),
    ):
        if isinstance(getattr(sampler, "seed", None), int):
            return sampler
    return None


def restore_sampler_seed(dataloader: Any, saved: Any) -> bool:
    """Give the dataloader's sampler the seed of the saved run, when they differ.

    A run resumed without a fixed seed builds its sampler with a fresh one before the
    checkpoint's seed is known; the saved seed makes the order the saved run's again.

    Args:
        dataloader: the train dataloader.
        saved: the checkpoint's ``data_position['sampler']`` (``{'seed', 'epoch'}``) or ``None``.

    Returns:
        Whether the seed was changed.
    """
    sampler = seeded_sampler(dataloader)
    seed = saved.get("seed") if isinstance(saved, dict) else None
    if sampler is None or not isinstance(seed, int) or sampler.seed == seed:
        return False
    restart = getattr(sampler, "restart", None)
    if callable(restart):
        restart(seed)
    else:
        sampler.seed = seed
    return True


__all__ = ["iterate_from", "restore_sampler_seed", "seeded_sampler"]
