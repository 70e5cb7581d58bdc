"""The runner's distributed set-up: the process group's lifetime and SyncBatchNorm conversion.

``launcher='pytorch'`` means the process was started by ``torchrun`` (or anything that sets
the same environment: ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
``MASTER_PORT``); ``'slurm'`` by ``srun`` and ``'mpi'`` by Open MPI's ``mpirun``, whose
variables :mod:`fengine.launch_env` reads. The first runner of the process initialises the default group from it; a
group that already exists (made by the user, or by an earlier runner) is used as it is. A group
a runner initialised is destroyed when the interpreter exits (after every runner of the process
is done with it); a group the user made is left to the user.
"""

from __future__ import annotations

import atexit
from collections.abc import Mapping
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import nn

from fengine import dist
from fengine.launch_env import LAUNCHERS
from fengine.model.sync_batchnorm import convert_sync_batchnorm
from fengine.model.wrappers import MMFullyShardedDataParallel
from fengine.registry import MODEL_WRAPPERS

_SYNC_BN = ("torch",)


def check_launch_settings(launcher: str, env_cfg: Mapping[str, Any] | None, sync_bn: Any) -> None:
    """Check the launcher, ``env_cfg['dist_cfg']`` and ``cfg.sync_bn`` before anything is built.

    Args:
        launcher: the runner's ``launcher``.
        env_cfg: the runner's ``env_cfg`` (``None`` = defaults).
        sync_bn: the config's ``sync_bn`` (``None`` = keep BatchNorm layers).

    Raises:
        ValueError: an unknown launcher or ``sync_bn`` value, or ``sync_bn='torch'`` for a
            distributed run without CUDA (DDP accepts ``torch.nn.SyncBatchNorm`` only in GPU
            modules).
        TypeError: ``env_cfg`` or its ``dist_cfg`` is not a mapping.
    """
    if launcher not in LAUNCHERS:
        raise ValueError(
            f"launcher must be one of {list(LAUNCHERS)} ('pytorch': torchrun, 'slurm': srun, "
            f"'mpi': Open MPI's mpirun), got {launcher!r}"
        )
    if env_cfg is not None and not isinstance(env_cfg, Mapping):
        raise TypeError(
            f"env_cfg must be a dict such as dict(dist_cfg=dict(backend='gloo')), got {env_cfg!r}"
        )
    dist_cfg = (env_cfg or {}).get("dist_cfg", {})
    if not isinstance(dist_cfg, Mapping):
        raise TypeError(
            f"env_cfg['dist_cfg'] must be a dict of init_process_group arguments, got {dist_cfg!r}"
        )
    if sync_bn is None:
        return
    if sync_bn not in _SYNC_BN:
        raise ValueError(
            f"cfg.sync_bn should be 'torch' (torch.nn.SyncBatchNorm) or None, but got {sync_bn!r}"
        )
    if launcher != "none" and not torch.cuda.is_available():
        raise ValueError(
            f"cfg.sync_bn={sync_bn!r} needs CUDA: torch's DistributedDataParallel and SyncBatchNorm "
            "only synchronise BatchNorm statistics of GPU modules. Leave sync_bn unset on CPU "
            "(SyncBuffersHook still averages the running statistics across ranks)"
        )


def setup_process_group(launcher: str, env_cfg: Mapping[str, Any] | None) -> bool:
    """Initialise ``torch.distributed`` for ``launcher`` unless a default group exists.

    ``env_cfg['dist_cfg']`` goes to :func:`fengine.dist.init_dist` (``backend``: ``'nccl'`` by
    default, gloo where there is no CUDA; ``timeout`` in seconds; other
    ``init_process_group`` arguments). On CUDA machines the device ``LOCAL_RANK`` is selected
    first. A group created here is destroyed at interpreter exit.

    Args:
        launcher: ``'none'`` (one process: nothing happens), ``'pytorch'``, ``'slurm'`` or
            ``'mpi'``.
        env_cfg: the runner's ``env_cfg``.

    Returns:
        Whether this call created the default group.

    Raises:
        KeyError: a launcher's environment variable is missing (naming it).
    """
    if launcher == "none" or dist.is_distributed():
        return False
    dist.init_dist(launcher, **dict((env_cfg or {}).get("dist_cfg", {})))
    atexit.register(destroy_process_group)
    return True


def destroy_process_group() -> None:
    """Destroy the default process group if one exists (registered at exit by its creator)."""
    if dist.is_distributed():
        torch_dist.destroy_process_group()


def refuse_sharding_in_one_process(model_wrapper_cfg: Mapping[str, Any] | None) -> None:
    """Fail when a one-process run (``launcher='none'``) is asked to shard the model.

    Other wrappers are ignored in one process, as in MMEngine; sharding over one process would
    silently not be what the config says.

    Raises:
        ValueError: ``model_wrapper_cfg`` names ``(MM)FullyShardedDataParallel``.
    """
    kind = (model_wrapper_cfg or {}).get("type")
    found = MODEL_WRAPPERS.get(kind) if isinstance(kind, str) else kind
    if found is MMFullyShardedDataParallel:
        raise ValueError(
            f"model_wrapper_cfg type={kind!r} shards the model across processes, but "
            "launcher='none' runs one: start the ranks with torchrun and launcher='pytorch' "
            "(or srun and 'slurm', mpirun and 'mpi')"
        )


def apply_sync_bn(model: nn.Module, sync_bn: str | None) -> nn.Module:
    """Replace the model's BatchNorm layers by ``torch.nn.SyncBatchNorm`` when ``sync_bn`` is set.

    Args:
        model: the model, already on its device and not yet wrapped.
        sync_bn: the config's ``sync_bn`` (checked by :func:`check_launch_settings`).

    Returns:
        The converted model, or ``model`` when ``sync_bn`` is ``None``.
    """
    if sync_bn is None:
        return model
    return convert_sync_batchnorm(model, implementation=sync_bn)
