"""Flat tensor-tree helpers: torch's bucketing order and clip_grad_norm_'s total norm."""

from __future__ import annotations

import math

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.core import tree

DTYPES = [torch.float32, torch.float64, torch.float16]


@st.composite
def tensor_lists(draw: st.DrawFn) -> list[torch.Tensor]:
    n = draw(st.integers(1, 6))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    out = []
    for _ in range(n):
        shape = draw(st.lists(st.integers(1, 9), min_size=0, max_size=3))
        dtype = draw(st.sampled_from(DTYPES))
        out.append(torch.randn(shape, generator=gen).to(dtype))
    return out


@settings(max_examples=40, deadline=None)
@given(tensor_lists())
def test_buckets_partition_by_dtype_and_keep_order(tensors: list[torch.Tensor]) -> None:
    buckets = tree.group_by_device_dtype(tensors)
    flat = [i for bucket in buckets for i in bucket]
    assert sorted(flat) == list(range(len(tensors)))
    for bucket in buckets:
        assert list(bucket) == sorted(bucket)
        assert len({(tensors[i].device, tensors[i].dtype) for i in bucket}) == 1
    assert len(buckets) == len({t.dtype for t in tensors})


@settings(max_examples=40, deadline=None)
@given(tensor_lists(), st.sampled_from([2.0, 1.0, 3.5, math.inf]))
def test_global_norm_is_bit_identical_to_clip_grad_norm(tensors: list[torch.Tensor], p: float) -> None:
    params = [torch.zeros_like(t, requires_grad=True) for t in tensors]
    for param, t in zip(params, tensors):
        param.grad = t.clone()
    expected = torch.nn.utils.clip_grad_norm_(params, max_norm=math.inf, norm_type=p)
    before = [t._version for t in tensors]
    got = tree.global_norm(tensors, p)
    assert torch.equal(got, expected) or (got.isnan() and expected.isnan())
    assert [t._version for t in tensors] == before


def test_empty_inputs() -> None:
    assert tree.group_by_device_dtype([]) == ()
    assert torch.equal(tree.global_norm([]), torch.tensor(0.0))


def test_take_and_versions() -> None:
    a, b = torch.zeros(2), torch.ones(3)
    assert tree.take([a, None, b], [2, 0]) == [b, a]
    v = tree.versions({"a": a, "b": b, "none": None})
    a.add_(1)
    assert v == {"a": 0, "b": 0} and tree.versions({"a": a}) == {"a": 1}
