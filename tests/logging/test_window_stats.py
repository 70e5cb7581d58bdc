"""Short-window sums and means: the same doubles NumPy computes, bit for bit."""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.logging.window_stats import MAX_FAST_WINDOW, fast_mean, numpy_sum

# Every double, NaN, infinities and both zeros included, and the ordinary magnitudes of losses.
any_float = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-10.0, 10.0),
    st.sampled_from([0.0, -0.0, 1e308, -1e308]),
)
windows = st.lists(any_float, min_size=1, max_size=MAX_FAST_WINDOW)


def bits(value: float) -> bytes:
    """The double's bytes, so -0.0 differs from 0.0 and NaN equals NaN."""
    return struct.pack("<d", value)


@settings(max_examples=300, deadline=None)
@given(windows)
def test_numpy_sum_is_numpys_add_reduce(values: list[float]) -> None:
    with np.errstate(all="ignore"):
        expected = float(np.array(values).sum())
    assert bits(numpy_sum(values)) == bits(expected)


@settings(max_examples=100, deadline=None)
@given(windows, st.data())
def test_fast_mean_is_the_numpy_mean_for_unit_counts(values: list[float], data: st.DataObject) -> None:
    counts = data.draw(st.lists(st.sampled_from([1, 1.0, True]), min_size=len(values), max_size=len(values)))
    with np.errstate(all="ignore"):
        expected = float(np.array(values).sum() / np.array(counts).sum())
    mean = fast_mean(values, counts)
    assert mean is not None and bits(mean) == bits(expected)


def test_fast_mean_declines_what_only_numpy_answers() -> None:
    assert fast_mean([1.0, 2], [1, 1]) is None  # an int value makes an integer/mixed array
    assert fast_mean([1.0, 2.0], [1, 2]) is None  # weighted
    assert fast_mean([1.0] * (MAX_FAST_WINDOW + 1), [1] * (MAX_FAST_WINDOW + 1)) is None
    assert fast_mean([True, 1.0], [1, 1]) is None
