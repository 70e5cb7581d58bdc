"""Effects: what a hook wants done to the world, returned as data.

Handlers never touch files, loggers, clocks, models or other processes. They append these
records to ``RunState.effects``; after each dispatch the shell (``fengine.runner``) carries them
out in order. The set is closed, so the shell's interpreter is exhaustive and a test can check
that a hook only emits known effects (:data:`KNOWN_EFFECTS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs


@attrs.frozen
class SaveCheckpoint:
    """Write a checkpoint of the whole run to ``path`` (atomically).

    ``meta`` is merged into the checkpoint's ``meta`` dict (e.g. ``epoch``/``iter``).
    ``update_last`` writes ``work_dir/last_checkpoint`` naming ``path`` afterwards.
    """

    path: str
    meta: Mapping[str, Any] = attrs.field(factory=dict)
    save_optimizer: bool = True
    save_param_scheduler: bool = True
    update_last: bool = True
    extra: Mapping[str, Any] = attrs.field(factory=dict)  # extra kwargs from the hook's config


@attrs.frozen
class PublishCheckpoint:
    """Copy checkpoint ``src`` keeping only ``keys``, named ``<stem>-<sha256[:8]>.pth``."""

    src: str
    keys: tuple[str, ...]


@attrs.frozen
class RemoveFile:
    """Delete a file or directory if it exists."""

    path: str


@attrs.frozen
class AddToCheckpoint:
    """During ``before_save_checkpoint``: set ``checkpoint[key] = value``."""

    key: str
    value: Any


@attrs.frozen
class LogText:
    """Write one line to the run's logger."""

    message: str
    level: int = 20  # logging.INFO


@attrs.frozen
class LogStep:
    """Format and emit a log line for ``mode`` from the message hub's history (LogProcessor).

    ``kind`` is ``'iter'`` (a line for batch ``batch_idx``) or ``'epoch'`` (an epoch summary).
    ``scalars`` says whether the train/val tag is also written to the scalar backends with
    ``step``.
    """

    mode: str
    kind: str
    batch_idx: int
    step: int = 0
    scalars: bool = True


@attrs.frozen
class UpdateScalars:
    """``message_hub.update_scalar(key, value)`` for each item (values: numbers or 1-element tensors)."""

    values: Mapping[str, Any]


@attrs.frozen
class UpdateInfo:
    """``message_hub.update_info(key, value)`` for each item; ``pop`` names keys to remove."""

    values: Mapping[str, Any] = attrs.field(factory=dict)
    pop: tuple[str, ...] = ()


@attrs.frozen
class RecordOptimizerScalars:
    """Write ``train/<key>`` scalars from ``optim_wrapper.get_lr()`` (and momentum) into the hub."""


@attrs.frozen
class StopTraining:
    """Ask the train loop to stop at its next check (MMEngine's ``stop_training``)."""

    reason: str


@attrs.frozen
class StepSchedulers:
    """Step the parameter schedulers whose ``by_epoch`` equals ``by_epoch``.

    With ``metrics`` given, only metric-driven ones (``ReduceOnPlateau``) step, with the metrics.
    """

    by_epoch: bool
    metrics: Mapping[str, Any] | None = None


@attrs.frozen
class SetSamplerEpoch:
    """Call ``set_epoch(epoch)`` on the train sampler (or batch sampler's sampler) that has it."""

    epoch: int


@attrs.frozen
class EmptyCache:
    """Empty the accelerator's cache where there is one; nothing on CPU."""


@attrs.frozen
class SyncBuffers:
    """All-reduce (mean) the model's buffers across ranks; nothing when not distributed."""


@attrs.frozen(eq=False)
class LoadWeights:
    """Copy ``tensors`` (names as in ``state_dict``) into the live model."""

    tensors: Mapping[str, Any]


@attrs.frozen
class ProfilerAction:
    """Drive the shell's ``torch.profiler`` session: ``'start'``, ``'step'`` or ``'export'``."""

    action: str
    options: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class ExportLogs:
    """Copy every file under ``src_dir`` whose name ends with one of ``suffixes`` to ``dst_dir``.

    Paths below ``src_dir`` are kept. With ``keep_local=False`` the local copies are deleted
    afterwards (closing the logger's file handlers first). LoggerHook's ``out_dir``.
    """

    src_dir: str
    dst_dir: str
    suffixes: tuple[str, ...]
    keep_local: bool = True


@attrs.frozen
class WriteTensorboard:
    """Write scalars to TensorBoard event files under the log dir (when installed).

    ``values`` are numbers or one-element tensors; the shell converts them only when it writes, so
    a run without TensorBoard never reads a device tensor back for it.
    """

    values: Mapping[str, Any]
    step: int


Effect = (
    SaveCheckpoint
    | PublishCheckpoint
    | RemoveFile
    | AddToCheckpoint
    | LogText
    | LogStep
    | UpdateScalars
    | UpdateInfo
    | RecordOptimizerScalars
    | StopTraining
    | StepSchedulers
    | SetSamplerEpoch
    | EmptyCache
    | SyncBuffers
    | LoadWeights
    | ProfilerAction
    | WriteTensorboard
    | ExportLogs
)

KNOWN_EFFECTS: tuple[type, ...] = (
    SaveCheckpoint,
    PublishCheckpoint,
    RemoveFile,
    AddToCheckpoint,
    LogText,
    LogStep,
    UpdateScalars,
    UpdateInfo,
    RecordOptimizerScalars,
    StopTraining,
    StepSchedulers,
    SetSamplerEpoch,
    EmptyCache,
    SyncBuffers,
    LoadWeights,
    ProfilerAction,
    WriteTensorboard,
    ExportLogs,
)
