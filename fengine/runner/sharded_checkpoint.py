"""Sharded checkpoints: a ``torch.distributed.checkpoint`` (DCP) directory written by every rank.

A run whose model is sharded by ``fully_shard`` (FSDP2) saves ``work_dir/epoch_N/`` (the
checkpoint hook's file name without ``.pth``) instead of one file:

* the DCP files (``.metadata`` and one ``__R_0.distcp`` per rank): ``model`` (the parameters and
  buffers, each rank its own shards) and ``optimizer`` (its state by parameter name), as
  ``torch.distributed.checkpoint.state_dict.get_state_dict`` gives them, written by all ranks in
  parallel;
* :data:`META_FILE`: the rest of an ordinary fengine checkpoint (``meta`` counters, message hub,
  schedulers, hook states, generators, data position; the record's tensor fields ``params``,
  ``buffers`` and ``opt_state`` are the DCP data), written by rank 0 like a ``.pth``;
* the folder marker of :mod:`fengine.runner.file_removal`, so ``max_keep_ckpts`` may delete it.

The directory is assembled under a temporary name beside it and renamed into place only when
every rank has finished, so a crash mid-save leaves the previous checkpoint the newest complete
one. Reading (:func:`read_checkpoint_or_directory`) loads the DCP data into the *current*
model's layout: DCP reshards, so a directory written by 2 ranks resumes on 1, 2 or 4 processes,
sharded or not; the result is an ordinary checkpoint dict whose ``state_dict`` and ``optimizer``
fit this run.
"""

from __future__ import annotations

import os
import pickle
import shutil
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.filesystem import FileSystemReader
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.checkpoint.state_dict_loader import load as dcp_load
from torch.distributed.checkpoint.state_dict_saver import save as dcp_save
from torch.distributed.tensor import DTensor

from fengine import dist
from fengine.core.plain import UntrustedCheckpointError
from fengine.core.sharded_step import is_fully_sharded
from fengine.runner.checkpoint import (
    CheckpointError,
    find_latest_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from fengine.runner.file_removal import CHECKPOINT_MARKER, marker_content
from fengine.utils.fileio import atomic_write

__all__ = [
    "META_FILE",
    "gather_full_weights",
    "is_fully_sharded",
    "latest_sharded_checkpoint",
    "read_checkpoint_or_directory",
    "refuse_local_shards",
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
    path: str, model: nn.Module, optimizer: Any, rest: dict[str, Any] | None, work_dir: str
) -> str:
    """Write a sharded checkpoint directory (every rank calls this; it is a collective).

    Args:
        path: the checkpoint's file name (``.../epoch_1.pth``); the directory drops ``.pth``.
        model: the sharded model.
        optimizer: its ``torch.optim`` optimizer, or ``None`` to save the weights alone.
        rest: on rank 0, the checkpoint dict without ``state_dict``/``optimizer``; ignored
            elsewhere.
        work_dir: the run's work dir (for the folder marker).

    Returns:
        The directory, published complete.

    Raises:
        CheckpointError: on every rank, when ``rest`` holds sharded tensors (an EMA average of
            a sharded model), before anything is written.
    """
    directory = sharded_directory(path)
    refuse_local_shards(rest or {}, directory)
    parent, name = os.path.split(directory)
    staging = os.path.join(parent, f".{name}.partial")
    rank = dist.get_rank()
    if rank == 0:
        shutil.rmtree(staging, ignore_errors=True)  # what a crashed save left
        os.makedirs(staging)
    dist.barrier()
    tensors: dict[str, Any] = {"model": get_model_state_dict(model)}
    if optimizer is not None:
        tensors["optimizer"] = get_optimizer_state_dict(model, optimizer)
    dcp_save(tensors, checkpoint_id=staging)
    if rank == 0:
        save_checkpoint(dict(rest or {}), os.path.join(staging, META_FILE))
        atomic_write(os.path.join(staging, CHECKPOINT_MARKER), lambda h: h.write(marker_content(work_dir)))
    dist.barrier()
    if rank == 0:
        _publish(staging, directory)
    dist.barrier()
    return directory


def refuse_local_shards(checkpoint: dict[str, Any], path: str) -> None:
    """Stop every rank when rank 0's part of a checkpoint holds ``DTensor`` shards (a collective).

    Only rank 0 assembles the non-tensor part of a checkpoint, so any shard in it would be rank
    0's alone (an EMA average of a sharded model is one).

    Raises:
        CheckpointError: on every rank, naming the first such entries, before anything is written.
    """
    found = [_dtensor_keys(checkpoint) if dist.get_rank() == 0 else []]
    dist.broadcast_object_list(found)  # every rank stops, or none
    if found[0]:
        raise CheckpointError(
            f"cannot save {path!r}: the checkpoint entries {found[0][:5]} hold sharded tensors "
            "that only the model and optimizer state may hold in a sharded checkpoint (EMAHook's "
            "average is not saved sharded yet: leave EMAHook out of FSDP runs)"
        )


def gather_full_weights(model: nn.Module, checkpoint: dict[str, Any]) -> None:
    """Put the sharded model's whole weights into rank 0's ``checkpoint`` (every rank calls it).

    For ``CheckpointHook(save_format='full')``: one ordinary ``.pth`` that
    ``torch.load(weights_only=True)`` and a one-process ``Runner(load_from=...)`` read. The
    optimizer state is left out (a sharded run's is keyed by parameter name, not in
    ``torch.optim``'s layout): resume from the sharded directories.
    """
    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    weights = get_model_state_dict(model, options=options)
    if dist.get_rank() == 0:
        checkpoint["state_dict"] = weights
        checkpoint.pop("optimizer", None)
        for field in ("params", "buffers"):  # the record's tensors: the same gathered ones
            if field in checkpoint:
                checkpoint[field] = {name: weights[name] for name in checkpoint[field]}
        if "opt_state" in checkpoint:
            checkpoint["opt_state"] = None


def _dtensor_keys(value: Any, where: str = "") -> list[str]:
    """Key paths of the ``DTensor``s inside plain containers."""
    if isinstance(value, DTensor):
        return [where or "<top level>"]
    if isinstance(value, dict):
        return [k for key, item in value.items() for k in _dtensor_keys(item, f"{where}.{key}".lstrip("."))]
    if isinstance(value, list | tuple):
        return [k for i, item in enumerate(value) for k in _dtensor_keys(item, f"{where}[{i}]")]
    return []


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
    (``optimizer.state_dict()``) added, so it is applied like a file's.

    Args:
        path: a ``.pth`` file or a sharded checkpoint directory.
        map_location: as ``torch.load``'s (files only).
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
    missing = [f for f in (_DCP_METADATA, META_FILE) if not os.path.isfile(os.path.join(path, f))]
    if missing:
        raise CheckpointError(
            f"{path!r} is not a complete sharded checkpoint: it lacks {missing} (a directory "
            "written by torch.distributed.checkpoint holds '.metadata', and fengine's holds "
            f"{META_FILE!r} beside it)"
        )
    _check_metadata(os.path.join(path, _DCP_METADATA))
    checkpoint = read_checkpoint(os.path.join(path, META_FILE), map_location="cpu")
    tensors: dict[str, Any] = {"model": get_model_state_dict(model)}
    inner = getattr(optimizer, "optimizer", optimizer)
    stored = FileSystemReader(path).read_metadata().state_dict_metadata
    if inner is not None and any(key.startswith("optimizer.") for key in stored):
        tensors["optimizer"] = get_optimizer_state_dict(model, inner)
    try:
        dcp_load(tensors, checkpoint_id=path, no_dist=not dist.is_distributed())
    except Exception as error:  # DCP's own errors: missing keys, other shapes
        raise CheckpointError(f"{path!r} does not fit {type(model).__name__}: {error}") from error
    checkpoint["state_dict"] = tensors["model"]
    if "optimizer" in tensors:
        set_optimizer_state_dict(model, inner, tensors["optimizer"])
        checkpoint["optimizer"] = optimizer.state_dict()
    return checkpoint

