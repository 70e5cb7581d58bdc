"""Resumed passes skip the trained batches at the index level: the order is exact, nothing is fetched."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from resume_toys import CrashAt, ResumeData, final_tensors, resume_kwargs
from torch.utils.data import DataLoader, IterableDataset

from fengine.dataset import DefaultSampler, InfiniteSampler
from fengine.runner.checkpoint import read_checkpoint
from fengine.runner.runner import Runner
from fengine.runner.skipping import iterate_from


def _ids(batches: Any) -> list[Any]:
    return [batch["targets"].int().tolist() for batch in batches]


def _flat(ids: list[Any]) -> list[int]:
    return [i for batch in ids for i in (batch if isinstance(batch, list) else [batch])]


@settings(max_examples=25)
@given(
    skip=st.integers(0, 9),
    batch_size=st.sampled_from([None, 1, 3, 4]),
    shuffle=st.booleans(),
    drop_last=st.booleans(),
)
def test_a_skipped_pass_is_the_tail_of_the_whole_pass(skip: int, batch_size: int | None, shuffle: bool, drop_last: bool) -> None:
    """Same generator state in, the same remaining batches out, and only their samples fetched."""
    dataset = ResumeData(12)
    dataset.y = torch.arange(12.0)  # targets name the samples
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last and batch_size is not None)
    torch.manual_seed(5)
    whole = _ids(iter(loader))
    after_whole = torch.rand(1)
    dataset.fetched.clear()
    torch.manual_seed(5)
    batches, skipped, by_index = iterate_from(loader, skip)
    assert dataset.fetched == [] and by_index
    assert skipped == min(skip, len(whole))
    rest = _ids(batches)
    assert rest == whole[skipped:]
    assert torch.equal(torch.rand(1), after_whole)  # the same draws from the global generator
    assert sorted(dataset.fetched) == sorted(_flat(rest))


def test_the_loader_keeps_its_sampler_and_later_passes_are_whole() -> None:
    dataset = ResumeData(12)
    sampler = DefaultSampler(dataset, shuffle=True, seed=1)
    loader = DataLoader(dataset, batch_size=4, sampler=sampler)
    batch_sampler = loader.batch_sampler
    batches, skipped, _ = iterate_from(loader, 2)
    assert (skipped, len(list(batches))) == (2, 1)
    assert loader.batch_sampler is batch_sampler and len(loader) == 3
    assert len(list(iter(loader))) == 3


def test_other_iterables_are_skipped_by_fetching() -> None:
    class Stream(IterableDataset[int]):
        def __iter__(self) -> Any:
            return iter(range(10))

    batches, skipped, by_index = iterate_from(DataLoader(Stream(), batch_size=2), 3)
    assert (skipped, by_index, [b.tolist() for b in batches]) == (3, False, [[6, 7], [8, 9]])
    plain, skipped, by_index = iterate_from([1, 2, 3], 5)
    assert (skipped, by_index, list(plain)) == (3, False, [])


def test_worker_processes_get_the_same_remaining_order() -> None:
    dataset = ResumeData(16)
    dataset.y = torch.arange(16.0)
    loader = DataLoader(dataset, batch_size=2, sampler=DefaultSampler(dataset, shuffle=True, seed=4), num_workers=2)
    whole = _ids(iter(loader))
    batches, skipped, by_index = iterate_from(loader, 3)
    assert (skipped, by_index) == (3, True)
    assert _ids(batches) == whole[3:]


@pytest.mark.parametrize(("by_epoch", "at"), [(True, 9), (False, 10)], ids=["epochs", "iterations"])
def test_a_resumed_run_fetches_only_what_it_trains(tmp_path: Path, by_epoch: bool, at: int) -> None:
    """The uninterrupted run's samples after iteration ``at`` are exactly what the resumed run loads."""
    reference = Runner(**resume_kwargs(tmp_path / "ref", by_epoch, "SGD"))
    reference.train()
    whole = reference.train_dataloader.dataset.fetched
    kwargs = resume_kwargs(tmp_path / "run", by_epoch, "SGD")
    with pytest.raises(RuntimeError, match="crash before iteration"):
        Runner(**dict(kwargs, custom_hooks=[*kwargs["custom_hooks"], CrashAt(at)])).train()
    resumed = Runner(**dict(kwargs, resume=True))
    resumed.train()
    assert resumed.train_dataloader.dataset.fetched == whole[at * 4 :]


def test_the_sampler_takes_the_seed_of_the_checkpoint(tmp_path: Path) -> None:
    """Unseeded runs draw a new seed on resume; the checkpoint's seed wins, for the sampler too."""
    crashed = resume_kwargs(tmp_path / "run", True, "SGD", randomness={"seed": None})
    with pytest.raises(RuntimeError, match="crash before iteration"):
        Runner(**dict(crashed, custom_hooks=[*crashed["custom_hooks"], CrashAt(8)])).train()
    seed = read_checkpoint(str(tmp_path / "run" / "iter_8.pth"))["meta"]["seed"]
    reference = Runner(**resume_kwargs(tmp_path / "ref", True, "SGD", randomness={"seed": seed}))
    reference.train()
    resumed = Runner(**dict(crashed, resume=True))
    assert resumed.seed != seed  # a fresh draw, replaced when the checkpoint is loaded
    resumed.train()
    assert resumed.seed == seed and resumed.train_dataloader.sampler.seed == seed
    expected, actual = final_tensors(reference), final_tensors(resumed)
    assert all(torch.equal(expected[k], actual[k]) for k in expected)


def test_infinite_sampler_restart() -> None:
    dataset = ResumeData(5)
    sampler = InfiniteSampler(dataset, seed=1)
    first = list(itertools.islice(iter(sampler), 7))
    sampler.restart()
    assert list(itertools.islice(iter(sampler), 7)) == first
    sampler.restart(2)
    assert sampler.seed == 2
    assert list(itertools.islice(iter(sampler), 7)) == list(itertools.islice(iter(InfiniteSampler(dataset, seed=2)), 7))
    with pytest.raises(TypeError, match="`seed` must be an int"):
        sampler.restart("3")  # type: ignore[arg-type]
