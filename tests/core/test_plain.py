"""Records ↔ plain data: registered tags, exact round trips, and a decoder that builds nothing else."""

from __future__ import annotations

import collections
import enum
import io
from typing import Any

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.core import plain
from fengine.core.plain import UntrustedCheckpointError, from_plain, to_plain
from fengine.testing.contracts import canonical


@plain.register("tests.plain.Colour")
class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@plain.register("tests.plain.Inner")
@attrs.frozen(eq=False)
class Inner:
    weights: dict[str, torch.Tensor]
    colour: Colour


@plain.register("tests.plain.Outer")
@attrs.frozen(eq=False)
class Outer:
    step: int
    best: float | None
    ids: tuple[int, ...]
    seen: frozenset[str]
    inner: Inner
    history: list[Any]


@plain.register("tests.plain.WithDefault")
@attrs.frozen
class WithDefault:
    required: int
    optional: str = "x"
    _private: int = 0


@attrs.frozen
class Unregistered:
    value: int


class Shade(enum.Enum):
    DARK = 1


def _load(value: Any) -> Any:
    buffer = io.BytesIO()
    torch.save(to_plain(value), buffer)
    buffer.seek(0)
    return plain.load(buffer)


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


def test_records_are_stored_under_their_tag_not_their_module() -> None:
    stored = to_plain(Inner({}, Colour.BLUE))
    assert stored == {"__record__": "tests.plain.Inner", "fields": {"weights": {}, "colour": {"__enum__": "tests.plain.Colour", "value": "blue"}}}
    assert plain.registered()["tests.plain.Inner"] is Inner


def test_private_fields_and_defaults() -> None:
    record = WithDefault(3, "y", 7)
    assert _load(record) == record
    assert from_plain({"__record__": "tests.plain.WithDefault", "fields": {"required": 1}}) == WithDefault(1)


def test_dicts_that_look_like_tags_survive() -> None:
    value = {"__record__": "not really", "x": 1}
    assert _load(value) == value
    assert _load({"__dict__": 5}) == {"__dict__": 5}


def test_unchanged_containers_are_returned_as_they_are() -> None:
    weights = collections.OrderedDict(w=torch.ones(2))
    weights._metadata = {"": {"version": 2}}  # type: ignore[attr-defined]
    checkpoint = {"state_dict": weights, "hooks": {"a": to_plain(Colour.RED)}}
    decoded = from_plain(checkpoint)
    assert decoded["state_dict"] is weights and decoded["hooks"] == {"a": Colour.RED}


def test_unstorable_values_are_named() -> None:
    with pytest.raises(TypeError, match="cannot store a function"):
        to_plain({"f": lambda: 1})


def test_an_unregistered_record_or_enum_is_refused_at_save_time() -> None:
    pattern = r"cannot store record test_plain\.Unregistered in a checkpoint: it has no checkpoint tag; decorate the class with @fengine\.core\.plain\.register\('yourpackage\.Unregistered'\)"
    with pytest.raises(TypeError, match=pattern):
        to_plain({"state": [Unregistered(1)]})
    with pytest.raises(TypeError, match=r"cannot store enum test_plain\.Shade .*register\('yourpackage\.Shade'\)"):
        to_plain(Shade.DARK)


def test_registration_rules() -> None:
    with pytest.raises(ValueError, match=r"checkpoint tag 'tests\.plain\.Inner' already names test_plain\.Inner; cannot also name test_plain\.Unregistered"):
        plain.register("tests.plain.Inner")(Unregistered)
    with pytest.raises(ValueError, match=r"test_plain\.Inner is already registered as 'tests\.plain\.Inner'; cannot also be 'tests\.plain\.Other'"):
        plain.register("tests.plain.Other")(Inner)
    assert plain.register("tests.plain.Inner")(Inner) is Inner  # the same pair again: unchanged
    for bad in ("Inner", "tests:Inner", "os:system", "", "a..b"):
        with pytest.raises(ValueError, match="a checkpoint tag is a dotted name"):
            plain.register(bad)
    with pytest.raises(TypeError, match=r"applies to attrs records \(put it above @attrs\.frozen\) and enums"):
        plain.register("tests.plain.Function")(len)  # type: ignore[type-var]
    with pytest.raises(TypeError, match="applies to attrs records"):
        plain.register("tests.plain.Plain")(dict)
    assert "tests.plain.Function" not in plain.registered() and "tests.plain.Plain" not in plain.registered()


REFUSED = [
    ({"__record__": "nowhere:Thing", "fields": {}}, "nowhere:Thing", "no record is registered under this tag"),
    ({"__record__": "tests.plain.Colour", "fields": {}}, "tests.plain.Colour", "it names a registered enum, not a record"),
    ({"__enum__": "tests.plain.Inner", "value": 1}, "tests.plain.Inner", "it names a registered record, not a enum"),
    ({"__enum__": "tests.plain.Colour", "value": "green"}, "tests.plain.Colour", "not a member of test_plain.Colour"),
    ({"__record__": "tests.plain.WithDefault", "fields": {"required": 1, "extra": 2}}, "tests.plain.WithDefault", r"fields \['extra'\] are not declared"),
    ({"__record__": "tests.plain.WithDefault", "fields": {}}, "tests.plain.WithDefault", r"required fields \['required'\] are missing"),
    ({"__record__": "tests.plain.WithDefault", "fields": {"required": 1}, "run": "x"}, "tests.plain.WithDefault", "has exactly the keys"),
    ({"__record__": "tests.plain.WithDefault", "fields": [1]}, "tests.plain.WithDefault", "its 'fields' is a list, not a dict"),
    ({"__record__": ["os", "system"], "fields": {}}, ["os", "system"], "no record is registered"),
    ({"__frozenset__": 3}, None, "its '__frozenset__' is a int"),
]


@pytest.mark.parametrize(("entry", "tag", "reason"), REFUSED)
def test_refusals_name_the_tag_the_key_path_and_the_file(entry: dict[str, Any], tag: Any, reason: str) -> None:
    with pytest.raises(UntrustedCheckpointError, match=reason) as caught:
        from_plain({"hooks": {"mine": [0, entry]}}, source="/runs/epoch_3.pth")
    error = caught.value
    assert isinstance(error, ValueError)
    assert (error.tag, error.where, error.source) == (tag, "hooks.mine[1]", "/runs/epoch_3.pth")
    assert f"refused {tag!r} at hooks.mine[1] of checkpoint '/runs/epoch_3.pth'" in str(error)
    assert "@fengine.core.plain.register('package.Name')" in str(error)


def test_a_field_value_the_record_refuses_is_an_untrusted_checkpoint_error() -> None:
    from fengine.core.schedule import Step

    entry = {"__record__": "schedule.Step", "fields": {"begin": 0, "end": 5, "by_epoch": True, "step_size": -1, "gamma": 0.5}}
    with pytest.raises(UntrustedCheckpointError, match=r"at param_schedulers\[0\]: fengine\.core\.schedule\.factors\.Step refuses the stored fields"):
        from_plain({"param_schedulers": [entry]})
    assert Step(begin=0, end=5, by_epoch=True, step_size=2, gamma=0.5) == from_plain({**entry, "fields": {**entry["fields"], "step_size": 2}})
