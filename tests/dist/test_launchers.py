"""``launcher='slurm'`` and ``launcher='mpi'``: srun's and mpirun's variables become a process group.

The pure mapping (:mod:`fengine.launch_env`) is checked on generated environments; then two
spawned ranks carrying only Slurm's (or Open MPI's) variables build a Runner, train two
iterations under DDP and agree on their weights.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
import torch
from dist_toys import BATCH, IndexedDataset, dump, load, loader_cfg, make_model, spawn
from hypothesis import given
from hypothesis import strategies as st

from fengine import dist
from fengine.launch_env import (
    LauncherEnvironmentError,
    first_slurm_host,
    torchrun_variables,
)
from fengine.runner import Runner

_names = st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=6).filter(
    lambda s: not s.startswith("-")
)


@st.composite
def _bracketed_lists(draw: Any) -> tuple[str, str]:
    """A Slurm host list and its first host, e.g. ``('n[03-05,9]-r[1-2],gpu1', 'n03-r1')``."""
    parts, first = [], []
    for _ in range(draw(st.integers(1, 3))):
        prefix = draw(_names)
        width = draw(st.integers(1, 3))
        start = draw(st.integers(0, 10**width - 1))
        ranges = [f"{start:0{width}d}"]
        if draw(st.booleans()):
            ranges[0] += f"-{start + draw(st.integers(1, 5)):0{width}d}"
        ranges += [str(n) for n in draw(st.lists(st.integers(0, 99), max_size=2))]
        parts.append(f"{prefix}[{','.join(ranges)}]")
        first.append(f"{prefix}{start:0{width}d}")
    rest = draw(st.lists(_names, max_size=2))
    return ",".join(["".join(parts), *rest]), "".join(first)


@given(_bracketed_lists())
def test_the_first_slurm_host_is_each_brackets_first_value(case):
    nodelist, first = case
    assert first_slurm_host(nodelist) == first


@given(st.lists(_names, min_size=1, max_size=4))
def test_a_plain_host_list_starts_with_its_first_name(names):
    assert first_slurm_host(",".join(names)) == names[0]


@pytest.mark.parametrize("nodelist", ["", "node[01-", "node[]", "a[[1]]", "node 1"])
def test_a_malformed_host_list_is_named(nodelist):
    with pytest.raises(LauncherEnvironmentError, match=re.escape(f"SLURM_NODELIST={nodelist!r}")):
        first_slurm_host(nodelist)


@given(
    rank=st.integers(0, 63),
    extra=st.integers(1, 64),
    local=st.integers(0, 7),
    port=st.one_of(st.none(), st.integers(1024, 65535)),
    addr=st.one_of(st.none(), st.just("10.0.0.9")),
)
def test_slurm_variables_map_onto_torchruns(rank, extra, local, port, addr):
    environ = {"SLURM_PROCID": str(rank), "SLURM_NTASKS": str(rank + extra),
               "SLURM_LOCALID": str(local), "SLURM_NODELIST": "gpu[07-09],cpu1"}  # fmt: skip
    if port is not None:
        environ["MASTER_PORT"] = str(port)
    if addr is not None:
        environ["MASTER_ADDR"] = addr
    assert torchrun_variables("slurm", environ) == {
        "RANK": str(rank),
        "WORLD_SIZE": str(rank + extra),
        "LOCAL_RANK": str(local),
        "MASTER_ADDR": addr or "gpu07",
        "MASTER_PORT": str(port or 29500),
    }


@given(rank=st.integers(0, 63), extra=st.integers(1, 64), local=st.integers(0, 7))
def test_open_mpi_variables_map_onto_torchruns(rank, extra, local):
    environ = {"OMPI_COMM_WORLD_RANK": str(rank), "OMPI_COMM_WORLD_SIZE": str(rank + extra),
               "OMPI_COMM_WORLD_LOCAL_RANK": str(local), "MASTER_ADDR": "head"}  # fmt: skip
    assert torchrun_variables("mpi", environ) == {
        "RANK": str(rank), "WORLD_SIZE": str(rank + extra), "LOCAL_RANK": str(local),
        "MASTER_ADDR": "head", "MASTER_PORT": "29500",
    }  # fmt: skip


_SLURM = {"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_NODELIST": "n1"}
_MPI = {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2",
        "OMPI_COMM_WORLD_LOCAL_RANK": "1", "MASTER_ADDR": "head"}  # fmt: skip
BAD = [
    ("slurm", {**_SLURM, "SLURM_NTASKS": ""}, "init_dist('slurm') needs the Slurm (srun) environment variables ['SLURM_NTASKS']"),
    ("slurm", {"SLURM_NODELIST": "n1"}, "variables ['SLURM_PROCID', 'SLURM_NTASKS']"),
    ("slurm", {**_SLURM, "SLURM_PROCID": "x"}, "SLURM_PROCID='x' is not a non-negative integer"),
    ("slurm", {**_SLURM, "SLURM_PROCID": "2"}, "rank 2 (SLURM_PROCID) is not below the world size 2 (SLURM_NTASKS)"),
    ("slurm", {**_SLURM, "MASTER_PORT": "http"}, "MASTER_PORT='http' is not a non-negative integer"),
    ("mpi", {k: v for k, v in _MPI.items() if k != "MASTER_ADDR"}, "Open MPI (mpirun) environment variables ['MASTER_ADDR']"),
    ("mpi", {**_MPI, "OMPI_COMM_WORLD_LOCAL_RANK": "-1"}, "OMPI_COMM_WORLD_LOCAL_RANK='-1' is not"),
    ("pytorch", {"RANK": "0"}, "torchrun environment variables ['WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT']"),
]  # fmt: skip


@pytest.mark.parametrize(("launcher", "environ", "message"), BAD)
def test_a_missing_or_bad_variable_is_named(launcher, environ, message):
    with pytest.raises(LauncherEnvironmentError, match=re.escape(message)):
        torchrun_variables(launcher, environ)


def test_an_unknown_launcher_lists_the_known_ones():
    with pytest.raises(ValueError, match=re.escape("'mpi', 'pytorch', 'slurm'")):
        torchrun_variables("pbs", {})


def slurm_env(rank: int, world_size: int, port: int) -> dict[str, str]:
    """What ``srun -n WORLD_SIZE`` on one node gives a task (plus the port to meet on)."""
    return {"SLURM_PROCID": str(rank), "SLURM_NTASKS": str(world_size), "SLURM_LOCALID": str(rank),
            "SLURM_NODELIST": "localhost", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}  # fmt: skip


def mpi_env(rank: int, world_size: int, port: int) -> dict[str, str]:
    """What Open MPI's ``mpirun -np WORLD_SIZE -x MASTER_ADDR -x MASTER_PORT`` gives a rank."""
    return {"OMPI_COMM_WORLD_RANK": str(rank), "OMPI_COMM_WORLD_SIZE": str(world_size),
            "OMPI_COMM_WORLD_LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}  # fmt: skip


def _train_two_iterations(rank: int, launcher: str, out: str) -> None:
    runner = Runner(
        model=make_model(),
        work_dir=os.path.join(out, "work"),
        train_dataloader=loader_cfg(IndexedDataset(4 * BATCH), BATCH),
        train_cfg={"by_epoch": False, "max_iters": 2},
        optim_wrapper={"optimizer": {"type": "SGD", "lr": 0.1}},
        default_hooks={"checkpoint": None},
        launcher=launcher,
        env_cfg={"dist_cfg": {"backend": "gloo"}},
        randomness={"seed": 0},
        log_level="WARNING",
    )
    runner.train()
    weight = runner.model.module.l1.weight.detach().clone()
    gathered = dist.all_gather(weight)
    dump(os.path.join(out, f"rank{rank}.pkl"), {
        "info": (runner.rank, runner.world_size, dist.get_local_rank(), runner.iter),
        "wrapped": type(runner.model).__name__,
        "same": all(torch.equal(g, gathered[0]) for g in gathered),
        "env": {k: os.environ[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR")},
    })  # fmt: skip


@pytest.mark.parametrize(("launcher", "env"), [("slurm", slurm_env), ("mpi", mpi_env)])
def test_two_ranks_started_by_the_launcher_train_together(tmp_path, launcher, env):
    spawn(_train_two_iterations, launcher, str(tmp_path), env=env, timeout=90)
    found = [load(tmp_path / f"rank{r}.pkl") for r in range(2)]
    addr = "localhost" if launcher == "slurm" else "127.0.0.1"
    for rank, seen in enumerate(found):
        assert seen["info"] == (rank, 2, rank, 2)
        assert seen["wrapped"] == "MMDistributedDataParallel" and seen["same"]
        assert seen["env"] == {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank),
                               "MASTER_ADDR": addr}  # fmt: skip
