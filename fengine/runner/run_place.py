"""Where a run lives: its timestamp, work dir, log dir and experiment name (MMEngine's rules).

:func:`open_run_place` makes the folders; rank 0 reads the clock and picks the names, which
every rank takes, so all ranks name the same log dir and each run of a work dir has its own.
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
        timestamp: ``%Y%m%d_%H%M%S`` of the run's start (rank 0's clock), with ``_<n>`` when
            another run of the same work dir started in that second: the run's own name for its
            log dir, log file, scalars file and config copy.
        work_dir: the absolute work dir (made).
        log_dir: ``<work_dir>/<timestamp>`` (made; no other run's).
        experiment_name: ``[<experiment_name>_]<timestamp>``, with ``_<n>`` when another runner
            of this process already took that name (the name of its logger and message hub).
        stale: temporary files of interrupted writes removed from ``work_dir`` (rank 0).
    """

    timestamp: str
    work_dir: str
    log_dir: str
    experiment_name: str
    stale: tuple[str, ...] = ()


def _free(path: str) -> int:
    """The smallest ``n`` for which ``path`` (``n == 1``) or ``path_<n>`` does not exist."""
    n = 1
    while os.path.exists(path if n == 1 else f"{path}_{n}"):
        n += 1
    return n


def _numbered(name: str, n: int) -> str:
    return name if n == 1 else f"{name}_{n}"


def open_run_place(
    work_dir: str | os.PathLike[str] | None, experiment_name: str | None, distributed: bool, rank: int
) -> RunPlace:
    """The run's place, its folders made.

    Rank 0 reads the clock and picks the names (the first ``_<n>`` free on its disk); the other
    ranks take them, so all ranks of a run agree and no two runs of one work dir share a log dir
    (MMEngine's two runs started in one second write into one).

    Args:
        work_dir: the given work dir; ``None``: a fresh ``work_dirs/<timestamp>`` (``_<n>`` added
            when it exists).
        experiment_name: the given experiment name, or ``None``.
        distributed: whether ranks share the run (rank 0's names are broadcast).
        rank: this process's rank; rank 0 removes stale temporaries.
    """
    # [clock, n of a fresh work dir, n of the log dir], rank 0's.
    picked = torch.tensor([time.time(), 1.0, 1.0], dtype=torch.float64)
    if rank == 0:
        second = time.strftime("%Y%m%d_%H%M%S", time.localtime(picked[0].item()))
        fresh = os.path.join("work_dirs", second)
        picked[1] = _free(fresh) if work_dir is None else 1
        folder = os.path.abspath(_numbered(fresh, int(picked[1])) if work_dir is None else work_dir)
        picked[2] = _free(os.path.join(folder, second))
    if distributed:
        dist.broadcast(picked)
    second = time.strftime("%Y%m%d_%H%M%S", time.localtime(picked[0].item()))
    if work_dir is None:
        work_dir = _numbered(os.path.join("work_dirs", second), int(picked[1]))
    timestamp = _numbered(second, int(picked[2]))
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
