"""Checkpoint files: crash-safe writes, checksummed content, safe loading, weight application.

A checkpoint keeps MMEngine's top-level layout (``meta``, ``state_dict``, ``message_hub``,
``optimizer``, ``param_schedulers``, hooks' additions such as ``ema_state_dict``) and adds
fengine's keys for exact resume: ``hooks`` (every hook's state by name), ``rng`` (the global
generators) and ``data_position`` (where the data stream stood). ``meta['checksum']`` is a digest
of everything else, so damage is detected on load even when the file still unpickles.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import pickle
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch

from fengine.core import plain
from fengine.core.mmengine_pickle import SAFE_GLOBALS
from fengine.model.wrappers import is_model_wrapper
from fengine.utils.fileio import atomic_write

CHECKSUM_KEY = "checksum"
LAST_CHECKPOINT = "last_checkpoint"


class CheckpointError(ValueError):
    """A checkpoint file that is missing, unreadable, damaged or does not fit the model."""


_SCALARS = frozenset((bool, int, float, str, type(None)))


def _feed(digest: Any, value: Any) -> None:
    if isinstance(value, torch.Tensor):
        tensor = value.detach()
        digest.update(f"T{tensor.dtype}{tuple(tensor.shape)}".encode())
        if tensor.layout is not torch.strided or tensor.is_quantized:
            buffer = io.BytesIO()
            torch.save(tensor.cpu(), buffer)
            digest.update(buffer.getvalue())
        elif tensor.numel():
            digest.update(tensor.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    elif isinstance(value, Mapping):
        digest.update(f"D{len(value)}".encode())
        for key, item in value.items():
            digest.update(repr(key).encode())
            _feed(digest, item)
    elif isinstance(value, (list, tuple)):
        digest.update(f"{type(value).__name__[0]}{len(value)}".encode())
        if all(type(item) in _SCALARS for item in value):  # histories, RNG states: hash at once
            digest.update(repr(value).encode())
            return
        for item in value:
            _feed(digest, item)
    elif value is None or isinstance(value, (bool, int, float, str, bytes)):
        digest.update(f"{type(value).__name__}:{value!r}".encode())
    elif isinstance(value, np.ndarray):
        digest.update(f"A{value.dtype}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    else:
        digest.update(pickle.dumps(value))


def content_digest(checkpoint: Mapping[str, Any]) -> str:
    """SHA-256 of a checkpoint's content, leaving out ``meta['checksum']`` itself.

    Structure (keys in order, container kinds and lengths), scalars and every tensor's dtype,
    shape and bytes are hashed, so any change to a stored number changes the digest.

    Args:
        checkpoint: the checkpoint dict.

    Returns:
        ``'sha256:<hex digest>'``.
    """
    digest = hashlib.sha256()
    meta = checkpoint.get("meta")
    if isinstance(meta, Mapping) and CHECKSUM_KEY in meta:
        checkpoint = {**checkpoint, "meta": {k: v for k, v in meta.items() if k != CHECKSUM_KEY}}
    _feed(digest, checkpoint)
    return f"sha256:{digest.hexdigest()}"


def save_checkpoint(checkpoint: dict[str, Any], filename: str) -> None:
    """Stamp ``meta['checksum']`` and write ``checkpoint`` to ``filename`` atomically.

    The file appears complete or not at all (temporary file, fsync, rename, directory fsync);
    the checkpoint is streamed into the temporary file, never held in memory as bytes.

    Args:
        checkpoint: the checkpoint dict (its ``meta`` dict receives the checksum).
        filename: the destination file.
    """
    meta = checkpoint.setdefault("meta", {})
    meta.pop(CHECKSUM_KEY, None)
    meta[CHECKSUM_KEY] = content_digest(checkpoint)
    atomic_write(filename, lambda handle: torch.save(checkpoint, handle))


def read_checkpoint(path: str, map_location: Any = "cpu", decode: bool = True) -> dict[str, Any]:
    """Load a checkpoint file, verify its checksum (when it has one), then rebuild its records.

    Reading never runs code: ``torch.load(weights_only=True)`` through
    :func:`fengine.core.plain.load` (MMEngine's files included: their message hub buffers become
    plain history dicts), and only registered records and enums are rebuilt.

    Args:
        path: the file.
        map_location: as ``torch.load``'s.
        decode: rebuild records and enums (``False``: the verified plain data, to copy it).

    Returns:
        The checkpoint dict (a file holding a bare state dict is returned as is).

    Raises:
        CheckpointError: naming the file and what is wrong: missing, empty, truncated, not a
            checkpoint, holding pickled objects (named), or failing its checksum.
        UntrustedCheckpointError: the content names a type that is not registered (nothing is
            built or called).
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint file {path!r} does not exist")
    try:
        checkpoint = plain.load(path, map_location=map_location, decode=False)
    except Exception as error:
        raise CheckpointError(f"cannot read checkpoint {path!r}: {_diagnose(path, error)}") from error
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"checkpoint {path!r} holds a {type(checkpoint).__name__}, not a dict")
    meta = checkpoint.get("meta")
    expected = meta.get(CHECKSUM_KEY) if isinstance(meta, Mapping) else None
    if expected is not None:
        actual = content_digest(checkpoint)
        if actual != expected:
            raise CheckpointError(
                f"checkpoint {path!r} is damaged: its content digest {actual} differs from the "
                f"stored {expected}"
            )
    decoded: dict[str, Any] = plain.from_plain(checkpoint, source=path) if decode else checkpoint
    return decoded


def _diagnose(path: str, error: Exception) -> str:
    size = os.path.getsize(path)
    with open(path, "rb") as handle:
        head = handle.read(4)
    first = f"{type(error).__name__}: {(str(error).strip().splitlines() or [''])[0]}"
    if size == 0:
        return "the file is empty (0 bytes): an interrupted write or copy"
    if head.startswith(b"PK") and not zipfile.is_zipfile(path):
        return f"the file is truncated or corrupted ({size} bytes; its zip archive has no end record)"
    if not head.startswith((b"PK", b"\x80")):
        return f"it is not a torch checkpoint (it starts with {head!r}); {first}"
    if "weights_only" in str(error).lower().replace(" ", "_"):
        try:
            refused = torch.serialization.get_unsafe_globals_in_checkpoint(path)
        except Exception:
            refused = []
        allowed = {name for _, name in SAFE_GLOBALS}
        names = sorted(n for n in refused if n not in allowed)
        return (
            f"it holds pickled objects ({', '.join(names) or 'unsupported pickle data'}), which a "
            "checkpoint may not hold: loading one could run any code, so it is refused; save "
            "tensors, plain containers and registered records instead"
        )
    return f"the file is damaged ({size} bytes): {first}"


def write_last_checkpoint(work_dir: str, path: str) -> None:
    """Atomically make ``work_dir/last_checkpoint`` name ``path``."""
    atomic_write(os.path.join(work_dir, LAST_CHECKPOINT), path.encode())


def find_latest_checkpoint(work_dir: str) -> str | None:
    """The path named by ``work_dir/last_checkpoint``, or ``None`` when that file is absent."""
    record = os.path.join(work_dir, LAST_CHECKPOINT)
    if not os.path.isfile(record):
        return None
    with open(record, encoding="utf-8") as handle:
        path = handle.read().strip()
    return path or None


def revise_keys_of(state_dict: Mapping[str, Any], rules: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Apply each ``(pattern, replacement)`` regex to every key, in order (``re.sub``)."""
    revised = dict(state_dict)
    for pattern, replacement in rules:
        revised = {re.sub(pattern, replacement, key): value for key, value in revised.items()}
    return revised


def apply_state_dict(
    module: torch.nn.Module,
    state_dict: Mapping[str, Any],
    strict: bool,
    source: str,
    warn: Callable[[str], None],
    strict_shapes: bool = False,
) -> None:
    """Copy ``state_dict`` into ``module``; mismatches raise when ``strict``, else are reported.

    Entries whose shape differs from the module's are never copied; with ``strict=False`` they
    are reported with the missing and unexpected keys, with ``strict=True`` any of the three
    raises. ``strict_shapes`` raises for shape mismatches alone (a resumed run cannot continue
    with parameters of another shape), before anything is copied.

    Args:
        module: the (unwrapped) model.
        state_dict: the tensors to load.
        strict: whether every key must match exactly.
        source: the checkpoint's name, for messages.
        warn: receives the mismatch report when not strict.
        strict_shapes: raise for shape mismatches even when not ``strict``.

    Raises:
        CheckpointError: ``strict`` and keys or shapes do not match, or ``strict_shapes`` and
            shapes do not match (all of them listed).
    """
    own = module.state_dict()
    mismatched = [
        f"{key}: checkpoint {tuple(value.shape)} vs model {tuple(own[key].shape)}"
        for key, value in state_dict.items()
        if key in own and isinstance(value, torch.Tensor) and value.shape != own[key].shape
    ]
    if mismatched and strict_shapes:
        raise CheckpointError(
            f"{source!r} does not fit {type(module).__name__}: parameter shapes differ: "
            + "; ".join(mismatched)
        )
    skipped = {line.split(":")[0] for line in mismatched}
    result = module.load_state_dict({k: v for k, v in state_dict.items() if k not in skipped}, strict=False)
    missing = [k for k in result.missing_keys if k not in skipped]
    problems = []
    if mismatched:
        problems.append("shape mismatch: " + "; ".join(mismatched))
    if result.unexpected_keys:
        problems.append(f"unexpected keys in the checkpoint: {', '.join(result.unexpected_keys)}")
    if missing:
        problems.append(f"missing keys in the checkpoint: {', '.join(missing)}")
    if not problems:
        return
    message = f"loading {source!r} into {type(module).__name__}: " + "\n".join(problems)
    if strict:
        raise CheckpointError(message)
    warn(message)


def load_checkpoint(
    model: torch.nn.Module,
    filename: str,
    map_location: Any = None,
    strict: bool = False,
    logger: logging.Logger | None = None,
    revise_keys: Iterable[tuple[str, str]] = ((r"^module\.", ""),),
) -> dict[str, Any]:
    """Load the weights of checkpoint ``filename`` into ``model`` (MMEngine's function).

    Args:
        model: the module (a wrapper's ``.module`` is used when it has one).
        filename: the checkpoint file.
        map_location: as ``torch.load``'s.
        strict: whether keys and shapes must match exactly.
        logger: receives the mismatch report when not strict (default: this module's logger).
        revise_keys: ``(pattern, replacement)`` regexes applied to the weight names.

    Returns:
        The loaded checkpoint dict.

    Raises:
        CheckpointError: unreadable or damaged file, or a strict mismatch.
        UntrustedCheckpointError: the file names a type that is not registered.
    """
    checkpoint = read_checkpoint(filename, map_location=map_location)
    state_dict = checkpoint.get("state_dict", checkpoint)
    target: torch.nn.Module = model.module if is_model_wrapper(model) else model  # type: ignore[assignment]
    report = (logger or logging.getLogger(__name__)).warning
    apply_state_dict(target, revise_keys_of(state_dict, revise_keys), strict, filename, report)
    return checkpoint


__all__ = [
    "CHECKSUM_KEY",
    "LAST_CHECKPOINT",
    "CheckpointError",
    "apply_state_dict",
    "content_digest",
    "find_latest_checkpoint",
    "load_checkpoint",
    "read_checkpoint",
    "revise_keys_of",
    "save_checkpoint",
    "write_last_checkpoint",
]
