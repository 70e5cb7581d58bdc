"""pseudo_collate, default_collate and the batched fetch path of InMemoryDataset."""

from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import DataLoader
from torch.utils.data import default_collate as torch_default_collate

from fengine.dataset import (
    BatchedSamples,
    DefaultSampler,
    InMemoryDataset,
    default_collate,
    pseudo_collate,
)
from fengine.registry import FUNCTIONS

Pair = namedtuple("Pair", ["x", "y"])


def assert_same(a, b):
    """Structural equality with exact tensor comparison."""
    assert type(a) is type(b), (type(a), type(b))
    if isinstance(a, torch.Tensor):
        assert a.shape == b.shape and a.dtype == b.dtype and torch.equal(a, b)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            assert_same(a[key], b[key])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            assert_same(x, y)
    else:
        assert a == b


def test_pseudo_collate_groups_without_stacking():
    t = [torch.tensor([1.0]), torch.tensor([2.0])]
    batch = [{"inputs": t[0], "meta": "a", "n": 1}, {"inputs": t[1], "meta": "b", "n": 2}]
    out = pseudo_collate(batch)
    assert out["meta"] == ["a", "b"] and out["n"] == [1, 2]
    assert out["inputs"][0] is t[0] and out["inputs"][1] is t[1]
    assert pseudo_collate([(1, "x"), (2, "y")]) == [(1, 2), ("x", "y")]
    assert pseudo_collate([[1, 2], [3, 4]]) == [(1, 3), (2, 4)]
    assert pseudo_collate([Pair(1, 2), Pair(3, 4)]) == Pair((1, 3), (2, 4))
    assert pseudo_collate(["a", "b"]) == ["a", "b"]


def test_default_collate_stacks_leaves():
    batch = [
        {"inputs": torch.tensor([1.0, 2.0]), "label": 1, "arr": np.array([1, 2]), "name": "a"},
        {"inputs": torch.tensor([3.0, 4.0]), "label": 0, "arr": np.array([3, 4]), "name": "b"},
    ]
    out = default_collate(batch)
    assert torch.equal(out["inputs"], torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert torch.equal(out["label"], torch.tensor([1, 0]))
    assert torch.equal(out["arr"], torch.tensor([[1, 2], [3, 4]]))
    assert out["name"] == ["a", "b"]
    pairs = default_collate(
        [(torch.tensor(1), torch.tensor(2.0)), (torch.tensor(3), torch.tensor(4.0))]
    )
    assert isinstance(pairs, list)
    assert_same(pairs, [torch.tensor([1, 3]), torch.tensor([2.0, 4.0])])
    assert_same(
        default_collate([Pair(1, 2), Pair(3, 4)]), Pair(torch.tensor([1, 3]), torch.tensor([2, 4]))
    )
    assert default_collate([("a", 1), ("b", 2)])[0] == ("a", "b")


def test_collate_errors():
    with pytest.raises(ValueError, match="empty"):
        default_collate([])
    with pytest.raises(RuntimeError, match="same length"):
        pseudo_collate([[1, 2], [3]])


def named_dataset(n: int) -> InMemoryDataset:
    return InMemoryDataset(
        inputs=torch.randn(n, 3), data_samples=torch.arange(n), mask=torch.rand(n, 2, 2) > 0.5
    )


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 30), st.data(), st.booleans())
def test_batched_fetch_equals_per_sample_collation(n, data, named):
    indices = data.draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=12))
    ds = named_dataset(n) if named else InMemoryDataset(torch.randn(n, 3), torch.arange(n))
    batched = ds.__getitems__(indices)
    per_sample = [ds[i] for i in indices]
    assert len(batched) == len(indices)
    for collate in (default_collate, pseudo_collate):
        assert_same(collate(batched), collate(per_sample))
    assert_same(torch_default_collate(batched), torch_default_collate(per_sample))


class CountingDataset(InMemoryDataset):
    def __init__(self, *tensors):
        super().__init__(*tensors)
        self.single = 0
        self.batched = 0

    def __getitem__(self, index):
        self.single += 1
        return super().__getitem__(index)

    def __getitems__(self, indices):
        self.batched += 1
        return super().__getitems__(indices)


class PerSampleView(torch.utils.data.Dataset):
    def __init__(self, dataset):
        self.dataset = dataset

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        return self.dataset[index]


@pytest.mark.parametrize("collate", [default_collate, pseudo_collate])
def test_dataloader_does_one_fetch_per_batch_with_the_same_batches(collate):
    x, y = torch.randn(100, 5), torch.randint(0, 3, (100,))
    ds = CountingDataset(x, y)
    fast = list(
        DataLoader(ds, batch_size=32, sampler=DefaultSampler(ds, seed=7), collate_fn=collate)
    )
    assert (ds.batched, ds.single) == (4, 0)
    slow_ds = PerSampleView(InMemoryDataset(x, y))
    slow = list(
        DataLoader(
            slow_ds, batch_size=32, sampler=DefaultSampler(slow_ds, seed=7), collate_fn=collate
        )
    )
    assert len(fast) == len(slow) == 4
    for a, b in zip(fast, slow):
        assert_same(a, b)


def test_in_memory_dataset_samples_and_errors():
    ds = InMemoryDataset(torch.arange(4), torch.arange(4) * 2, metainfo={"classes": ("a",)})
    assert len(ds) == 4 and ds[1] == (torch.tensor(1), torch.tensor(2))
    assert ds.metainfo == {"classes": ("a",)}
    named = InMemoryDataset(inputs=torch.zeros(2, 1), data_samples=torch.ones(2))
    assert set(named[0]) == {"inputs", "data_samples"}
    assert isinstance(named.__getitems__([0, 1]), BatchedSamples)
    assert named.__getitems__([0, 1])[0:1][0].keys() == named[0].keys()
    with pytest.raises(ValueError, match="first dimension"):
        InMemoryDataset(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="not both"):
        InMemoryDataset(torch.zeros(3), y=torch.zeros(3))
    with pytest.raises(ValueError, match="at least one"):
        InMemoryDataset()
    with pytest.raises(TypeError, match="'0'"):
        InMemoryDataset([1, 2, 3])


def test_collate_functions_are_registered():
    assert FUNCTIONS.get("pseudo_collate") is pseudo_collate
    assert FUNCTIONS.get("default_collate") is default_collate
