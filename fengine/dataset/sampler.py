"""Samplers that shard a dataset across ranks with a shared seed (MMEngine's)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sized

import torch
from torch.utils.data import Sampler

from fengine.dist import get_dist_info, sync_random_seed
from fengine.registry import DATA_SAMPLERS


def _check_dataset(dataset: object, name: str) -> Sized:
    if not isinstance(dataset, Sized):
        raise TypeError(f"{name}: `dataset` must have a length, got {type(dataset).__name__}")
    return dataset


def _seed(seed: int | None, name: str) -> int:
    if seed is None:
        return sync_random_seed()
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"{name}: `seed` must be an int or None, got {seed!r}")
    return seed


@DATA_SAMPLERS.register_module()
class DefaultSampler(Sampler[int]):
    """Indices of one rank's shard of the dataset, reshuffled per epoch.

    The order is ``torch.randperm(len(dataset))`` drawn from a generator seeded with
    ``seed + epoch`` (or ``0..n-1`` without shuffling), the same on every rank. With
    ``round_up`` it is repeated to a multiple of the world size; rank ``r`` then takes every
    ``world_size``-th index starting at ``r``, so the shards are disjoint and cover the dataset.

    Args:
        dataset: the dataset (only its length is used).
        shuffle: shuffle every epoch.
        seed: the shuffling seed; ``None`` draws one on rank 0 and shares it.
        round_up: pad so every rank gets the same number of indices.

    Raises:
        TypeError: a dataset without a length or a non-int seed.
    """

    def __init__(
        self, dataset: Sized, shuffle: bool = True, seed: int | None = None, round_up: bool = True
    ) -> None:
        self.dataset = _check_dataset(dataset, "DefaultSampler")
        self.rank, self.world_size = get_dist_info()
        self.shuffle = shuffle
        self.seed = _seed(seed, "DefaultSampler")
        self.epoch = 0
        self.round_up = round_up
        size = len(self.dataset)
        if round_up:
            self.num_samples = math.ceil(size / self.world_size)
            self.total_size = self.num_samples * self.world_size
        else:
            self.num_samples = math.ceil((size - self.rank) / self.world_size)
            self.total_size = size

    def __iter__(self) -> Iterator[int]:
        size = len(self.dataset)
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            indices = torch.randperm(size, generator=generator).tolist()
        else:
            indices = list(range(size))
        if self.round_up and indices:
            indices = (indices * (self.total_size // size + 1))[: self.total_size]
        return iter(indices[self.rank : self.total_size : self.world_size])

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Use the order of ``epoch`` from the next iteration on."""
        self.epoch = epoch


@DATA_SAMPLERS.register_module()
class InfiniteSampler(Sampler[int]):
    """An endless stream of indices for iteration-based training, sharded across ranks.

    One generator seeded with ``seed`` draws a permutation after another (or repeats
    ``0..n-1``); rank ``r`` takes every ``world_size``-th index starting at ``r``. Iterating again
    continues the same stream. ``set_epoch`` does nothing (the stream never restarts), as in
    MMEngine.

    Args:
        dataset: the dataset (only its length is used).
        shuffle: draw permutations instead of the natural order.
        seed: the seed; ``None`` draws one on rank 0 and shares it.

    Raises:
        TypeError: a dataset without a length or a non-int seed.
        ValueError: an empty dataset.
    """

    def __init__(self, dataset: Sized, shuffle: bool = True, seed: int | None = None) -> None:
        self.dataset = _check_dataset(dataset, "InfiniteSampler")
        self.rank, self.world_size = get_dist_info()
        self.shuffle = shuffle
        self.seed = _seed(seed, "InfiniteSampler")
        self.size = len(self.dataset)
        if self.size == 0:
            raise ValueError(
                "InfiniteSampler: the dataset is empty, so the stream would never yield"
            )
        self.restart()

    def restart(self, seed: int | None = None) -> None:
        """Start the stream again from its beginning, with ``seed`` if given.

        Raises:
            TypeError: a non-int seed.
        """
        if seed is not None:
            self.seed = _seed(seed, "InfiniteSampler")
        self.indices = itertools.islice(self._endless(), self.rank, None, self.world_size)

    def _endless(self) -> Iterator[int]:
        generator = torch.Generator()
        generator.manual_seed(self.seed)
        while True:
            if self.shuffle:
                yield from torch.randperm(self.size, generator=generator).tolist()
            else:
                yield from range(self.size)

    def __iter__(self) -> Iterator[int]:
        yield from self.indices

    def __len__(self) -> int:
        return self.size

    def set_epoch(self, epoch: int) -> None:
        """Accepted for the sampler-seed hook; the stream is not restarted."""
