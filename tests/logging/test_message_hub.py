"""MessageHub: named instances, scalar/info updates, resumable state in plain data."""

from __future__ import annotations

import io
import itertools
import logging
import uuid

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.logging import HistoryBuffer, MessageHub, message_hub


def fresh_name() -> str:
    return f"hub-{uuid.uuid4().hex}"


def test_get_instance_returns_the_same_hub_and_current_is_the_latest_created():
    first = MessageHub.get_instance(fresh_name())
    second = MessageHub.get_instance(fresh_name())
    assert MessageHub.get_instance(first.instance_name) is first
    assert MessageHub.get_current_instance() is second
    direct = MessageHub("not-registered")
    assert MessageHub.get_current_instance() is not direct


def test_scalars_of_every_accepted_type_land_in_one_history():
    hub = MessageHub(fresh_name())
    hub.update_scalar("train/loss", 1)
    hub.update_scalar("train/loss", np.float64(2.0))
    hub.update_scalar("train/loss", np.array([3.0]))
    hub.update_scalar("train/loss", torch.tensor(4.0, requires_grad=True) * 1, count=2)
    buf = hub.get_scalar("train/loss")
    assert buf.data[0].tolist() == [1.0, 2.0, 3.0, 4.0]
    assert buf.data[1].tolist() == [1, 1, 1, 2]
    assert buf.mean() == 10.0 / 5
    assert list(hub.log_scalars) == ["train/loss"]


def test_update_scalars_accepts_value_count_dicts():
    hub = MessageHub(fresh_name())
    hub.update_scalars({"a": 1.0, "b": {"value": torch.tensor(6.0), "count": 3}})
    assert hub.get_scalar("a").current == 1.0
    assert hub.get_scalar("b").mean() == 2.0
    with pytest.raises(KeyError, match="'value'"):
        hub.update_scalars({"c": {"count": 1}})
    with pytest.raises(TypeError, match="dict"):
        hub.update_scalars([("a", 1)])  # type: ignore[arg-type]


def test_resumed_flag_cannot_change_and_count_must_be_int():
    hub = MessageHub(fresh_name())
    hub.update_scalar("x", 1.0, resumed=False)
    with pytest.raises(ValueError, match=r"resumed=False.*resumed=True"):
        hub.update_scalar("x", 2.0)
    with pytest.raises(TypeError, match="count"):
        hub.update_scalar("y", 1.0, count=1.5)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match=r"'missing'.*logged: \['x'\]"):
        hub.get_scalar("missing")


def test_runtime_info_update_get_pop():
    hub = MessageHub(fresh_name())
    hub.update_info("epoch", 3)
    hub.update_info_dict({"iter": 7, "eta": 1.5})
    assert hub.get_info("epoch") == 3 and hub.get_info("nope", "d") == "d"
    assert hub.pop_info("eta") == 1.5 and "eta" not in hub.runtime_info
    assert hub.pop_info("eta", None) is None
    assert dict(hub.runtime_info) == {"epoch": 3, "iter": 7}


@settings(max_examples=25, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["train/loss", "train/lr", "val/acc", "time"]),
        st.tuples(st.lists(st.floats(-1e3, 1e3), min_size=1, max_size=8), st.booleans()),
        min_size=1,
    )
)
def test_state_dict_round_trips_through_weights_only_load(logged):
    hub = MessageHub(fresh_name())
    for key, (values, resumed) in logged.items():
        for value in values:
            hub.update_scalar(key, torch.tensor(value, dtype=torch.float64), resumed=resumed)
    hub.update_info("meta", {"epoch": 2, "names": ["a"]})
    hub.update_info("secret", "x", resumed=False)
    blob = io.BytesIO()
    torch.save(hub.state_dict(), blob)
    blob.seek(0)
    state = torch.load(blob, weights_only=True)
    restored = MessageHub(fresh_name())
    restored.load_state_dict(state)
    saved = {k for k, (_, resumed) in logged.items() if resumed}
    assert set(restored.log_scalars) == saved
    for key in saved:
        assert restored.get_scalar(key).data[0].tolist() == logged[key][0]
    assert dict(restored.runtime_info) == {"meta": {"epoch": 2, "names": ["a"]}}


def test_state_dict_copies_info_deeply():
    hub = MessageHub(fresh_name())
    meta = {"classes": ["a"]}
    hub.update_info("dataset_meta", meta)
    state = hub.state_dict()
    meta["classes"].append("b")
    assert state["runtime_info"]["dataset_meta"] == {"classes": ["a"]}


class _ForeignBuffer:
    """Stands for a buffer object from another library: it exposes `.data` arrays."""

    max_length = 100

    @property
    def data(self):
        return np.array([1.0, 3.0]), np.array([1, 1])


def test_loads_buffer_objects_and_skips_what_is_not_a_history(caplog):
    ours = HistoryBuffer([5.0], [1])
    state = {
        "log_scalars": {"a": _ForeignBuffer(), "b": ours, "c": "not a buffer"},
        "runtime_info": {"epoch": 4},
        "resumed_keys": {"a": True, "b": True, "c": True, "epoch": True, "ghost": True},
    }
    hub = MessageHub(fresh_name())
    hub.load_state_dict(state)
    assert hub.get_scalar("a").mean() == 2.0
    assert hub.get_scalar("b").current == 5.0
    assert hub.get_scalar("b") is not ours
    assert "c" not in hub.log_scalars
    assert hub.get_info("epoch") == 4
    assert "ghost" not in hub.state_dict()["resumed_keys"]
    with pytest.raises(KeyError, match="resumed_keys"):
        hub.load_state_dict({"log_scalars": {}, "runtime_info": {}})


@settings(max_examples=30)
@given(st.lists(st.tuples(st.sampled_from(["train", "val", "test"]), st.sampled_from(["acc", "loss"])), min_size=1, max_size=12))
def test_a_bare_name_reads_the_most_recently_updated_mode(updates):
    hub = MessageHub(fresh_name())
    for step, (mode, name) in enumerate(updates):
        hub.update_scalar(f"{mode}/{name}", float(step))
    for name in ("acc", "loss"):
        latest = [f"{mode}/{n}" for mode, n in updates if n == name]
        if latest:
            assert hub.get_scalar(name) is hub.get_scalar(latest[-1])
        else:
            with pytest.raises(KeyError, match=f"'{name}' is not a logged scalar"):
                hub.get_scalar(name)


def test_bare_name_resolution_is_announced_once_and_exact_keys_win(monkeypatch):
    said: list[tuple[str, int]] = []
    monkeypatch.setattr(message_hub, "print_log", lambda msg, logger, level: said.append((msg, level)))
    hub = MessageHub(fresh_name())
    hub.update_scalar("val/acc", 0.5)
    hub.update_scalar("test/acc", 0.7)
    assert hub.get_scalar("acc").current == 0.7
    hub.update_scalar("val/acc", 0.9)
    assert hub.get_scalar("acc").current == 0.9
    assert said == [(
        f"message hub {hub.instance_name!r}: scalar 'acc' is read from 'test/acc' "
        "(the most recently updated of ['val/acc', 'test/acc'])",
        logging.INFO,
    )]
    hub.update_scalar("acc", 1.0)  # a key of that very name is read as it is
    assert hub.get_scalar("acc").current == 1.0
    hub.update_scalar("custom/x", 1.0)  # only train/val/test stand behind a bare name ...
    with pytest.raises(KeyError, match="'x' is not a logged scalar"):
        hub.get_scalar("x")
    with pytest.raises(KeyError, match="'other/acc'"):  # ... and a key with a '/' is never resolved
        hub.get_scalar("other/acc")


def test_bare_names_resolve_after_loading_a_state():
    source = MessageHub(fresh_name())
    source.update_scalar("val/val_acc", 0.96)
    hub = MessageHub(fresh_name())
    hub.load_state_dict(source.state_dict())
    assert hub.get_scalar("val_acc").current == 0.96


def test_load_from_another_hub_copies_it():
    source = MessageHub(fresh_name())
    source.update_scalar("x", 2.0)
    target = MessageHub(fresh_name())
    target.load_state_dict(source)
    source.update_scalar("x", 4.0)
    assert target.get_scalar("x").data[0].tolist() == [2.0]


def test_constructor_validates_its_dicts():
    with pytest.raises(TypeError, match="HistoryBuffer"):
        MessageHub("h", log_scalars={"a": [1.0]})  # type: ignore[dict-item]
    with pytest.raises(KeyError, match="'z'"):
        MessageHub("h", resumed_keys={"z": True})
    with pytest.raises(TypeError, match="runtime_info"):
        MessageHub("h", runtime_info=[1])  # type: ignore[arg-type]


def test_update_scalar_reads_no_tensor_value_until_a_statistic_is_asked(monkeypatch):
    # Its cost is measured in benchmarks/; what keeps it cheap (and sync-free on a GPU) is that an
    # update never reads the tensor's value on the host.
    hub = MessageHub(fresh_name())
    loss = torch.tensor(0.5)
    reads = []
    for name in ("item", "tolist", "__float__", "numpy", "cpu"):
        original = getattr(torch.Tensor, name)
        monkeypatch.setattr(torch.Tensor, name, lambda self, *a, _o=original, _n=name, **k: (reads.append(_n), _o(self, *a, **k))[1])
    for _ in itertools.repeat(None, 1_000):
        hub.update_scalar("train/loss", loss)
    assert reads == []
    assert hub.get_scalar("train/loss").mean(10) == 0.5
    assert reads
