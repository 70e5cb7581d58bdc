"""MMEngine-compatible details of the logging API: error kinds, flat histories, file handlers."""

from __future__ import annotations

import logging
import logging.handlers
import os

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.logging import HistoryBuffer, MessageHub, MMLogger
from fengine.logging import logger as logger_module
from fengine.logging.scalars import ScalarError, ScalarKeyError


@settings(max_examples=20, deadline=None)
@given(rows=st.lists(st.lists(st.integers(-5, 5), min_size=2, max_size=4), min_size=1, max_size=4))
def test_nested_initial_history_is_read_flat(rows: list[list[int]]) -> None:
    flat = [v for row in rows for v in row]
    for given_rows in (rows, np.array([flat]), torch.tensor([flat])):
        buffer = HistoryBuffer(given_rows, [[1] * len(flat)] if not isinstance(given_rows, list) else [[1] * len(r) for r in rows])
        values, counts = buffer.data
        assert values.tolist() == flat and counts.tolist() == [1] * len(flat)


def test_history_errors_are_mmengine_kinds():
    with pytest.raises(ScalarError, match="equal lengths") as info:
        HistoryBuffer([1, 2], [1])
    assert isinstance(info.value, (ValueError, AssertionError))
    buffer = HistoryBuffer()
    with pytest.raises(TypeError, match="exactly one element"):
        buffer.update(np.array([1, 2]))
    buffer.update(2.0, torch.tensor(4))
    assert buffer.mean() == 0.5


def test_message_hub_errors_are_assertion_errors_too():
    with pytest.raises(AssertionError, match="must be a HistoryBuffer"):
        MessageHub("bad_scalars", log_scalars={"a": 1})  # type: ignore[dict-item]
    with pytest.raises(ScalarKeyError, match="resumed_keys"):
        MessageHub("bad_keys", runtime_info={"iter": 1}, resumed_keys={"iters": False})
    hub = MessageHub("update_checks")
    with pytest.raises(AssertionError):
        hub.update_scalars({"x": []})
    with pytest.raises(KeyError, match="'value'"):
        hub.update_scalars({"x": {"count": 1}})


@pytest.mark.parametrize(
    ("cfg", "kind"),
    [
        (None, logging.FileHandler),
        ({"type": "RotatingFileHandler", "maxBytes": 1024}, logging.handlers.RotatingFileHandler),
        ({"type": "TimedRotatingFileHandler", "when": "MIDNIGHT"}, logging.handlers.TimedRotatingFileHandler),
        ({"type": "WatchedFileHandler"}, logging.handlers.WatchedFileHandler),
    ],
)
def test_file_handler_cfg_builds_the_named_handler(tmp_path, cfg, kind):  # type: ignore[no-untyped-def]
    log_file = tmp_path / "run.log"
    logger = MMLogger(f"fh_{kind.__name__}", log_file=str(log_file), file_handler_cfg=cfg)
    try:
        assert type(logger.handlers[-1]) is kind
        logger.info("hello")
        logger.handlers[-1].flush()
        assert "hello" in log_file.read_text()
    finally:
        for handler in logger.handlers[1:]:
            handler.close()
    assert cfg is None or "type" in cfg  # the caller's dict is left as it was


def test_unknown_file_handler_is_refused_before_a_file_is_opened(tmp_path):
    with pytest.raises(ValueError, match="type='Nope'"):
        MMLogger("fh_bad", log_file=str(tmp_path / "x.log"), file_handler_cfg={"type": "Nope"})
    assert not os.path.exists(tmp_path / "x.log")


@pytest.mark.parametrize(
    ("cuda", "local_rank", "visible", "expected"),
    [(False, None, "0,1,2,3", 0), (False, "1", "0,100,2,3", 1), (True, "2", "0,1,3,5", 3), (True, None, "4,5", 4), (True, "0", "MIG-abc", "MIG-abc")],
)
def test_device_id_maps_local_rank_through_visible_devices(monkeypatch, cuda, local_rank, visible, expected):  # type: ignore[no-untyped-def]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    if local_rank is None:
        monkeypatch.delenv("LOCAL_RANK", raising=False)
    else:
        monkeypatch.setenv("LOCAL_RANK", local_rank)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert logger_module._get_device_id() == expected
