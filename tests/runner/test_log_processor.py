"""LogProcessor: exact MMEngine log lines and scalar tags from a hand-filled message hub."""

from __future__ import annotations

import json
import re
import uuid
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.logging import MessageHub
from fengine.registry import LOG_PROCESSORS
from fengine.runner.log_processor import LogProcessor


class Loader:
    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size


def make_runner(
    hub, *, epoch=0, it=0, max_epochs=2, max_iters=8, train=4, val=4, test=4, loop=True
):
    return SimpleNamespace(
        message_hub=hub,
        epoch=epoch,
        iter=it,
        max_epochs=max_epochs,
        max_iters=max_iters,
        _train_loop=object() if loop else None,
        train_dataloader=Loader(train),
        val_dataloader=Loader(val),
        test_dataloader=Loader(test),
        model=None,
    )


def timed_hub(iters: int, grad_norms, losses) -> MessageHub:
    """What the default hooks log with a clock ticking 1 s per read: data_time 1, time 2."""
    hub = MessageHub(f"hub-{uuid.uuid4().hex}")
    for i in range(iters):
        hub.update_scalar("train/lr", 0.1)
        hub.update_scalar("train/data_time", 1.0)
        hub.update_scalar("train/grad_norm", grad_norms[i])
        hub.update_scalar("train/loss", losses[i])
        hub.update_scalar("train/time", 2.0)
    return hub


def test_epoch_train_line_and_tag_of_the_reference_run():
    hub = timed_hub(3, [10.0, 14.1989, 18.3978], [-1.0, -5.3011, -9.6022])
    hub.update_info("eta", 2.0 * (8 - 2 - 1))  # IterTimerHook after the 3rd of 8 iterations
    runner = make_runner(hub, epoch=0, it=2)
    tag, line = LogProcessor().get_log_after_iter(runner, 2, "train")
    assert line == (
        "Epoch(train) [1][3/4]  lr: 1.0000e-01  eta: 0:00:10  time: 2.0000  "
        "data_time: 1.0000  grad_norm: 14.1989  loss: -5.3011"
    )
    assert list(tag) == ["lr", "data_time", "grad_norm", "loss", "time", "epoch", "iter"]
    assert (tag["epoch"], tag["iter"], tag["lr"], tag["time"]) == (1, 3, 0.1, 2.0)
    assert tag["grad_norm"] == np.mean([10.0, 14.1989, 18.3978])


def test_val_iteration_line_and_epoch_summary():
    hub = timed_hub(4, [1.0] * 4, [1.0] * 4)
    for _ in range(4):
        hub.update_scalar("val/data_time", 1.0)
        hub.update_scalar("val/time", 2.0)
    hub.update_info("eta", 2.0)
    runner = make_runner(hub, epoch=1, it=4)
    processor = LogProcessor()
    _, line = processor.get_log_after_iter(runner, 2, "val")
    assert line == "Epoch(val) [1][3/4]    eta: 0:00:02  time: 2.0000  data_time: 1.0000  "
    hub.update_scalar("val/acc", 1)
    tag, line = processor.get_log_after_epoch(runner, 4, "val")
    assert line == "Epoch(val) [1][4/4]    acc: 1  data_time: 1.0000  time: 2.0000"
    record = json.dumps({**tag, "step": 1})
    assert record == '{"acc": 1, "data_time": 1.0, "time": 2.0, "step": 1}'


def test_iteration_mode_lines_of_a24():
    hub = timed_hub(2, [1.0, 1.0], [0.5, 0.25])
    hub.update_info("eta", 2.0 * 3)
    runner = make_runner(hub, it=1, max_epochs=1, max_iters=5)
    processor = LogProcessor(by_epoch=False)
    tag, line = processor.get_log_after_iter(runner, 1, "train")
    assert line.startswith(
        "Iter(train) [2/5]  lr: 1.0000e-01  eta: 0:00:06  time: 2.0000  data_time: 1.0000  "
    )
    assert line.endswith("loss: 0.3750")
    assert "epoch" not in tag and tag["iter"] == 2
    for _ in range(4):
        hub.update_scalar("val/data_time", 1.0)
        hub.update_scalar("val/time", 2.0)
    hub.update_scalar("val/acc", 1)
    tag, line = processor.get_log_after_epoch(runner, 4, "val")
    assert line == "Iter(val) [4/4]    acc: 1  data_time: 1.0000  time: 2.0000"


def test_test_mode_and_runner_without_train_loop():
    hub = MessageHub(f"hub-{uuid.uuid4().hex}")
    for _ in range(3):
        hub.update_scalar("test/data_time", 1.0)
        hub.update_scalar("test/time", 2.0)
    hub.update_scalar("test/acc", 0.75)
    hub.update_info("test/confusion", [[1, 2], [3, 4]])
    runner = make_runner(hub, test=12, loop=False)
    processor = LogProcessor()
    tag, line = processor.get_log_after_iter(runner, 2, "test")
    assert line == "Epoch(test) [ 3/12]    "
    assert tag["iter"] == 0 and "epoch" not in tag
    tag, line = processor.get_log_after_epoch(runner, 12, "test", with_non_scalar=True)
    assert line == (
        "Epoch(test) [12/12]    acc: 0.7500  confusion: [[1, 2], [3, 4]]  "
        "data_time: 1.0000  time: 2.0000"
    )
    assert list(tag) == ["acc", "confusion", "data_time", "time"]
    val_hub = MessageHub(f"hub-{uuid.uuid4().hex}")
    val_hub.update_scalar("val/acc", 1)
    _, line = processor.get_log_after_epoch(make_runner(val_hub, loop=False), 4, "val")
    assert line.startswith("Epoch(val) [0][4/4]    acc: 1")


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 2000),
    st.integers(1, 500),
    st.data(),
)
def test_epoch_headers_are_right_aligned(max_epochs, loader_len, data):
    epoch = data.draw(st.integers(0, max_epochs - 1))
    batch_idx = data.draw(st.integers(0, loader_len - 1))
    hub = MessageHub(f"hub-{uuid.uuid4().hex}")
    hub.update_scalar("train/loss", 1.0)
    runner = make_runner(hub, epoch=epoch, max_epochs=max_epochs, train=loader_len)
    _, line = LogProcessor().get_log_after_iter(runner, batch_idx, "train")
    epoch_field = f"[{epoch + 1}]".rjust(len(str(max_epochs)) + 3)
    index_field = str(batch_idx + 1).rjust(len(str(loader_len)))
    assert line == f"Epoch(train){epoch_field}[{index_field}/{loader_len}]    loss: 1.0000"


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-100, 100), min_size=1, max_size=30), st.integers(1, 12))
def test_mean_pattern_keys_are_window_means_others_latest(values, window):
    hub = MessageHub(f"hub-{uuid.uuid4().hex}")
    for value in values:
        hub.update_scalar("train/loss_cls", value)
        hub.update_scalar("train/acc", value)
    tag, _ = LogProcessor(window_size=window).get_log_after_iter(make_runner(hub), 0, "train")
    assert tag["loss_cls"] == np.array(values[-window:]).sum() / len(values[-window:])
    assert tag["acc"] == values[-1]


def test_custom_cfg_adds_and_replaces_statistics():
    hub = MessageHub(f"hub-{uuid.uuid4().hex}")
    for value in (4.0, 2.0, 6.0, 8.0):
        hub.update_scalar("train/loss", value)
    runner = make_runner(hub, it=3)
    processor = LogProcessor(
        window_size=2,
        custom_cfg=[
            dict(data_src="loss", method_name="mean", window_size="global", log_name="loss_global"),
            dict(data_src="loss", method_name="max", window_size=3),
        ],
    )
    tag, line = processor.get_log_after_iter(runner, 3, "train")
    assert tag["loss"] == 8.0 and tag["loss_global"] == 5.0
    assert line.endswith("loss: 8.0000  loss_global: 5.0000")
    hier = LogProcessor(log_with_hierarchy=True, num_digits=2)
    tag, line = hier.get_log_after_iter(runner, 3, "train")
    assert "train/loss" in tag and line.endswith("loss: 5.00")


def test_bad_configs_and_modes_are_rejected():
    with pytest.raises(ValueError, match="'loss' twice"):
        LogProcessor(custom_cfg=[dict(data_src="loss"), dict(data_src="loss", method_name="max")])
    with pytest.raises(ValueError, match="data_src"):
        LogProcessor(custom_cfg=[dict(method_name="max")])
    with pytest.raises(ValueError, match="by_epoch=True"):
        LogProcessor(by_epoch=False, custom_cfg=[dict(data_src="loss", window_size="epoch")])
    processor = LogProcessor()
    runner = make_runner(MessageHub(f"hub-{uuid.uuid4().hex}"))
    with pytest.raises(ValueError, match="mode"):
        processor.get_log_after_iter(runner, 0, "predict")
    with pytest.raises(ValueError, match="mode"):
        processor.get_log_after_epoch(runner, 0, "train")
    bad_window = LogProcessor(custom_cfg=[dict(data_src="loss", window_size="week")])
    with pytest.raises(TypeError, match="week"):
        bad_window.get_log_after_iter(runner, 0, "train")


def test_registered_for_configs():
    assert LOG_PROCESSORS.build(dict(type="LogProcessor", by_epoch=False)).by_epoch is False


KEYS = [
    "train/loss", "train/loss_cls", "train/acc", "train/lr", "train/time", "train/data_time",
    "train/grad_norm", "trainloss", "train/trainloss", "val/acc", "val/loss", "test/time",
]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.tuples(st.sampled_from(KEYS), st.floats(-10, 10)), max_size=12),
            st.sampled_from(["train", "val", "test"]),
            st.sampled_from([None, r".*(loss|time).*", "acc", ".*"]),
        ),
        min_size=1,
        max_size=6,
    ),
    st.booleans(),
)
def test_a_reused_processor_writes_what_a_fresh_one_writes(rounds, hierarchy):
    """Keys are matched once per processor; new keys and a replaced pattern are still seen."""
    hub = MessageHub(f"hub-{uuid.uuid4().hex}")
    hub.update_scalar("train/loss", 1.0)
    hub.update_info("eta", 5.0)
    runner = make_runner(hub, it=3)
    reused = LogProcessor(log_with_hierarchy=hierarchy)
    for updates, mode, pattern in rounds:
        for key, value in updates:
            hub.update_scalar(key, value)
        fresh = LogProcessor(log_with_hierarchy=hierarchy)
        if pattern is not None:
            reused.mean_pattern = re.compile(pattern)
        fresh.mean_pattern = reused.mean_pattern
        assert reused.get_log_after_iter(runner, 2, mode) == fresh.get_log_after_iter(
            runner, 2, mode
        )


POOLS = ("all", "large_pool", "small_pool")
FIELDS = ("current", "peak", "allocated", "freed")
STATS = ("active", "active_bytes", "allocated_bytes", "allocation", "inactive_split",
         "inactive_split_bytes", "requested_bytes", "reserved_bytes", "segment")


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**40), st.booleans(), st.integers(0, 10**9))
def test_memory_item_is_torchs_max_memory_allocated(peak, initialised, other):
    """The peak read from the nested statistics is what torch.cuda.max_memory_allocated says."""
    nested = (
        {
            **{s: {p: dict.fromkeys(FIELDS, other) for p in POOLS} for s in STATS},
            "num_ooms": 0,
            "max_split_size": -1,
        }
        if initialised
        else {}
    )
    if initialised:
        nested["allocated_bytes"]["all"]["peak"] = peak
    resets: list[object] = []
    with pytest.MonkeyPatch.context() as patch:
        for module in (torch.cuda, torch.cuda.memory):  # torch's own reader uses the latter
            patch.setattr(module, "memory_stats_as_nested_dict", lambda device=None: nested)
        expected = torch.cuda.max_memory_allocated(None) // (1024 * 1024)
        patch.setattr(torch.cuda, "is_available", lambda: True)
        patch.setattr(torch.cuda, "reset_peak_memory_stats", resets.append)
        hub = MessageHub(f"hub-{uuid.uuid4().hex}")
        hub.update_scalar("train/loss", 1.0)
        tag, line = LogProcessor().get_log_after_iter(make_runner(hub), 0, "train")
    assert tag["memory"] == expected and f"  memory: {expected}  " in line
    assert resets == [None]


@given(st.lists(st.floats(-100, 100, allow_nan=False), min_size=11, max_size=20))
@settings(max_examples=20)
def test_epoch_window_in_an_iteration_run_reads_everything_since_the_start(losses):
    # An iteration loop never ends an epoch: MMEngine's 'epoch' window then spans iterations
    # 0..iter, the whole run so far (its `[1][11/4]` header counts past the loader's length).
    hub = timed_hub(len(losses), [1.0] * len(losses), losses)
    hub.update_info("eta", 0.0)
    n = len(losses)
    runner = make_runner(hub, epoch=0, it=n - 1, max_iters=n + 1)
    processor = LogProcessor(custom_cfg=[dict(data_src="loss", window_size="epoch", log_name="loss_ep", method_name="mean")])
    tag, line = processor.get_log_after_iter(runner, n - 1, "train")
    assert line.startswith(f"Epoch(train) [1][{n}/4]")
    assert tag["loss_ep"] == np.mean(losses) and tag["loss"] == np.mean(losses[-10:])


def test_custom_cfg_errors_are_assertion_errors_too():
    for custom_cfg in ([dict(data_src="loss", window_size="epoch")], [dict(data_src="loss"), dict(data_src="loss")], "loss"):
        with pytest.raises(AssertionError, match="LogProcessor"):
            LogProcessor(by_epoch=False, custom_cfg=custom_cfg)
