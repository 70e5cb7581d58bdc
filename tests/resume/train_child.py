"""Child process of the kill tests: trains the resume toy run, slowly, until it is killed.

``python train_child.py WORK_DIR epochs|iterations SGD|AdamW DELAY`` trains as
:func:`resume_toys.resume_kwargs` describes (one intra-op thread, like the parent's tests), and
sleeps ``DELAY`` seconds in each iteration's ``after_train_iter`` (its checkpoint is written when
that event ends) so the parent can kill it part-way; each iteration prints ``iter N``. The last
iteration waits there for the kill, so however busy the machine, the run never ends before it.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import torch
from resume_toys import resume_kwargs

from fengine.hooks import Hook
from fengine.runner.runner import Runner


class Slow(Hook):
    """Sleeps in every ``after_train_iter`` (the event's checkpoint is written when it ends)."""

    priority = "LOWEST"

    def __init__(self, delay: float) -> None:
        self.delay = delay

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        print(f"iter {runner.iter + 1}", flush=True)
        time.sleep(600 if runner.iter + 1 == runner.max_iters else self.delay)


def main() -> None:
    work_dir, loop, optimizer, delay = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    torch.set_num_threads(1)
    kwargs = resume_kwargs(work_dir, loop == "epochs", optimizer)
    Runner(**dict(kwargs, custom_hooks=[*kwargs["custom_hooks"], Slow(delay)])).train()


if __name__ == "__main__":
    main()
