"""get_priority: MMEngine's table (spec A2) and the error kinds it documents."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.core.priority import Priority, get_priority


def test_levels_match_mmengine() -> None:
    assert {p.name: p.value for p in Priority} == {
        "HIGHEST": 0,
        "VERY_HIGH": 10,
        "HIGH": 30,
        "ABOVE_NORMAL": 40,
        "NORMAL": 50,
        "BELOW_NORMAL": 60,
        "LOW": 70,
        "VERY_LOW": 90,
        "LOWEST": 100,
    }


def test_mmengine_table() -> None:
    assert get_priority("very_high") == 10
    assert get_priority(Priority.LOW) == 70
    assert get_priority(37) == 37
    assert get_priority(True) == 1


@given(st.integers(0, 100))
@settings(max_examples=30)
def test_ints_in_range_are_themselves(value: int) -> None:
    assert get_priority(value) == value


@given(st.sampled_from(list(Priority)), st.sampled_from([str.lower, str.upper, str.title]))
@settings(max_examples=30)
def test_names_in_any_case(priority: Priority, case: object) -> None:
    assert get_priority(case(priority.name)) == priority.value  # type: ignore[operator]


@pytest.mark.parametrize("bad", [-1, 101, 1000])
def test_out_of_range_is_value_error(bad: int) -> None:
    with pytest.raises(ValueError, match="between 0 and 100"):
        get_priority(bad)


@pytest.mark.parametrize("bad", [1.5, None, [50]])
def test_other_types_are_type_error_listing_accepted(bad: object) -> None:
    with pytest.raises(TypeError, match="VERY_HIGH"):
        get_priority(bad)  # type: ignore[arg-type]


def test_unknown_name_is_key_error_listing_accepted() -> None:
    with pytest.raises(KeyError, match=r"'foo'.*NORMAL"):
        get_priority("foo")
