"""Where a run lives: its timestamp, work dir, log dir and experiment name (MMEngine's rules).

:func:`open_run_place` makes the folders and reads the clock once, on every rank alike (rank 0's
clock is broadcast, so all ranks name the same log dir).
"""

from __future__ import annotations

import os
import time

import attrs
import torch

from fengine import dist
from fengine.logging import MessageHub
from fengine.utils.fileio import remove_stale_temporaries


@attrs.frozen
class RunPlace:
    """A run's names and folders.

    Args:
        timestamp: ``%Y%m%d_%H%M%S`` of the run's start (rank 0's clock).
        work_dir: the absolute work dir (made).
        log_dir: ``<work_dir>/<timestamp>`` (made).
        experiment_name: ``[<experiment_name>_]<timestamp>``, with ``_<n>`` when another runner
            of this process already took that name (the name of its logger and message hub).
        stale: temporary files of interrupted writes removed from ``work_dir`` (rank 0).
    """

    timestamp: str
    work_dir: str
    log_dir: str
    experiment_name: str
    stale: tuple[str, ...] = ()


def open_run_place(
    work_dir: str | os.PathLike[str] | None, experiment_name: str | None, distributed: bool, rank: int
) -> RunPlace:
    """The run's place, its folders made.

    Args:
        work_dir: the given work dir; ``None``: a fresh ``work_dirs/<timestamp>`` (``_<n>`` added
            when it exists, in a single process).
        experiment_name: the given experiment name, or ``None``.
        distributed: whether ranks share the run (they must agree on a fresh folder's name).
        rank: this process's rank; rank 0 removes stale temporaries.
    """
    stamp = torch.tensor(time.time(), dtype=torch.float64)
    dist.broadcast(stamp)
    timestamp = time.strftime("%Y%m%d_%H%M%S", time.localtime(stamp.item()))
    if work_dir is None:
        base = os.path.join("work_dirs", timestamp)
        work_dir, n = base, 1
        while os.path.exists(work_dir) and not distributed:
            n += 1
            work_dir = f"{base}_{n}"
    folder = os.path.abspath(work_dir)
    os.makedirs(folder, exist_ok=True)
    stale = remove_stale_temporaries(folder) if rank == 0 else []
    base_name = f"{experiment_name}_{timestamp}" if experiment_name is not None else timestamp
    name, n = base_name, 1
    while MessageHub.check_instance_created(name):  # another runner in this process, same second
        n += 1
        name = f"{base_name}_{n}"
    log_dir = os.path.join(folder, timestamp)
    os.makedirs(log_dir, exist_ok=True)
    return RunPlace(timestamp, folder, log_dir, name, tuple(stale))
