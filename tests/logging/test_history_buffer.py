"""HistoryBuffer: windowed statistics against NumPy, lazy tensors, both `current` spellings."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.logging import CallableFloat, CallableInt, HistoryBuffer

finite = st.floats(-1e6, 1e6, allow_nan=False)
records = st.lists(st.tuples(finite, st.integers(1, 5)), min_size=1, max_size=40)


@settings(max_examples=40, deadline=None)
@given(records, st.one_of(st.none(), st.integers(1, 50)))
def test_statistics_match_numpy_over_the_window(items, window):
    buf = HistoryBuffer()
    for value, count in items:
        buf.update(value, count)
    values = np.array([v for v, _ in items])
    counts = np.array([c for _, c in items])
    size = len(items) if window is None else min(window, len(items))
    assert buf.mean(window) == values[-size:].sum() / counts[-size:].sum()
    assert buf.max(window) == values[-size:].max()
    assert buf.min(window) == values[-size:].min()
    assert buf.current == values[-1]
    logs, cnts = buf.data
    np.testing.assert_array_equal(logs, values)
    np.testing.assert_array_equal(cnts, counts)


@settings(max_examples=30, deadline=None)
@given(st.lists(finite, min_size=1, max_size=30), st.integers(1, 10))
def test_max_length_keeps_only_the_latest_records(values, max_length):
    buf = HistoryBuffer(max_length=max_length)
    for value in values:
        buf.update(value)
    kept = values[-max_length:]
    assert len(buf) == len(kept)
    np.testing.assert_array_equal(buf.data[0], np.array(kept))
    assert buf.mean() == np.array(kept).sum() / len(kept)


def test_current_works_as_attribute_and_as_call():
    buf = HistoryBuffer()
    buf.update(0.97)
    assert buf.current > 0.95
    assert buf.current() > 0.95
    assert isinstance(buf.current, CallableFloat)
    assert buf.current()() == 0.97
    assert buf.statistics("current") == 0.97


def test_current_is_int_for_int_histories_and_float_once_a_float_was_logged():
    buf = HistoryBuffer()
    buf.update(1)
    assert isinstance(buf.current, CallableInt)
    assert f"{buf.current}" == "1"
    buf.update(2.5)
    buf.update(3)
    assert isinstance(buf.current, CallableFloat)
    assert repr(buf.current) == "3.0"


def test_callable_numbers_pickle_as_plain_numbers():
    for value in (CallableFloat(1.25), CallableInt(7)):
        loaded = pickle.loads(pickle.dumps(value))
        assert type(loaded) in (float, int)
        assert loaded == value


def test_tensors_are_read_lazily_with_one_transfer(monkeypatch):
    calls = {"item": 0, "tolist": 0}
    item, tolist = torch.Tensor.item, torch.Tensor.tolist

    def counting_item(self):
        calls["item"] += 1
        return item(self)

    def counting_tolist(self):
        calls["tolist"] += 1
        return tolist(self)

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    monkeypatch.setattr(torch.Tensor, "tolist", counting_tolist)
    buf = HistoryBuffer()
    weights = torch.randn(3, requires_grad=True)
    losses = [(weights * i).sum() for i in range(5)]
    for loss in losses:
        buf.update(loss)
    assert calls == {"item": 0, "tolist": 0}
    expected = [item(loss) for loss in losses]
    assert buf.mean(5) == pytest.approx(sum(expected) / 5, rel=1e-12)
    assert calls["tolist"] == 1
    np.testing.assert_array_equal(buf.data[0], np.array(expected))
    assert calls["tolist"] == 1  # already converted: no second transfer


def test_mixed_dtypes_and_numpy_inputs_convert_to_python_numbers():
    buf = HistoryBuffer()
    buf.update(torch.tensor([3], dtype=torch.int64))
    buf.update(np.float32(0.5))
    buf.update(np.array([[2.0]]))
    buf.update(torch.tensor(1.5, dtype=torch.float64))
    assert buf.data[0].tolist() == [3, 0.5, 2.0, 1.5]
    assert buf.max() == 3


@pytest.mark.parametrize(
    ("value", "error"),
    [("1", TypeError), (None, TypeError), (torch.ones(2), ValueError), (np.ones(3), ValueError)],
)
def test_bad_values_are_rejected_with_the_value_named(value, error):
    with pytest.raises(error, match=r"one element|int, float"):
        HistoryBuffer().update(value)


def test_empty_buffer_and_bad_windows_raise():
    buf = HistoryBuffer()
    with pytest.raises(ValueError, match="empty"):
        buf.current  # noqa: B018
    with pytest.raises(ValueError, match="empty"):
        buf.mean()
    buf.update(1.0)
    for window in (0, -1, 1.5):
        with pytest.raises(ValueError, match="window_size"):
            buf.mean(window)
    with pytest.raises(ValueError, match="equal lengths"):
        HistoryBuffer([1, 2], [1])


def test_registered_statistics_are_callable_by_name():
    def last_two_sum(buffer: HistoryBuffer) -> float:
        return float(buffer._log_history[-2:].sum())

    HistoryBuffer.register_statistics(last_two_sum)
    try:
        buf = HistoryBuffer([1.0, 2.0, 4.0], [1, 1, 1])
        assert buf.statistics("last_two_sum") == 6.0
        assert buf.statistics("mean", 2) == 3.0
        with pytest.raises(KeyError, match="already registered"):
            HistoryBuffer.register_statistics(last_two_sum)
    finally:
        del HistoryBuffer._statistics_methods["last_two_sum"]
    with pytest.raises(KeyError, match="unknown statistics method 'nope'"):
        buf.statistics("nope")


def test_state_survives_weights_only_load_and_pickling():
    buf = HistoryBuffer(max_length=7)
    buf.update(torch.tensor(0.25), 2)
    buf.update(3)
    data = io.BytesIO()
    torch.save(buf.state_dict(), data)
    data.seek(0)
    state = torch.load(data, weights_only=True)
    assert state == {"log_history": [0.25, 3], "count_history": [2, 1], "max_length": 7}
    again = HistoryBuffer.from_state_dict(state)
    assert again.mean() == buf.mean() == 3.25 / 3
    clone = pickle.loads(pickle.dumps(buf))
    assert clone.data[0].tolist() == [0.25, 3] and clone.max_length == 7


def test_unpickles_the_numpy_layout_of_saved_mmengine_buffers():
    buf = HistoryBuffer.__new__(HistoryBuffer)
    buf.__setstate__(
        {
            "max_length": 5,
            "_log_history": np.array([1.0, 2.0, 6.0]),
            "_count_history": np.array([1, 1, 2]),
            "statistics_methods": {},
        }
    )
    assert buf.mean() == 9.0 / 4
    assert buf.current() == 6.0
    assert buf.max_length == 5
