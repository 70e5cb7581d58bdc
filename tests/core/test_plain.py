"""Records ↔ plain data round-trips through torch.save / torch.load(weights_only=True)."""

from __future__ import annotations

import enum
import io
from typing import Any

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.core.plain import from_plain, to_plain
from fengine.testing.contracts import canonical


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@attrs.frozen(eq=False)
class Inner:
    weights: dict[str, torch.Tensor]
    colour: Colour


@attrs.frozen(eq=False)
class Outer:
    step: int
    best: float | None
    ids: tuple[int, ...]
    seen: frozenset[str]
    inner: Inner
    history: list[Any]


def _load(value: Any) -> Any:
    buffer = io.BytesIO()
    torch.save(to_plain(value), buffer)
    buffer.seek(0)
    return from_plain(torch.load(buffer, weights_only=True))


tensors = st.builds(
    lambda shape, seed, dtype: torch.randn(shape, generator=torch.Generator().manual_seed(seed)).to(dtype),
    st.lists(st.integers(1, 3), max_size=3).map(tuple),
    st.integers(0, 1000),
    st.sampled_from([torch.float32, torch.float64, torch.int64, torch.bfloat16]),
)
records = st.builds(
    Outer,
    step=st.integers(0, 10**6),
    best=st.none() | st.floats(allow_nan=True),
    ids=st.lists(st.integers(), max_size=4).map(tuple),
    seen=st.frozensets(st.text(max_size=3), max_size=3),
    inner=st.builds(Inner, weights=st.dictionaries(st.text(min_size=1, max_size=4), tensors, max_size=3), colour=st.sampled_from(Colour)),
    history=st.lists(st.one_of(st.integers(), st.text(max_size=3), st.none()), max_size=4),
)


@given(records)
@settings(max_examples=40)
def test_records_round_trip_exactly(record: Outer) -> None:
    restored = _load(record)
    assert type(restored) is Outer and type(restored.inner) is Inner
    assert canonical(restored) == canonical(record)
    for name, tensor in record.inner.weights.items():
        assert torch.equal(restored.inner.weights[name], tensor)
        assert restored.inner.weights[name].dtype == tensor.dtype


def test_dicts_that_look_like_tags_survive() -> None:
    value = {"__record__": "not really", "x": 1}
    assert _load(value) == value


def test_unstorable_values_are_named() -> None:
    with pytest.raises(TypeError, match="cannot store a function"):
        to_plain({"f": lambda: 1})


def test_unknown_module_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="module 'nowhere' is not imported"):
        from_plain({"__record__": "nowhere:Thing", "fields": {}})
