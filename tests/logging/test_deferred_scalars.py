"""Tensors logged every step stay tensors until read, then are read once per key and read."""

from __future__ import annotations

import sys
import uuid
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.hooks import Hook
from fengine.logging import HistoryBuffer, MessageHub
from fengine.runner.log_processor import LogProcessor

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runner"))
from runner_toys import loader, toy_kwargs

READS = ("item", "__float__", "__bool__", "__int__", "tolist", "numpy", "cpu")
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.bool)

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=32),
    st.integers(-(2**40), 2**40),
    st.booleans(),
)
shapes = st.sampled_from([(), (1,), (1, 1)])
#: An update (a value, the dtype and shape of its tensor, or None for a plain Python number) or a
#: read of a statistic over a window.
ops = st.one_of(
    st.tuples(st.just("update"), values, st.sampled_from((None, *DTYPES)), shapes),
    st.tuples(st.just("read"), st.sampled_from(["mean", "max", "min", "current", "data"]), st.integers(1, 12)),
)


def _exact(value: Any) -> Any:
    """A value with its type and every bit (NaN, -0.0) visible to ``==``."""
    if hasattr(value, "tolist"):
        return [_exact(v) for v in value.tolist()]
    if isinstance(value, list):
        return [_exact(v) for v in value]
    return (type(value).__name__, repr(value))


def _read(buffer: HistoryBuffer, statistic: str, window: int) -> Any:
    if statistic == "current":
        return float(buffer.current) if isinstance(buffer.current, float) else int(buffer.current)
    if statistic == "data":
        return buffer.data
    return getattr(buffer, statistic)(window)


@given(st.lists(ops, max_size=40))
@settings(max_examples=40, deadline=None)
def test_deferred_tensors_give_the_history_eager_numbers_give(script: list[Any]) -> None:
    deferred, eager = HistoryBuffer(max_length=16), HistoryBuffer(max_length=16)
    for op in script:
        if op[0] == "update":
            _, value, dtype, shape = op
            if dtype is None:
                deferred.update(value)
                eager.update(value)
                continue
            tensor = torch.tensor(value).to(dtype).reshape(shape)
            deferred.update(tensor)
            eager.update(tensor.item())
        elif len(eager):
            _, statistic, window = op
            assert _exact(_read(deferred, statistic, window)) == _exact(_read(eager, statistic, window))
    assert _exact(deferred.state_dict()["log_history"]) == _exact(eager.state_dict()["log_history"])


@given(st.lists(st.floats(-1e6, 1e6, width=32), min_size=1, max_size=30), st.integers(1, 12))
@settings(max_examples=30, deadline=None)
def test_log_lines_from_deferred_losses_equal_the_eager_ones(losses: list[float], window: int) -> None:
    lines = []
    for deferred in (True, False):
        hub = MessageHub(f"hub-{uuid.uuid4().hex}")
        for loss in losses:
            tensor = torch.tensor(loss, dtype=torch.float32)
            hub.update_scalar("train/lr", 0.1)
            hub.update_scalar("train/loss", tensor if deferred else tensor.item())
            hub.update_scalar("train/acc", tensor.double() if deferred else tensor.double().item())
        runner = SimpleNamespace(
            message_hub=hub, epoch=0, iter=len(losses) - 1, max_epochs=1, max_iters=len(losses),
            _train_loop=object(), train_dataloader=range(len(losses)), model=None,
        )
        lines.append(LogProcessor(window_size=window).get_log_after_iter(runner, len(losses) - 1, "train"))
    assert lines[0][1] == lines[1][1]
    assert _exact(list(lines[0][0].values())) == _exact(list(lines[1][0].values()))


class _Reads(Hook):
    """Counts host reads of tensor values from the first train iteration to the end of the epoch."""

    priority = "HIGHEST"

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reads: Counter[str] = Counter()
        self.armed = False
        for name in READS:
            original = getattr(torch.Tensor, name)

            def counted(tensor: torch.Tensor, *args: Any, _original: Any = original, _name: str = name, **kwargs: Any) -> Any:
                if self.armed:
                    self.reads[_name] += 1
                return _original(tensor, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, counted)

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        self.armed = True  # after the DataLoader drew its seed (a CPU read a raw loop makes too)

    def after_train_epoch(self, runner: Any) -> None:
        self.armed = False


@pytest.mark.parametrize(
    ("check_finite", "expected"),
    [
        # Four lines, each reading the one tensor key (the loss) once and the losses' finiteness
        # once (time, data_time and lr are Python floats); nothing between the lines.
        (True, {"tolist": 4, "__bool__": 4}),
        (False, {"tolist": 4}),
        ("eager", {"item": 200, "tolist": 4}),  # the loss of every step, at the step
    ],
)
def test_a_run_reads_each_logged_tensor_once_per_log_line(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, check_finite: Any, expected: dict[str, int]
) -> None:
    from fengine import Runner

    counter = _Reads(monkeypatch)
    kwargs = toy_kwargs(
        tmp_path,
        train_dataloader=loader(size=200, batch_size=1),
        train_cfg={"by_epoch": True, "max_epochs": 1, "check_finite": check_finite},
        default_hooks={"logger": {"type": "LoggerHook", "interval": 50}, "checkpoint": None},
        val_dataloader=None,
        val_cfg=None,
        val_evaluator=None,
        custom_hooks=[counter],
    )
    runner = Runner(**kwargs)
    runner.train()
    logged = sorted(runner.message_hub.log_scalars)
    assert logged == ["train/data_time", "train/loss", "train/lr", "train/time"]
    assert dict(counter.reads) == expected
