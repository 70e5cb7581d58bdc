"""Loops: MMEngine's exact event sequences (spec §3.5, A3, A5), validation schedules (A4)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from runner_toys import Recorder, ToyMetric, ToyModel, loader, toy_kwargs

from fengine.hooks import Hook
from fengine.runner.base_loop import NonFiniteLossError
from fengine.runner.runner import Runner


def _train_iters(epoch: int, first_iter: int, batches: int) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = []
    for b in range(batches):
        calls += [("before_train_iter", epoch, first_iter + b, b), ("after_train_iter", epoch, first_iter + b, b)]
    return calls


def _val(epoch: int, iteration: int, batches: int = 4) -> list[tuple[Any, ...]]:
    calls: list[tuple[Any, ...]] = [("before_val", epoch, iteration), ("before_val_epoch", epoch, iteration)]
    for b in range(batches):
        calls += [("before_val_iter", epoch, iteration, b), ("after_val_iter", epoch, iteration, b)]
    return [*calls, ("after_val_epoch", epoch, iteration), ("after_val", epoch, iteration)]


# MMEngine's CheckpointHook defaults to save_best=None; the seed's default is 'auto'.
# fengine's CheckpointHook follows the loop kind unless `by_epoch` is given (MMEngine: by epoch).
MMENGINE_CHECKPOINT = {"checkpoint": {"type": "CheckpointHook", "interval": 1, "by_epoch": True, "save_best": None}}


def test_epoch_loop_call_sequence_is_mmengines(tmp_path: Any) -> None:
    """Spec §3.5: 2 epochs x 4 iterations, validation every epoch, CheckpointHook(interval=1)."""
    recorder = Recorder()
    runner = Runner(**toy_kwargs(tmp_path, custom_hooks=[recorder], default_hooks=MMENGINE_CHECKPOINT))
    runner.train()
    # fmt: off
    expected = [
        ("before_run", 0, 0),
        ("before_train", 0, 0),
        ("before_train_epoch", 0, 0),
        ("before_train_iter", 0, 0, 0), ("after_train_iter", 0, 0, 0),
        ("before_train_iter", 0, 1, 1), ("after_train_iter", 0, 1, 1),
        ("before_train_iter", 0, 2, 2), ("after_train_iter", 0, 2, 2),
        ("before_train_iter", 0, 3, 3), ("after_train_iter", 0, 3, 3),
        ("before_save_checkpoint", 0, 4),
        ("after_train_epoch", 0, 4),
        ("before_val", 1, 4), ("before_val_epoch", 1, 4),
        ("before_val_iter", 1, 4, 0), ("after_val_iter", 1, 4, 0),
        ("before_val_iter", 1, 4, 1), ("after_val_iter", 1, 4, 1),
        ("before_val_iter", 1, 4, 2), ("after_val_iter", 1, 4, 2),
        ("before_val_iter", 1, 4, 3), ("after_val_iter", 1, 4, 3),
        ("after_val_epoch", 1, 4), ("after_val", 1, 4),
        ("before_train_epoch", 1, 4),
        ("before_train_iter", 1, 4, 0), ("after_train_iter", 1, 4, 0),
        ("before_train_iter", 1, 5, 1), ("after_train_iter", 1, 5, 1),
        ("before_train_iter", 1, 6, 2), ("after_train_iter", 1, 6, 2),
        ("before_train_iter", 1, 7, 3), ("after_train_iter", 1, 7, 3),
        ("before_save_checkpoint", 1, 8),
        ("after_train_epoch", 1, 8),
        ("before_val", 2, 8), ("before_val_epoch", 2, 8),
        ("before_val_iter", 2, 8, 0), ("after_val_iter", 2, 8, 0),
        ("before_val_iter", 2, 8, 1), ("after_val_iter", 2, 8, 1),
        ("before_val_iter", 2, 8, 2), ("after_val_iter", 2, 8, 2),
        ("before_val_iter", 2, 8, 3), ("after_val_iter", 2, 8, 3),
        ("after_val_epoch", 2, 8), ("after_val", 2, 8),
        ("after_train", 2, 8),
        ("after_run", 2, 8),
    ]
    # fmt: on
    assert recorder.calls == expected
    assert all(list(outputs) == ["loss"] for outputs in recorder.outputs)
    assert recorder.metrics == [{"acc": 1}, {"acc": 1}]
    assert recorder.checkpoint_keys == [["meta", "state_dict", "message_hub", "optimizer"]] * 2


def test_iteration_loop_call_sequence_is_mmengines(tmp_path: Any) -> None:
    """Spec A5: max_iters=10, val_interval=4: validations at iter 4, 8, 10; one train 'epoch'."""
    recorder = Recorder()
    runner = Runner(
        **toy_kwargs(
            tmp_path,
            train_cfg={"by_epoch": False, "max_iters": 10, "val_interval": 4},
            custom_hooks=[recorder],
            default_hooks=MMENGINE_CHECKPOINT,
        )
    )
    runner.train()
    expected: list[tuple[Any, ...]] = [("before_run", 0, 0), ("before_train", 0, 0), ("before_train_epoch", 0, 0)]
    for i in range(10):
        expected += [("before_train_iter", 0, i, i), ("after_train_iter", 0, i, i)]
        if i + 1 in (4, 8, 10):
            expected += _val(0, i + 1)
    # The default CheckpointHook saves by epoch: once, at the end of the single epoch (A14).
    expected += [("before_save_checkpoint", 0, 10), ("after_train_epoch", 0, 10), ("after_train", 0, 10), ("after_run", 0, 10)]
    assert recorder.calls == expected
    assert (runner.epoch, runner.iter, runner.max_epochs, runner.max_iters) == (0, 10, 1, 10)


def test_val_and_test_sequences(tmp_path: Any) -> None:
    recorder = Recorder()
    kwargs = toy_kwargs(
        tmp_path,
        custom_hooks=[recorder],
        default_hooks=MMENGINE_CHECKPOINT,
        test_dataloader=loader(),
        test_cfg={},
        test_evaluator=ToyMetric(),
    )
    runner = Runner(**kwargs)
    assert runner.val() == {"acc": 1}
    assert recorder.calls == [("before_run", 0, 0), *_val(0, 0), ("after_run", 0, 0)]
    recorder.calls.clear()
    assert runner.test() == {"acc": 1}
    test_calls = [(c[0].replace("val", "test"), *c[1:]) for c in _val(0, 0)]
    assert recorder.calls == [("before_run", 0, 0), *test_calls, ("after_run", 0, 0)]


class _ValEpochs(Hook):
    priority = "LOWEST"

    def __init__(self) -> None:
        self.seen: list[int] = []

    def after_val_epoch(self, runner: Any, metrics: Any = None) -> None:
        self.seen.append(runner.epoch)


@pytest.mark.parametrize(
    ("train_cfg", "expected"),
    [
        ({"max_epochs": 5, "val_interval": 2}, [2, 4, 5]),
        ({"max_epochs": 5, "val_interval": 2, "val_begin": 3}, [4, 5]),
        # fengine validates before training when val_begin=0 (MMEngine gives [1, 2, 3]).
        ({"max_epochs": 3, "val_interval": 1, "val_begin": 0}, [0, 1, 2, 3]),
        ({"max_epochs": 6, "val_interval": 3, "dynamic_intervals": [(4, 1)]}, [3, 4, 5, 6]),
    ],
)
def test_validation_schedule(tmp_path: Any, train_cfg: dict[str, Any], expected: list[int]) -> None:
    """Spec A4, with the documented val_begin=0 difference."""
    hook = _ValEpochs()
    kwargs = toy_kwargs(tmp_path, train_cfg={"by_epoch": True, **train_cfg}, custom_hooks=[hook])
    kwargs["default_hooks"] = {"checkpoint": None, "logger": None}
    Runner(**kwargs).train()
    assert hook.seen == expected


def test_iteration_loop_val_begin_zero_validates_first(tmp_path: Any) -> None:
    hook = _ValEpochs()
    kwargs = toy_kwargs(tmp_path, train_cfg={"by_epoch": False, "max_iters": 6, "val_interval": 3, "val_begin": 0}, custom_hooks=[hook])
    kwargs["default_hooks"] = {"checkpoint": None, "logger": None}
    runner = Runner(**kwargs)
    iters: list[int] = []
    runner.register_hook(type("It", (Hook,), {"after_val_epoch": lambda self, r, metrics=None: iters.append(r.iter)})())
    runner.train()
    assert iters == [0, 3, 6]


class _NaNAt(ToyModel):
    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, inputs: Any, data_samples: Any = None, mode: str = "tensor") -> Any:
        out = super().forward(inputs, data_samples, mode)
        if mode == "loss":
            self.calls += 1
            if self.calls == self.at:
                return {"loss_cls": out["loss"] * float("nan"), "loss_box": out["loss"]}
            return {"loss_cls": out["loss"], "loss_box": out["loss"]}
        return out


def test_non_finite_loss_stops_naming_iteration_and_terms(tmp_path: Any) -> None:
    eager = {"by_epoch": True, "max_epochs": 2, "check_finite": "eager"}
    runner = Runner(**toy_kwargs(tmp_path, model=_NaNAt(6), train_cfg=eager, default_hooks={"checkpoint": None}))
    with pytest.raises(NonFiniteLossError, match=r"iteration 6 \(epoch 2, batch 1\).*loss_cls=nan") as info:
        runner.train()
    assert "loss_box" not in str(info.value).split(":", 1)[1].split(";")[0]
    assert runner.iter == 5  # the failing iteration never completed


def test_non_finite_loss_opt_out_trains_on(tmp_path: Any) -> None:
    cfg = {"by_epoch": True, "max_epochs": 2, "check_finite": False}
    runner = Runner(**toy_kwargs(tmp_path, model=_NaNAt(6), train_cfg=cfg, default_hooks={"checkpoint": None}))
    runner.train()
    assert runner.iter == 8
    assert not torch.isfinite(next(runner.model.parameters())).all()


def test_stop_training_is_checked_per_epoch(tmp_path: Any) -> None:
    class Stop(Hook):
        def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
            if runner.iter == 1:
                runner.train_loop.stop_training = True

    recorder = Recorder()
    runner = Runner(**toy_kwargs(tmp_path, custom_hooks=[Stop(), recorder], train_cfg={"by_epoch": True, "max_epochs": 3}))
    runner.train()
    # The epoch in progress and its validation complete; after_train still runs.
    assert (runner.epoch, runner.iter) == (1, 4)
    assert recorder.calls[-2:] == [("after_train", 1, 4), ("after_run", 1, 4)]


@settings(max_examples=15, deadline=None)
@given(
    by_epoch=st.booleans(),
    length=st.integers(1, 6),
    val_begin=st.integers(1, 4),
    val_interval=st.integers(1, 3),
)
def test_a_train_loop_runs_on_the_callables_it_is_handed(
    tmp_path_factory: Any, by_epoch: bool, length: int, val_begin: int, val_interval: int
) -> None:
    """The loop steps with the ``train_step`` and validates with the ``validate`` it is handed.

    No optimizer, no model update and no validation loop: the loop's own reads are the record
    cell and ``fire``. Every iteration replaces the record with the step's, and validation runs
    exactly where the schedule says (after each due epoch / iteration and after the last).
    """
    tmp_path = tmp_path_factory.mktemp("loop")
    cfg = {"by_epoch": True, "max_epochs": length} if by_epoch else {"by_epoch": False, "max_iters": length}
    runner = Runner(**toy_kwargs(tmp_path, train_cfg={**cfg, "val_begin": val_begin, "val_interval": val_interval},
                                 val_dataloader=None, val_cfg=None, val_evaluator=None,
                                 default_hooks={"checkpoint": None}, log_level="WARNING"))
    loop = runner.train_loop
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)  # its lr is logged
    records: list[Any] = []

    def step(state: Any, data_batch: Any) -> tuple[Any, dict[str, Any]]:
        assert state is runner.state  # the step receives the run's current record
        new = state.replace(step=state.step + 1)
        records.append(new)
        return new, {}

    validated: list[int] = []
    loop.train_step = step
    loop.validate = lambda: validated.append(runner.epoch if by_epoch else runner.iter)
    loop.run()
    batches = 4  # the toy loader
    assert len(records) == (length * batches if by_epoch else length)
    assert runner.state.step == len(records) and runner.iter == len(records)
    last = length
    due = [n for n in range(1, last + 1) if n >= val_begin and (n % val_interval == 0 or n == last)]  # MMEngine's rule
    assert validated == due
