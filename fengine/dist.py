"""Distributed helpers over ``torch.distributed`` (MMEngine's ``mmengine.dist`` functions).

Every function works unchanged in a single process: ranks are 0, the world size is 1,
collectives return their input (or do nothing). Tensors are moved to the backend's device for a
collective (CUDA for NCCL, CPU for gloo) and the result copied back, so callers need not care.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar

import numpy as np
import torch
import torch.distributed as torch_dist

from fengine.core.tree import is_dtensor
from fengine.launch_env import torchrun_variables

P = ParamSpec("P")
R = TypeVar("R")

_REDUCE_OPS = {
    "sum": torch_dist.ReduceOp.SUM,
    "product": torch_dist.ReduceOp.PRODUCT,
    "min": torch_dist.ReduceOp.MIN,
    "max": torch_dist.ReduceOp.MAX,
    "band": torch_dist.ReduceOp.BAND,
    "bor": torch_dist.ReduceOp.BOR,
    "bxor": torch_dist.ReduceOp.BXOR,
}
_CPU_GROUP: list[Any] = []  # a gloo group for object collectives when the default group is NCCL


def is_distributed() -> bool:
    """Whether a default process group is initialised."""
    return torch_dist.is_available() and torch_dist.is_initialized()


def get_rank(group: Any = None) -> int:
    """This process's rank in ``group`` (the default group if ``None``); 0 when not distributed."""
    return torch_dist.get_rank(group) if is_distributed() else 0


def get_world_size(group: Any = None) -> int:
    """The number of processes in ``group``; 1 when not distributed."""
    return torch_dist.get_world_size(group) if is_distributed() else 1


def get_dist_info(group: Any = None) -> tuple[int, int]:
    """``(rank, world_size)``."""
    return get_rank(group), get_world_size(group)


def get_local_rank() -> int:
    """The rank within this machine (torchrun's ``LOCAL_RANK``); 0 when not distributed."""
    return int(os.environ.get("LOCAL_RANK", 0)) if is_distributed() else 0


def is_main_process(group: Any = None) -> bool:
    """Whether this is rank 0."""
    return get_rank(group) == 0


def master_only(func: Callable[P, R]) -> Callable[P, R | None]:
    """Decorate ``func`` to run on rank 0 only; other ranks get ``None``."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | None:
        # get_rank() directly rather than is_main_process(): one call less on every log line.
        return func(*args, **kwargs) if get_rank() == 0 else None

    return wrapper


def barrier(group: Any = None) -> None:
    """Wait for every process of ``group``; nothing when not distributed."""
    if is_distributed():
        torch_dist.barrier(group)


def _comm_device(group: Any) -> torch.device:
    if torch_dist.get_backend(group) == torch_dist.Backend.NCCL:
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce(data: torch.Tensor, op: str = "sum", group: Any = None) -> None:
    """Reduce ``data`` across processes in place.

    ``op`` is one of ``sum``, ``mean`` (sum divided by the world size; truncated toward zero
    for integer tensors), ``product``, ``min``, ``max``, ``band``, ``bor``, ``bxor``
    (case-insensitive). Nothing happens in one process.

    Raises:
        ValueError: an unknown ``op``.
    """
    name = op.lower()
    if name != "mean" and name not in _REDUCE_OPS:
        raise ValueError(f"all_reduce: unknown op {op!r}; use one of {['mean', *_REDUCE_OPS]}")
    world_size = get_world_size(group)
    if world_size == 1:
        return
    work = data.to(_comm_device(group))
    torch_dist.all_reduce(work, _REDUCE_OPS["sum" if name == "mean" else name], group)
    if name == "mean":
        # Integer buffers (BatchNorm's num_batches_tracked) take the mean truncated, as copy_ casts.
        work = torch.true_divide(work, world_size)
    if work is not data:
        data.copy_(work)


def grad_all_reduce_mean(
    grads: Mapping[str, torch.Tensor], group: Any = None
) -> dict[str, torch.Tensor]:
    """The mean of each gradient across processes, as new tensors (a pure step's ``grad_reducer``).

    Gradients of one device and dtype travel together in one flat buffer (one collective per
    kind, like DDP's buckets). As in DDP, each gradient is divided by the world size *before*
    the sum, so with ``make_train_step(..., grad_reducer=grad_all_reduce_mean)`` every rank
    gets the parameters DDP gives, bit for bit. The input tensors are not written; in one
    process they are returned as they are.

    Args:
        grads: gradients by parameter name (every rank passes the same names).
        group: the process group; ``None`` = the default one.

    Returns:
        The averaged gradients, by the same names and with the same shapes.
    """
    world_size = get_world_size(group)
    if world_size == 1:
        return dict(grads)
    kinds: dict[tuple[torch.device, torch.dtype], list[str]] = {}
    for name, grad in grads.items():
        kinds.setdefault((grad.device, grad.dtype), []).append(name)
    averaged: dict[str, torch.Tensor] = {}
    for names in kinds.values():
        flat = torch.cat([grads[n].reshape(-1) for n in names]).div_(world_size)
        work = flat.to(_comm_device(group))
        torch_dist.all_reduce(work, torch_dist.ReduceOp.SUM, group)
        pieces = torch.split(work.to(flat.device), [grads[n].numel() for n in names])
        averaged.update((n, p.view_as(grads[n])) for n, p in zip(names, pieces))
    return {n: averaged[n] for n in grads}


def all_gather(data: torch.Tensor, group: Any = None) -> list[torch.Tensor]:
    """Every process's ``data`` (same shape everywhere), in rank order; ``[data]`` in one process."""
    world_size = get_world_size(group)
    if world_size == 1:
        return [data]
    work = data.to(_comm_device(group))
    gathered = [torch.empty_like(work) for _ in range(world_size)]
    torch_dist.all_gather(gathered, work, group)
    return [t.to(data.device) for t in gathered]


def broadcast(data: torch.Tensor, src: int = 0, group: Any = None) -> None:
    """Overwrite ``data`` in place with rank ``src``'s; nothing in one process.

    A ``DTensor`` (an FSDP parameter) is one tensor across its mesh already: a sharded one is
    left alone (each rank holds a different part by design), a replicated one has its local
    copy broadcast.
    """
    if get_world_size(group) == 1:
        return
    if is_dtensor(data):
        if all(placement.is_replicate() for placement in data.placements):
            broadcast(data.to_local(), src, group)
        return
    work = data.to(_comm_device(group))
    torch_dist.broadcast(work, src, group)
    if work is not data:
        data.copy_(work)


def broadcast_object_list(data: list[Any], src: int = 0, group: Any = None) -> None:
    """Overwrite the items of ``data`` in place with rank ``src``'s (picklable objects)."""
    if get_world_size(group) > 1:
        torch_dist.broadcast_object_list(data, src, group)


def _object_group(device: str) -> Any:
    """The group for object collectives: the default one, or a gloo one to keep data on the CPU."""
    if device == "cpu" and torch_dist.get_backend() == torch_dist.Backend.NCCL:
        if not _CPU_GROUP:
            _CPU_GROUP.append(torch_dist.new_group(backend="gloo"))
        return _CPU_GROUP[0]
    return None


def all_gather_object(data: Any, group: Any = None) -> list[Any]:
    """Every process's picklable ``data``, in rank order; ``[data]`` in one process."""
    world_size = get_world_size(group)
    if world_size == 1:
        return [data]
    gathered: list[Any] = [None] * world_size
    torch_dist.all_gather_object(gathered, data, group)
    return gathered


def collect_results(results: list[Any], size: int, device: str = "cpu") -> list[Any] | None:
    """Gather each rank's part of a result list into dataset order, on rank 0.

    Rank ``r`` holds the results of samples ``r, r + w, r + 2w, ...`` (how :class:`DefaultSampler`
    shards), so the parts are interleaved and cut to ``size``, dropping the samples that padding
    repeated. In one process that is ``results[:size]``.

    Args:
        results: this rank's results in its sampling order.
        size: the dataset's length.
        device: ``'cpu'`` (gather through the CPU) or ``'gpu'`` (through the default backend).

    Returns:
        The ordered list on rank 0, ``None`` on other ranks.

    Raises:
        ValueError: ``device`` is neither ``'cpu'`` nor ``'gpu'``.
    """
    if device not in ("cpu", "gpu"):
        raise ValueError(f"collect_results: `device` must be 'cpu' or 'gpu', got {device!r}")
    if get_world_size() == 1:
        return list(results[:size])
    parts = all_gather_object(list(results), _object_group(device))
    if get_rank() != 0:
        return None
    ordered: list[Any] = []
    longest = max(len(part) for part in parts)
    for i in range(longest):
        ordered.extend(part[i] for part in parts if i < len(part))
    return ordered[:size]


def sync_random_seed(group: Any = None) -> int:
    """A random seed drawn on rank 0 and shared by every process."""
    seed = np.random.randint(2**31)
    if get_world_size(group) == 1:
        return int(seed)
    box = [int(seed)]
    broadcast_object_list(box, 0, group)
    return int(box[0])


def init_dist(launcher: str, backend: str = "nccl", **kwargs: Any) -> None:
    """Initialise the default process group from a launcher's environment.

    ``launcher='pytorch'`` reads torchrun's ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``MASTER_ADDR`` and ``MASTER_PORT``; ``'slurm'`` and ``'mpi'`` read what ``srun`` and
    ``mpirun`` set and export it as those variables first (:mod:`fengine.launch_env`, MMEngine's
    rules). On CUDA machines device ``LOCAL_RANK`` is selected first. NCCL is replaced by gloo
    where CUDA is unavailable. Does nothing if a group already exists.

    Args:
        launcher: ``'pytorch'`` (torchrun), ``'slurm'`` (srun) or ``'mpi'`` (Open MPI's mpirun).
        backend: ``'nccl'`` or ``'gloo'``.
        **kwargs: passed to ``torch.distributed.init_process_group`` (e.g. ``timeout`` in
            seconds or as a ``timedelta``).

    Raises:
        ValueError: an unsupported launcher.
        KeyError: a launcher variable is missing or malformed
            (:class:`~fengine.launch_env.LauncherEnvironmentError`, naming it).
    """
    if is_distributed():
        return
    found = torchrun_variables(launcher, os.environ)
    os.environ.update(found)
    if torch.cuda.is_available():
        torch.cuda.set_device(int(found["LOCAL_RANK"]))
    elif backend == "nccl":
        backend = "gloo"
    timeout = kwargs.pop("timeout", None)
    if isinstance(timeout, (int, float)):
        timeout = timedelta(seconds=timeout)
    if timeout is not None:
        kwargs["timeout"] = timeout
    torch_dist.init_process_group(
        backend=backend, rank=int(found["RANK"]), world_size=int(found["WORLD_SIZE"]), **kwargs
    )
