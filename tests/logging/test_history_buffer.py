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


_item, _tolist = torch.Tensor.item, torch.Tensor.tolist


@pytest.fixture
def reads(monkeypatch):
    """How often tensors are read back (``item``/``tolist``), counted from now on."""
    calls = {"item": 0, "tolist": 0}

    def counting_item(self):
        calls["item"] += 1
        return _item(self)

    def counting_tolist(self):
        calls["tolist"] += 1
        return _tolist(self)

    monkeypatch.setattr(torch.Tensor, "item", counting_item)
    monkeypatch.setattr(torch.Tensor, "tolist", counting_tolist)
    return calls


def test_tensors_are_read_lazily_and_only_once(reads):
    calls = reads
    buf = HistoryBuffer()
    weights = torch.randn(3, requires_grad=True)
    losses = [(weights * i).sum() for i in range(5)]
    for loss in losses:
        buf.update(loss)
    assert calls == {"item": 0, "tolist": 0}
    expected = [_item(loss) for loss in losses]
    assert buf.mean(5) == np.array(expected).sum() / 5
    assert calls == {"item": 0, "tolist": 1}  # stacked and read in one transfer
    np.testing.assert_array_equal(buf.data[0], np.array(expected))
    assert calls == {"item": 0, "tolist": 1}  # already converted: not read again


def _on_device(value: torch.Tensor) -> torch.Tensor:
    return value.cuda() if torch.cuda.is_available() else value


def test_device_tensors_are_read_with_one_transfer_per_dtype(reads):
    calls = reads
    buf = HistoryBuffer()
    values = [_on_device(torch.tensor(0.5 * i)) for i in range(4)]
    values += [_on_device(torch.tensor(i)) for i in range(3)]
    values.insert(2, torch.tensor(7.25))
    for value in values:
        buf.update(value)
    expected = [_item(v) for v in values]
    calls.update(item=0, tolist=0)
    assert buf.data[0].tolist() == expected
    # One transfer per device and dtype: the float32 tensors of each device stacked, the ints too
    # (without a GPU every value is on the CPU, so the floats go in one transfer).
    expected_calls = {"item": 1, "tolist": 2} if torch.cuda.is_available() else {"item": 0, "tolist": 2}
    assert calls == expected_calls


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


# A logged value as the hooks produce them: floats (timings, rates) and 1-element tensors of
# several dtypes and shapes (losses), NaN and infinities included; `odd` adds integers.
floats_and_tensors = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(-10.0, 10.0),
    st.floats(-10.0, 10.0).map(lambda v: torch.tensor(v)),
    st.floats(-10.0, 10.0).map(lambda v: torch.tensor([v], dtype=torch.float64)),
    st.floats(-1e3, 1e3).map(lambda v: torch.tensor([[v]], dtype=torch.bfloat16)),
)
odd = st.one_of(st.integers(-5, 5), st.integers(-5, 5).map(torch.tensor))


@settings(max_examples=80, deadline=None)
@given(
    st.booleans(),
    st.lists(st.one_of(st.none(), st.integers(1, 150)), min_size=1, max_size=4),
    st.integers(1, 80),
    st.data(),
)
def test_mean_equals_the_numpy_mean_over_random_update_sequences(mixed, windows, max_length, data):
    """Statistics read between updates equal NumPy's over the same converted values, bit for bit.

    Unmixed sequences (floats and float tensors, unit counts) take the short-window path; mixed
    ones (integers, weighted counts) also the NumPy one.
    """
    values_st = st.one_of(floats_and_tensors, odd) if mixed else floats_and_tensors
    counts_st = st.sampled_from([1, 2, 3]) if mixed else st.just(1)
    items = data.draw(st.lists(st.tuples(values_st, counts_st), min_size=1, max_size=60))
    buf = HistoryBuffer(max_length=max_length)
    history: list[tuple[object, int]] = []
    reads = iter(windows)
    for step, (value, count) in enumerate(items):
        buf.update(value, count)
        number = value.item() if isinstance(value, torch.Tensor) else value
        history.append((number, count))
        if step % 7 == 6 or step == len(items) - 1:
            window = next(reads, None)
            kept = history[-max_length:]
            size = len(kept) if window is None else min(window, len(kept))
            values = np.array([v for v, _ in kept[-size:]])
            counts = np.array([c for _, c in kept[-size:]])
            with np.errstate(all="ignore"):
                expected = float(values.sum() / counts.sum())
            mean = buf.mean(window)
            np.testing.assert_array_equal(np.array(mean), np.array(expected))
            assert np.signbit(mean) == np.signbit(expected)
            assert buf.current == kept[-1][0] or np.isnan(kept[-1][0])


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.tuples(st.one_of(finite, st.integers(-100, 100)), st.integers(1, 5)), min_size=1, max_size=120),
    st.integers(1, 30),
    st.data(),
)
def test_a_bounded_history_gives_every_statistic_within_the_bound_bit_for_bit(items, bound, data):
    bounded, unbounded = HistoryBuffer(max_length=bound), HistoryBuffer()
    resize_at = data.draw(st.integers(0, len(items)))
    for i, (value, count) in enumerate(items):
        if i == resize_at:  # a bound set mid-run (as the runner does when training starts)
            bounded.resize(bound)
        bounded.update(value, count)
        unbounded.update(value, count)
        window = data.draw(st.integers(1, bound))
        for name in ("mean", "max", "min"):
            got, want = getattr(bounded, name)(window), getattr(unbounded, name)(window)
            assert got == want and type(got) is type(want)
        assert bounded.current == unbounded.current and type(bounded.current) is type(unbounded.current)
        assert len(bounded._values) < 2 * bound  # what is stored stays bounded


def test_memory_stays_flat_over_many_updates():
    from fengine.logging import MessageHub

    hub = MessageHub.get_instance("history-bound-flat")
    hub.set_history_length(100)
    stored = []
    for i in range(50_000):
        hub.update_scalar("train/loss", float(i))
        hub.update_scalar("train/lr", torch.tensor(0.1))
        if i % 5_000 == 4_999:
            stored.append(sum(len(b._values) for b in hub.log_scalars.values()))
    assert max(stored) < 2 * 2 * 100 and len(set(stored)) <= 2  # flat: bounded and not growing
    assert len(hub.get_scalar("train/loss")) == 100 and hub.get_scalar("train/loss").mean() == np.mean(np.arange(49_900, 50_000.0))
    assert len(hub.state_dict()["log_scalars"]["train/loss"]["log_history"]) == 100
    with pytest.raises(ValueError, match="`max_length` must be a positive int, got 0"):
        hub.set_history_length(0)
    restored = MessageHub.get_instance("history-bound-restored")
    restored.set_history_length(10)
    restored.load_state_dict(hub.state_dict())  # a loaded history takes this hub's bound
    assert len(restored.get_scalar("train/loss")) == 10 and restored.get_scalar("train/loss").max() == 49_999.0
