"""How many records per key the run's message hub keeps: enough for every log window in use.

The message hub appends a record per key and iteration (losses, learning rates, timings), so
with MMEngine's bound of 1,000,000 records per key a long run's memory and checkpoints grow for
days. The log lines only read windows: ``LogProcessor.window_size`` (10 by default), the ints of
``custom_cfg``, ``'epoch'`` (the current epoch's batches: at most the train loader's length in an
epoch loop, ``max_iters`` in an iteration loop, the val/test loader's length in evaluation),
``'global'`` (``runner.iter + 1``, at most ``max_iters``), and the ``'epoch'`` means of
``time``/``data_time`` in each validation and test line. Keeping the largest of these (and at
least :data:`MIN_HISTORY`) gives log lines identical, bit for bit, to an unbounded history. Where
a window cannot be bounded (a custom log processor class, a ``custom_cfg`` entry without
``window_size``, ``'global'`` outside training, a loader without a length) MMEngine's bound is
kept.
"""

from __future__ import annotations

from typing import Any

from fengine.runner.base_loop import BaseLoop
from fengine.runner.log_processor import LogProcessor
from fengine.runner.loops import EpochBasedTrainLoop
from fengine.runner.parts import Parts

#: The fewest records kept per key, for hooks that read a short recent history themselves.
MIN_HISTORY = 1000
#: MMEngine's ``HistoryBuffer`` bound, kept where the windows cannot be bounded.
MMENGINE_HISTORY = 1_000_000


def _length(loop: Any) -> int | None:
    try:
        return len(loop.dataloader)
    except (TypeError, AttributeError):
        return None


def history_length(log_processor: Any, train_loop: Any, val_loop: Any, test_loop: Any) -> int:
    """The number of records per message-hub key that covers every window of ``log_processor``.

    Args:
        log_processor: the runner's log processor.
        train_loop, val_loop, test_loop: the runner's loops (configs or ``None`` where not built).

    Returns:
        An int in ``[MIN_HISTORY, MMENGINE_HISTORY]``.
    """
    if type(log_processor) is not LogProcessor or not isinstance(log_processor.window_size, int):
        return MMENGINE_HISTORY
    train = train_loop if isinstance(train_loop, BaseLoop) else None
    evals = [loop for loop in (val_loop, test_loop) if isinstance(loop, BaseLoop)]
    eval_lengths = [_length(loop) for loop in evals]
    needs: list[int | None] = [log_processor.window_size, *eval_lengths]
    for cfg in log_processor.custom_cfg:
        window = cfg.get("window_size")
        if isinstance(window, int):
            needs.append(window)
        elif window == "epoch":
            if train is not None:
                needs.append(_length(train) if isinstance(train, EpochBasedTrainLoop) else train.max_iters)
        elif window == "global" and train is not None:
            needs.append(train.max_iters)
        else:
            return MMENGINE_HISTORY
    if any(n is None for n in needs):
        return MMENGINE_HISTORY
    return min(MMENGINE_HISTORY, max(MIN_HISTORY, *(n for n in needs if n is not None)))


def bound_history(message_hub: Any, log_processor: Any, parts: Parts) -> None:
    """Bound ``message_hub``'s records per key by :func:`history_length` of ``parts``' loops.

    Args:
        message_hub: the run's message hub.
        log_processor: the runner's log processor.
        parts: the run's :class:`~fengine.runner.parts.Parts`.
    """
    message_hub.set_history_length(history_length(log_processor, parts.train_loop, parts.val_loop, parts.test_loop))
