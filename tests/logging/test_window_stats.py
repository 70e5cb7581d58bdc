"""Short-window sums and means: the same doubles NumPy computes, bit for bit."""

from __future__ import annotations

import struct

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.logging import window_stats
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


def test_the_import_check_tells_other_summation_orders_apart(monkeypatch) -> None:
    def running_sum(values: list[float]) -> float:
        total = 0.0
        for value in values:
            total += value
        return total

    def first_plus_pairwise_rest(values: list[float]) -> float:
        return values[0] + numpy_sum(values[1:]) if len(values) > 1 else values[0]

    assert window_stats._follows_numpy()
    for other in (running_sum, first_plus_pairwise_rest):
        monkeypatch.setattr(window_stats, "numpy_sum", other)
        assert not window_stats._follows_numpy()
    monkeypatch.setattr(window_stats, "FOLLOWS_NUMPY", False)
    assert fast_mean([1.0, 2.0], [1, 1]) is None  # then every mean is NumPy's
