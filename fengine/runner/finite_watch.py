"""The deferred non-finite loss check: each step's loss is kept, and read only at check points.

Reading a loss on the host every step is a device sync every step. The watch keeps each step's
total loss (a device tensor) with its iteration, epoch and batch, and reads them all in one
transfer when the shell checks: at each log line, before every checkpoint write (so no checkpoint
written after a bad step is published), at the end of each epoch and of training, and every
:data:`MAX_PENDING` steps at the latest (which bounds what it holds). A non-finite loss found then
stops the run with :class:`~fengine.runner.base_loop.NonFiniteLossError` naming the first bad
iteration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from fengine.runner.base_loop import NonFiniteLossError

#: The most steps held between two checks; the next step triggers one.
MAX_PENDING = 1000


class FiniteWatch:
    """The losses since the last check, each with ``(iteration, epoch, batch_idx)`` (0-based)."""

    def __init__(self) -> None:
        self._losses: list[torch.Tensor] = []
        self._where: list[tuple[int, int, int]] = []

    def __len__(self) -> int:
        return len(self._losses)

    def add(self, outputs: Any, iteration: int, epoch: int, batch_idx: int) -> None:
        """Keep the step's total loss (``outputs['loss']``; nothing without a tensor there)."""
        loss = outputs.get("loss") if isinstance(outputs, Mapping) else None
        if not isinstance(loss, torch.Tensor):
            return
        if len(self._losses) >= MAX_PENDING:
            self.check()
        self._losses.append(loss.detach().reshape(-1))
        self._where.append((iteration, epoch, batch_idx))

    def check(self) -> None:
        """Read every loss kept in one transfer and forget them; raise at the first non-finite one.

        Raises:
            NonFiniteLossError: naming the iteration, epoch and batch of the first non-finite
                loss and its value.
        """
        if not self._losses:
            return
        losses, where = self._losses, self._where
        self._losses, self._where = [], []
        finite = torch.isfinite(torch.cat(losses).float()).reshape(len(losses), -1).all(dim=1)
        if bool(finite.all()):
            return
        first = int((~finite).nonzero()[0])
        iteration, epoch, batch_idx = where[first]
        raise NonFiniteLossError(
            f"non-finite loss at iteration {iteration + 1} (epoch {epoch + 1}, batch {batch_idx}): "
            f"loss={losses[first].cpu().tolist()}, found at the next check (a log line, a checkpoint, "
            "the end of an epoch); the parameters may already hold NaN/Inf and no checkpoint was "
            "written since. Lower the learning rate, clip gradients or check the data, or pass "
            "train_cfg=dict(..., check_finite='eager') to stop at the step itself, 'skip' to leave "
            "such steps out or False to train on"
        )
