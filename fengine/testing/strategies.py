"""Hypothesis strategies for runs, run states, metrics and losses.

Every strategy shrinks toward small runs: one epoch, one iteration, one metric.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from fengine.core import ema, optim
from fengine.core.events import Event
from fengine.core.run import EventInfo, RunState
from fengine.core.state import TrainState
from fengine.testing.simulation import EventStep, RunScript


def metrics(names: Sequence[str] = ("accuracy",), *, allow_nan: bool = False) -> st.SearchStrategy[dict[str, float]]:
    """Metric dicts with the given keys: scores in ``[0, 1]``; names containing ``loss`` in ``[0, 10]``.

    Args:
        names: the metric names every drawn dict has.
        allow_nan: also draw NaN and infinities (to test non-finite handling).
    """
    def value(name: str) -> st.SearchStrategy[float]:
        high = 10.0 if "loss" in name.lower() else 1.0
        finite = st.floats(0.0, high, allow_nan=False, allow_infinity=False)
        return finite | st.sampled_from([float("nan"), float("inf"), -float("inf")]) if allow_nan else finite

    return st.fixed_dictionaries({name: value(name) for name in names})


def losses(max_terms: int = 3) -> st.SearchStrategy[dict[str, torch.Tensor]]:
    """``train_step`` outputs (``log_vars``): ``'loss'`` plus up to ``max_terms - 1`` named terms, as 0-d tensors."""
    term = st.floats(0.0, 10.0, allow_nan=False, allow_infinity=False, width=32).map(
        lambda v: torch.tensor(v, dtype=torch.float32)
    )
    extra = st.dictionaries(st.sampled_from(["loss_cls", "loss_reg", "acc"]), term, max_size=max(0, max_terms - 1))
    return st.builds(lambda total, more: {"loss": total, **more}, term, extra)


def _tensor(max_dims: int, max_side: int) -> st.SearchStrategy[torch.Tensor]:
    shapes = hnp.array_shapes(min_dims=1, max_dims=max_dims, min_side=1, max_side=max_side)
    arrays = hnp.arrays(np.float32, shapes, elements=st.floats(-10, 10, width=32))
    return arrays.map(lambda a: torch.from_numpy(a.copy()))


def run_states(
    *, max_params: int = 3, max_dims: int = 3, max_side: int = 4, max_epochs: int = 5, max_iters_per_epoch: int = 8
) -> st.SearchStrategy[RunState]:
    """Valid :class:`RunState` records: random parameters and buffers of random shapes, consistent counters.

    Counters satisfy MMEngine's invariants: ``0 <= epoch <= max_epochs``, ``0 <= iter <= max_iters``
    and ``max_iters == max_epochs * len(train dataloader)`` for an epoch-based loop.
    """
    names = st.lists(st.sampled_from(["fc.weight", "fc.bias", "conv.weight", "conv.bias", "head.weight"]), unique=True, max_size=max_params)

    @st.composite
    def build(draw: st.DrawFn) -> RunState:
        params = {name: draw(_tensor(max_dims, max_side)) for name in draw(names)}
        buffers = {"bn.running_mean": draw(_tensor(1, max_side))} if draw(st.booleans()) else {}
        by_epoch = draw(st.booleans())
        per_epoch = draw(st.integers(1, max_iters_per_epoch))
        n_epochs = draw(st.integers(1, max_epochs)) if by_epoch else 1
        max_iters = n_epochs * per_epoch
        it = draw(st.integers(0, max_iters))
        epoch = it // per_epoch if by_epoch else 0
        return RunState(
            epoch=epoch,
            iter=it,
            max_epochs=n_epochs,
            max_iters=max_iters,
            train_by_epoch=by_epoch,
            dataloader_len={"train": per_epoch, "val": draw(st.integers(1, 4))},
            work_dir="work_dir",
            log_dir="work_dir/log",
            meta={"experiment_name": "drawn", "seed": draw(st.integers(0, 2**31 - 1))},
            params=params,
            buffers=buffers,
        )

    return build()


def train_states(*, max_params: int = 3, max_dims: int = 3, max_side: int = 4) -> st.SearchStrategy[TrainState[Any]]:
    """Valid :class:`~fengine.core.TrainState` records for a drawn model.

    Random parameters of random shapes, a buffer, optimizer state from SGD (with momentum buffers
    after a first step) or Adam, counters consistent with the step, and an EMA of the parameters.
    """

    @st.composite
    def build(draw: st.DrawFn) -> TrainState[Any]:
        names = draw(st.lists(st.sampled_from(["fc.weight", "fc.bias", "head.weight"]), unique=True, min_size=1, max_size=max_params))
        params = {name: draw(_tensor(max_dims, max_side)) for name in names}
        buffers = {"bn.running_mean": draw(_tensor(1, max_side))}
        lr = draw(st.floats(1e-4, 1.0))
        tx: optim.GradientTransform[Any] = optim.sgd(lr, momentum=0.9) if draw(st.booleans()) else optim.adam(lr)
        opt_state = tx.init(params)
        if draw(st.booleans()):  # a state past its first step holds momentum / moments
            generator = torch.Generator().manual_seed(draw(st.integers(0, 2**31 - 1)))
            grads = {name: torch.randn(p.shape, generator=generator) for name, p in params.items()}
            params, opt_state = tx.update(grads, opt_state, params)
        steps = draw(st.integers(0, 1000))
        per_epoch = draw(st.integers(1, 50))
        averager = ema.ExponentialMovingAverage(momentum=draw(st.floats(1e-4, 0.5)))
        return TrainState(
            params=params,
            buffers=buffers,
            opt_state=opt_state,
            step=steps,
            ema=averager.init(params, buffers),
            epoch=steps // per_epoch,
            iter=steps,
            inner_iter=steps % per_epoch,
        )

    return build()


def _val_block(mode: str, epoch: int, it: int, n: int, scores: dict[str, float]) -> list[EventStep]:
    ev = {name: Event(f"{name.replace('*', mode)}") for name in (
        "before_*", "before_*_epoch", "before_*_iter", "after_*_iter", "after_*_epoch", "after_*")}
    steps = [EventStep(ev["before_*"], epoch, it), EventStep(ev["before_*_epoch"], epoch, it)]
    for b in range(n):
        batch = {"inputs": [torch.zeros(1)], "data_samples": [b]}
        steps.append(EventStep(ev["before_*_iter"], epoch, it, EventInfo(batch_idx=b, data_batch=batch)))
        steps.append(EventStep(ev["after_*_iter"], epoch, it, EventInfo(batch_idx=b, data_batch=batch, outputs=[b])))
    steps.append(EventStep(ev["after_*_epoch"], epoch, it, EventInfo(metrics=scores)))
    steps.append(EventStep(ev["after_*"], epoch, it))
    return steps


def events(
    *,
    max_epochs: int = 3,
    max_iters: int = 12,
    by_epoch: bool | None = None,
    val_interval: int | None = None,
    max_iters_per_epoch: int = 4,
    max_val_len: int = 3,
    metric_names: Sequence[str] = ("accuracy",),
    with_test: bool | None = None,
    time_step: float = 1.0,
) -> st.SearchStrategy[RunScript]:
    """Legal event sequences of a whole run, with the arguments each event carries.

    The order and counters are MMEngine's: ``iter`` advances after ``after_train_iter``, ``epoch``
    after ``after_train_epoch`` and before the validation that follows; validation runs every
    ``val_interval`` epochs (iterations, by iteration) and after the last; ``batch_idx`` is the
    index in the epoch (global in an iteration-based loop). ``EventInfo.time`` advances by
    ``time_step`` per event.

    Args:
        max_epochs: upper bound on epochs drawn for epoch-based runs.
        max_iters: upper bound on iterations drawn for iteration-based runs.
        by_epoch: fix the loop kind (drawn when ``None``).
        val_interval: fix the validation interval (drawn in ``1..3`` when ``None``).
        max_iters_per_epoch: upper bound on train batches per epoch.
        max_val_len: upper bound on validation (and test) batches.
        metric_names: the keys of every ``metrics`` dict (see :func:`metrics`).
        with_test: append a test loop (drawn when ``None``).
        time_step: seconds between consecutive events' ``time``.
    """

    @st.composite
    def build(draw: st.DrawFn) -> RunScript:
        epoch_based = draw(st.booleans()) if by_epoch is None else by_epoch
        interval = draw(st.integers(1, 3)) if val_interval is None else val_interval
        per_epoch = draw(st.integers(1, max_iters_per_epoch))
        val_len = draw(st.integers(1, max_val_len))
        n_epochs = draw(st.integers(1, max_epochs)) if epoch_based else 1
        total = n_epochs * per_epoch if epoch_based else draw(st.integers(1, max_iters))
        test = draw(st.booleans()) if with_test is None else with_test
        scores = metrics(metric_names)
        steps: list[EventStep] = [EventStep(Event.BEFORE_RUN, 0, 0), EventStep(Event.BEFORE_TRAIN, 0, 0)]
        it = 0

        def train_iter(epoch: int, batch_idx: int) -> None:
            batch = {"inputs": [torch.zeros(1)], "data_samples": [batch_idx]}
            steps.append(EventStep(Event.BEFORE_TRAIN_ITER, epoch, it, EventInfo(batch_idx=batch_idx, data_batch=batch)))
            steps.append(EventStep(Event.AFTER_TRAIN_ITER, epoch, it, EventInfo(batch_idx=batch_idx, data_batch=batch, outputs=draw(losses()))))

        if epoch_based:
            for epoch in range(n_epochs):
                steps.append(EventStep(Event.BEFORE_TRAIN_EPOCH, epoch, it))
                for b in range(per_epoch):
                    train_iter(epoch, b)
                    it += 1
                steps.append(EventStep(Event.AFTER_TRAIN_EPOCH, epoch, it))
                if (epoch + 1) % interval == 0 or epoch + 1 == n_epochs:
                    steps += _val_block("val", epoch + 1, it, val_len, draw(scores))
        else:
            steps.append(EventStep(Event.BEFORE_TRAIN_EPOCH, 0, 0))
            for i in range(total):
                train_iter(0, i)
                it += 1
                if it % interval == 0 or it == total:
                    steps += _val_block("val", 0, it, val_len, draw(scores))
            steps.append(EventStep(Event.AFTER_TRAIN_EPOCH, 0, it))
        final_epoch = n_epochs if epoch_based else 0
        steps.append(EventStep(Event.AFTER_TRAIN, final_epoch, it))
        if test:
            steps += _val_block("test", final_epoch, it, val_len, draw(scores))
        steps.append(EventStep(Event.AFTER_RUN, final_epoch, it))
        timed = tuple(
            EventStep(s.event, s.epoch, s.iter, _with_time(s.info, (k + 1) * time_step)) for k, s in enumerate(steps)
        )
        lengths = {"train": per_epoch, "val": val_len, **({"test": val_len} if test else {})}
        return RunScript(timed, n_epochs, total, epoch_based, lengths)

    return build()


def _with_time(info: EventInfo, time: float) -> EventInfo:
    return EventInfo(
        batch_idx=info.batch_idx, data_batch=info.data_batch, outputs=info.outputs,
        metrics=info.metrics, checkpoint=info.checkpoint, time=time,
    )


__all__ = ["events", "losses", "metrics", "run_states", "train_states"]
