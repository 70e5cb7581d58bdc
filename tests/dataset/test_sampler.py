"""DefaultSampler and InfiniteSampler: seeded orders and rank shards."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fengine.dataset.sampler as sampler_module
from fengine.dataset import DefaultSampler, InfiniteSampler
from fengine.registry import DATA_SAMPLERS


def reference_order(n: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator()
    generator.manual_seed(seed + epoch)
    return torch.randperm(n, generator=generator).tolist()


def as_rank(monkeypatch, rank: int, world_size: int) -> None:
    monkeypatch.setattr(sampler_module, "get_dist_info", lambda: (rank, world_size))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 60), st.integers(0, 2**31 - 1), st.integers(0, 5))
def test_single_process_order_is_the_seeded_permutation(n, seed, epoch):
    sampler = DefaultSampler(list(range(n)), seed=seed)
    sampler.set_epoch(epoch)
    assert list(sampler) == reference_order(n, seed, epoch)
    assert list(sampler) == list(sampler)  # a pure function of (seed, epoch)
    assert len(sampler) == n
    assert list(DefaultSampler(list(range(n)), shuffle=False)) == list(range(n))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 50), st.integers(1, 6), st.integers(0, 1000), st.booleans(), st.booleans())
def test_shards_are_disjoint_and_cover_the_dataset(n, world_size, seed, shuffle, round_up):
    with pytest.MonkeyPatch.context() as monkeypatch:
        shards = []
        for rank in range(world_size):
            as_rank(monkeypatch, rank, world_size)
            sampler = DefaultSampler(range(n), shuffle=shuffle, seed=seed, round_up=round_up)
            shard = list(sampler)
            assert len(shard) == len(sampler)
            shards.append(shard)
    order = reference_order(n, seed, 0) if shuffle else list(range(n))
    flat = [i for step in itertools.zip_longest(*shards) for i in step if i is not None]
    if round_up:
        total = -(-n // world_size) * world_size
        assert {len(s) for s in shards} == {total // world_size}
        assert flat == (order * (total // n + 1))[:total]
    else:
        assert flat == order
    assert set(flat) == set(range(n))
    assert sorted(flat[:n]) == list(range(n))  # the first n interleaved indices are distinct


def test_seed_none_draws_a_seed_and_bad_arguments_are_rejected():
    sampler = DefaultSampler(range(5))
    assert isinstance(sampler.seed, int)
    with pytest.raises(TypeError, match="seed"):
        DefaultSampler(range(5), seed=1.5)
    with pytest.raises(TypeError, match="length"):
        DefaultSampler(iter(range(5)))


def test_infinite_sampler_streams_consecutive_permutations_per_rank(monkeypatch):
    generator = torch.Generator()
    generator.manual_seed(3)
    stream = [i for _ in range(4) for i in torch.randperm(5, generator=generator).tolist()]
    for rank in range(2):
        as_rank(monkeypatch, rank, 2)
        sampler = InfiniteSampler(range(5), seed=3)
        first = list(itertools.islice(iter(sampler), 4))
        sampler.set_epoch(1)  # no restart
        second = list(itertools.islice(iter(sampler), 6))
        assert first + second == stream[rank::2][:10]
        assert len(sampler) == 5
    as_rank(monkeypatch, 0, 1)
    plain = InfiniteSampler(range(3), shuffle=False, seed=0)
    assert list(itertools.islice(iter(plain), 7)) == [0, 1, 2, 0, 1, 2, 0]
    with pytest.raises(ValueError, match="empty"):
        InfiniteSampler([], seed=0)


def test_samplers_build_from_the_registry():
    sampler = DATA_SAMPLERS.build(
        dict(type="DefaultSampler", shuffle=False), default_args={"dataset": range(3), "seed": 0}
    )
    assert list(sampler) == [0, 1, 2]
    assert isinstance(
        DATA_SAMPLERS.build(dict(type="InfiniteSampler", dataset=range(3))), InfiniteSampler
    )
