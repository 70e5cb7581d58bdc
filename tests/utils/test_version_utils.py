"""digit_version, is_installed and the sequence checks, against MMEngine's encoding."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.utils import digit_version, is_installed, is_list_of, is_seq_of


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        ("2.13.0+cpu", (2, 13, 0, 0, 0, 0)),
        ("1.6.0rc1", (1, 6, 0, 0, -1, 1)),
        ("1.0.post1", (1, 0, 0, 0, 1, 1)),
        ("1.10", (1, 10, 0, 0, 0, 0)),
        ("2.0.0a0", (2, 0, 0, 0, -3, 0)),
        ("2.0.0b2", (2, 0, 0, 0, -2, 2)),
    ],
)
def test_digit_version_encoding(version: str, expected: tuple[int, ...]) -> None:
    assert digit_version(version) == expected


@settings(max_examples=30)
@given(a=st.lists(st.integers(0, 30), min_size=1, max_size=4), b=st.lists(st.integers(0, 30), min_size=1, max_size=4))
def test_digit_version_orders_like_the_release_numbers(a: list[int], b: list[int]) -> None:
    pad = lambda v: v + [0] * (4 - len(v))  # noqa: E731
    va, vb = ".".join(map(str, a)), ".".join(map(str, b))
    assert (digit_version(va) < digit_version(vb)) == (pad(a) < pad(b))
    assert digit_version(va + "rc1") < digit_version(va) < digit_version(va + ".post1")


def test_digit_version_rejects_non_versions():
    with pytest.raises(ValueError, match="'abc' is not a version"):
        digit_version("abc")


def test_is_installed_and_sequence_checks():
    assert is_installed("torch") and is_installed("numpy")
    assert not is_installed("surely_not_a_package_xyz")
    assert is_list_of([1, 2], int) and not is_list_of((1, 2), int) and not is_list_of([1, "a"], int)
    assert is_seq_of((1, 2), int) and is_seq_of([1.0], (int, float)) and not is_seq_of(1, int)
