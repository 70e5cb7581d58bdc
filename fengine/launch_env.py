"""What each launcher tells a process about its place in the job, as torchrun's variables.

``torch.distributed``'s ``env://`` initialisation reads ``RANK``, ``WORLD_SIZE``,
``MASTER_ADDR`` and ``MASTER_PORT`` (and fengine reads ``LOCAL_RANK`` to pick a GPU). torchrun
sets them; ``srun`` and ``mpirun`` set their own. :func:`torchrun_variables` maps a launcher's
variables onto torchrun's, as MMEngine's ``init_dist('slurm')``/``init_dist('mpi')`` do:

- ``'slurm'``: rank ``SLURM_PROCID``, world size ``SLURM_NTASKS``, local rank ``SLURM_LOCALID``,
  master address the first host of ``SLURM_NODELIST`` (``MASTER_ADDR`` wins when set), master
  port ``MASTER_PORT`` or 29500.
- ``'mpi'`` (Open MPI): ``OMPI_COMM_WORLD_RANK``, ``OMPI_COMM_WORLD_SIZE``,
  ``OMPI_COMM_WORLD_LOCAL_RANK``; ``MASTER_ADDR`` must be set, ``MASTER_PORT`` defaults to 29500.

The functions here only read the mapping they are given: the caller applies the result.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["LAUNCHERS", "LauncherEnvironmentError", "first_slurm_host", "torchrun_variables"]

#: Launchers whose environment fengine reads (``'none'``: one process).
LAUNCHERS = ("none", "pytorch", "slurm", "mpi")
DEFAULT_PORT = "29500"  # torch.distributed's default

_REQUIRED = {
    "pytorch": ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"),
    "slurm": ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_NODELIST"),
    "mpi": ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "MASTER_ADDR"),
}
_STARTED_BY = {"pytorch": "torchrun", "slurm": "Slurm (srun)", "mpi": "Open MPI (mpirun)"}
_INTEGERS = {
    "RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT", "SLURM_PROCID", "SLURM_NTASKS",
    "SLURM_LOCALID", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
}  # fmt: skip


class LauncherEnvironmentError(KeyError):
    """A launcher's environment variable is missing or not what it should be."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


def first_slurm_host(nodelist: str) -> str:
    """The first host of a Slurm host list (what ``scontrol show hostname LIST | head -n1`` prints).

    ``'node[03-05,9],gpu1'`` gives ``'node03'``; ``'rack[2-3]-n[07-08]'`` gives ``'rack2-n07'``
    (each bracket contributes its first value, zero padding kept).

    Args:
        nodelist: ``SLURM_NODELIST`` (or ``SLURM_JOB_NODELIST``).

    Returns:
        The first host name.

    Raises:
        LauncherEnvironmentError: an empty or malformed list.
    """
    depth, end = 0, len(nodelist)
    for i, char in enumerate(nodelist):
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth not in (0, 1):
            break
        if char == "," and depth == 0:
            end = i
            break
    host = re.sub(r"\[([0-9]+)[^\[\]]*\]", r"\1", nodelist[:end])
    if depth not in (0, 1) or not host or re.search(r"[\[\],\s]", host):
        raise LauncherEnvironmentError(
            f"SLURM_NODELIST={nodelist!r} is not a Slurm host list such as 'node[01-04],gpu7'"
        )
    return host


def torchrun_variables(launcher: str, environ: Mapping[str, str]) -> dict[str, str]:
    """torchrun's variables for this process, read from ``launcher``'s.

    Args:
        launcher: ``'pytorch'``, ``'slurm'`` or ``'mpi'``.
        environ: the process environment (``os.environ``).

    Returns:
        ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``.

    Raises:
        ValueError: an unknown launcher.
        LauncherEnvironmentError: a variable the launcher sets is missing (all missing ones
            named) or is not an integer where one is needed.
    """
    if launcher not in _REQUIRED:
        raise ValueError(
            f"init_dist: unsupported launcher {launcher!r}; use one of {sorted(_REQUIRED)}"
        )
    missing = [k for k in _REQUIRED[launcher] if not environ.get(k)]
    if missing:
        raise LauncherEnvironmentError(
            f"init_dist({launcher!r}) needs the {_STARTED_BY[launcher]} environment variables "
            f"{missing}; set them or start the processes with {_STARTED_BY[launcher]}"
        )
    if launcher == "pytorch":
        found = {k: environ[k] for k in _REQUIRED["pytorch"]}
        found["LOCAL_RANK"] = environ.get("LOCAL_RANK", "0")
    elif launcher == "slurm":
        found = {
            "RANK": environ["SLURM_PROCID"],
            "WORLD_SIZE": environ["SLURM_NTASKS"],
            "LOCAL_RANK": environ.get("SLURM_LOCALID", "0"),
            "MASTER_ADDR": environ.get("MASTER_ADDR") or first_slurm_host(environ["SLURM_NODELIST"]),
            "MASTER_PORT": environ.get("MASTER_PORT") or DEFAULT_PORT,
        }
    else:
        found = {
            "RANK": environ["OMPI_COMM_WORLD_RANK"],
            "WORLD_SIZE": environ["OMPI_COMM_WORLD_SIZE"],
            "LOCAL_RANK": environ["OMPI_COMM_WORLD_LOCAL_RANK"],
            "MASTER_ADDR": environ["MASTER_ADDR"],
            "MASTER_PORT": environ.get("MASTER_PORT") or DEFAULT_PORT,
        }
    for target, value in found.items():
        source = _source(launcher, target)
        if source in _INTEGERS and not value.strip().isdigit():
            raise LauncherEnvironmentError(
                f"launcher={launcher!r}: {source}={value!r} is not a non-negative integer"
            )
    if int(found["RANK"]) >= int(found["WORLD_SIZE"]):
        raise LauncherEnvironmentError(
            f"launcher={launcher!r}: rank {found['RANK']} ({_source(launcher, 'RANK')}) is not below "
            f"the world size {found['WORLD_SIZE']} ({_source(launcher, 'WORLD_SIZE')})"
        )
    return found


def _source(launcher: str, target: str) -> str:
    """The launcher's variable that ``target`` comes from."""
    names = {
        "slurm": {"RANK": "SLURM_PROCID", "WORLD_SIZE": "SLURM_NTASKS", "LOCAL_RANK": "SLURM_LOCALID"},
        "mpi": {
            "RANK": "OMPI_COMM_WORLD_RANK",
            "WORLD_SIZE": "OMPI_COMM_WORLD_SIZE",
            "LOCAL_RANK": "OMPI_COMM_WORLD_LOCAL_RANK",
        },
    }
    return names.get(launcher, {}).get(target, target)
