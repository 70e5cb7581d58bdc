"""Sharded checkpoints: a ``torch.distributed.checkpoint`` (DCP) directory written by every rank.

DCP is imported by the functions that write or read such a directory, so importing this module
(every run does) costs nothing a run without sharding does not use.

A run whose model is sharded by ``fully_shard`` (FSDP2) saves ``work_dir/epoch_N/`` (the
checkpoint hook's file name without ``.pth``) instead of one file:

* the DCP files (``.metadata`` and one ``__R_0.distcp`` per rank), written by all ranks in
  parallel: ``model`` (the checkpoint's ``state_dict``, each rank its own shards; with EMAHook
  the average, MMEngine's layout), ``optimizer`` (its state by parameter name, as
  ``torch.distributed.checkpoint.state_dict.get_optimizer_state_dict`` gives it) and ``shards``
  (every other sharded tensor of the checkpoint: EMAHook's ``ema_state_dict`` and state, the
  gradients of an unfinished accumulation group; see :mod:`fengine.runner.shard_refs`);
* :data:`META_FILE`: the rest of an ordinary fengine checkpoint (``meta`` counters, message hub,
  schedulers, hook states, generators, data position, a :class:`~fengine.runner.shard_refs.ShardRef`
  where a shard was; the record's tensor fields ``params``, ``buffers`` and ``opt_state`` are the
  DCP data), written by rank 0 like a ``.pth``;
* the folder marker of :mod:`fengine.runner.file_removal`, so ``max_keep_ckpts`` may delete it.

The directory is assembled under a temporary name beside it and renamed into place only when
every rank has finished, so a crash mid-save leaves the previous checkpoint the newest complete
one. Reading (:func:`read_checkpoint_or_directory`) loads the DCP data into the *current*
model's layout: DCP reshards, so a directory written by 2 ranks resumes on 1, 2 or 4 processes,
sharded or not; the result is an ordinary checkpoint dict whose ``state_dict``, ``optimizer``
and shards (the EMA average, ...) fit this run.
"""

from __future__ import annotations

import os
import pickle
import shutil
from typing import Any

import torch
from torch import nn

from fengine import dist
from fengine.core.plain import UntrustedCheckpointError, from_plain
from fengine.core.sharded_step import is_fully_sharded
from fengine.runner.checkpoint import (
    CheckpointError,
    find_latest_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from fengine.runner.file_removal import CHECKPOINT_MARKER, marker_content
from fengine.runner.shard_refs import (
    SHARDS,
    empty_like_stored,
    gather_shards,
    lift_shards,
    refs_in,
    resolve_refs,
)
from fengine.utils.fileio import atomic_write

__all__ = [
    "META_FILE",
    "gather_full_weights",
    "is_fully_sharded",
    "latest_sharded_checkpoint",
    "read_checkpoint_or_directory",
    "save_sharded_checkpoint",
    "sharded_directory",
]

#: The file of a sharded checkpoint directory that holds everything but the tensors.
META_FILE = "fengine.pth"
_DCP_METADATA = ".metadata"  # what torch.distributed.checkpoint writes last


def sharded_directory(path: str) -> str:
    """The directory a sharded save of checkpoint file ``path`` writes: ``epoch_1.pth`` → ``epoch_1``."""
    return path[: -len(".pth")] if path.endswith(".pth") else path


def latest_sharded_checkpoint(work_dir: str) -> str | None:
    """The sharded checkpoint directory ``work_dir/last_checkpoint`` names, if it names one inside ``work_dir``.

    Anything else (a file, a folder without :data:`META_FILE`) is left to the usual search for
    the newest intact checkpoint file.
    """
    named = find_latest_checkpoint(work_dir)
    if named is None or not os.path.isfile(os.path.join(named, META_FILE)):
        return None
    real, root = os.path.realpath(named), os.path.realpath(work_dir)
    return named if real != root and os.path.commonpath((real, root)) == root else None


def save_sharded_checkpoint(
    path: str, model: nn.Module, optimizer: Any, checkpoint: dict[str, Any], work_dir: str
) -> str:
    """Write a sharded checkpoint directory (every rank calls this; it is a collective).

    Args:
        path: the checkpoint's file name (``.../epoch_1.pth``); the directory drops ``.pth``.
        model: the sharded model.
        optimizer: its ``torch.optim`` optimizer, or ``None`` to save the weights alone.
        checkpoint: this rank's checkpoint dict without ``optimizer`` and the record's tensor
            fields: its ``state_dict`` (as hooks left it: with EMAHook, the average, MMEngine's
            layout) is the DCP ``model``, its other ``DTensor`` shards go to the DCP ``shards``
            (:func:`~fengine.runner.shard_refs.lift_shards`), the rest to :data:`META_FILE`
            (written by rank 0).
        work_dir: the run's work dir (for the folder marker).

    Returns:
        The directory, published complete.

    Raises:
        CheckpointError: on every rank, when the ranks hold different numbers of shards,
            before anything is written.
    """
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )
    from torch.distributed.checkpoint.state_dict_saver import save as dcp_save

    directory = sharded_directory(path)
    weights = checkpoint.get("state_dict")
    if weights is None:
        weights = get_model_state_dict(model)
    rest, shards = lift_shards({k: v for k, v in checkpoint.items() if k != "state_dict"}, weights, directory)
    parent, name = os.path.split(directory)
    staging = os.path.join(parent, f".{name}.partial")
    rank = dist.get_rank()
    if rank == 0:
        shutil.rmtree(staging, ignore_errors=True)  # what a crashed save left
        os.makedirs(staging)
    dist.barrier()
    tensors: dict[str, Any] = {"model": dict(weights)}
    if shards:
        tensors[SHARDS] = shards
    if optimizer is not None:
        tensors["optimizer"] = get_optimizer_state_dict(model, optimizer)
    dcp_save(tensors, checkpoint_id=staging)
    if rank == 0:
        save_checkpoint(rest, os.path.join(staging, META_FILE))
        atomic_write(os.path.join(staging, CHECKPOINT_MARKER), lambda h: h.write(marker_content(work_dir)))
    dist.barrier()
    if rank == 0:
        _publish(staging, directory)
    dist.barrier()
    return directory


def gather_full_weights(checkpoint: dict[str, Any], path: str) -> dict[str, Any]:
    """Rank 0's ``checkpoint`` with every shard gathered whole (every rank calls it).

    For ``CheckpointHook(save_format='full')``: one ordinary ``.pth`` that
    ``torch.load(weights_only=True)`` and a one-process ``Runner(load_from=...)`` read, EMAHook's
    average included. The optimizer state is left out (a sharded run's is sharded by parameter
    name): resume from the sharded directories.
    """
    checkpoint.pop("optimizer", None)
    if "opt_state" in checkpoint:
        checkpoint["opt_state"] = None
    return gather_shards(checkpoint, path)


def _publish(staging: str, directory: str) -> None:
    """Rename the finished ``staging`` folder to ``directory``, replacing an older one."""
    retired = None
    if os.path.lexists(directory):
        retired = f"{staging}.old"
        shutil.rmtree(retired, ignore_errors=True)
        os.replace(directory, retired)
    os.replace(staging, directory)
    descriptor = os.open(os.path.dirname(directory) or ".", os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)


_METADATA_GLOBALS = {
    "torch.distributed.checkpoint.metadata": None,  # any of DCP's metadata records
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},
    "pathlib": {"PosixPath", "PurePosixPath", "WindowsPath", "PureWindowsPath"},
    "torch": {"Size"},
}


class _MetadataUnpickler(pickle.Unpickler):
    """Unpickles DCP's ``.metadata`` building only DCP's records, ``torch.Size`` and dtypes."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _METADATA_GLOBALS.get(module, set())
        if module == "torch" and isinstance(getattr(torch, name, None), torch.dtype):
            allowed = {name}
        if allowed is not None and name not in allowed:
            raise UntrustedCheckpointError(
                "DCP metadata may hold only torch.distributed.checkpoint records", f"{module}.{name}",
                _DCP_METADATA, self.source,
            )
        return super().find_class(module, name)

    source = ""


def _check_metadata(path: str) -> None:
    """Refuse a ``.metadata`` (which DCP reads with plain ``pickle``) that would build anything else."""
    with open(path, "rb") as handle:
        unpickler = _MetadataUnpickler(handle)
        unpickler.source = path
        unpickler.load()


def read_checkpoint_or_directory(
    path: str, map_location: Any, model: nn.Module, optimizer: Any = None
) -> dict[str, Any]:
    """Read a checkpoint file, or a sharded checkpoint directory into this run's layout.

    For a directory, the DCP data is loaded into tensors shaped like ``model``'s state (shards
    for a sharded model, whole tensors for a plain one), and, when ``optimizer`` is given and
    the directory holds an optimizer state, into ``optimizer`` itself; the returned dict is
    :data:`META_FILE`'s with ``state_dict`` (those tensors) and ``optimizer``
    (``optimizer.state_dict()``) added, and its other shards (the EMA average, accumulated
    gradients) loaded where it refers to them, sharded over the model's mesh (dimension 0, as
    FSDP2 shards a parameter) or whole: it is applied like a file's.

    Args:
        path: a ``.pth`` file or a sharded checkpoint directory.
        map_location: as ``torch.load``'s for a file; for a directory read by an unsharded
            model, the device of its other shards.
        model: the unwrapped model of this run.
        optimizer: the optimizer wrapper (or optimizer) to restore, or ``None`` for weights only.

    Returns:
        The checkpoint dict.

    DCP reads its ``.metadata`` with plain ``pickle``; it is checked first with an unpickler
    that builds DCP's own records only, so a crafted directory cannot run code.

    Raises:
        CheckpointError: a directory missing DCP's ``.metadata`` or :data:`META_FILE` (an
            incomplete copy), or one whose tensors do not fit the model.
        UntrustedCheckpointError: ``.metadata`` or :data:`META_FILE` names anything else.
    """
    if not os.path.isdir(path):
        return read_checkpoint(path, map_location=map_location)
    from torch.distributed.checkpoint.filesystem import FileSystemReader
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
        set_optimizer_state_dict,
    )
    from torch.distributed.checkpoint.state_dict_loader import load as dcp_load

    missing = [f for f in (_DCP_METADATA, META_FILE) if not os.path.isfile(os.path.join(path, f))]
    if missing:
        raise CheckpointError(
            f"{path!r} is not a complete sharded checkpoint: it lacks {missing} (a directory "
            "written by torch.distributed.checkpoint holds '.metadata', and fengine's holds "
            f"{META_FILE!r} beside it)"
        )
    _check_metadata(os.path.join(path, _DCP_METADATA))
    source = os.path.join(path, META_FILE)
    checkpoint = read_checkpoint(source, map_location="cpu", decode=False)
    tensors: dict[str, Any] = {"model": get_model_state_dict(model)}
    inner = getattr(optimizer, "optimizer", optimizer)
    stored = FileSystemReader(path).read_metadata().state_dict_metadata
    if inner is not None and any(key.startswith("optimizer.") for key in stored):
        tensors["optimizer"] = get_optimizer_state_dict(model, inner)
    shards = {ref.name for ref in refs_in(checkpoint, source) if ref.section == SHARDS}
    if shards:
        tensors[SHARDS] = _shard_targets(path, stored, sorted(shards), model, map_location)
    try:
        dcp_load(tensors, checkpoint_id=path, no_dist=not dist.is_distributed())
    except Exception as error:  # DCP's own errors: missing keys, other shapes
        raise CheckpointError(f"{path!r} does not fit {type(model).__name__}: {error}") from error
    checkpoint = dict(from_plain(resolve_refs(checkpoint, tensors, source), source=source))
    checkpoint["state_dict"] = tensors["model"]
    if "optimizer" in tensors:
        set_optimizer_state_dict(model, inner, tensors["optimizer"])
        checkpoint["optimizer"] = optimizer.state_dict()
    return checkpoint


def _shard_targets(
    path: str, stored: dict[str, Any], names: list[str], model: nn.Module, map_location: Any
) -> dict[str, torch.Tensor]:
    """Tensors to load the ``shards`` section into: sharded like ``model``'s parameters, or whole."""
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    like = next(iter(model.parameters()), None)
    device = map_location if isinstance(map_location, str | torch.device) else "cpu"
    targets = {}
    for name in names:
        meta = stored.get(f"{SHARDS}.{name}")
        if not isinstance(meta, TensorStorageMetadata):
            raise CheckpointError(
                f"{path!r} is damaged: {META_FILE} refers to the sharded tensor {SHARDS}.{name}, "
                "which its DCP data does not hold"
            )
        targets[name] = empty_like_stored(meta.size, meta.properties.dtype, like, device)
    return targets
