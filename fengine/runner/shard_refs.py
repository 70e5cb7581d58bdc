"""The ``DTensor`` shards a sharded run's checkpoint holds besides the model and optimizer.

Under FSDP2 more than the model is sharded: EMAHook's average (its state, and MMEngine's
``ema_state_dict``), the gradients of an unfinished accumulation group, the source weights
stashed while validation runs on the average. Every rank collects the checkpoint, so each holds
its own shards of these at the same place of its own checkpoint dict. They are

* lifted out (:func:`lift_shards`) for a DCP directory: each is replaced by a :class:`ShardRef`
  naming where the DCP data holds it, and written by all ranks in parallel; a tensor met twice
  (the average in ``state_dict`` and in the hook's state) is stored once;
* or gathered whole on rank 0 (:func:`gather_shards`) for ``save_format='full'``.

Which entries are the same tensor is decided on rank 0 (whose shard of a non-empty tensor is
never empty) and shared, so every rank makes the same collective calls in the same order.
Reading puts the tensors back (:func:`resolve_refs`) in the reading run's layout.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs
import torch
from torch import Tensor

from fengine import dist
from fengine.core import plain
from fengine.core.tree import is_dtensor
from fengine.runner.checkpoint import CheckpointError

if TYPE_CHECKING:  # DTensor exists only once a sharded run has imported it
    from torch.distributed.tensor import DTensor

__all__ = ["SHARDS", "ShardRef", "empty_like_stored", "gather_shards", "lift_shards", "refs_in", "resolve_refs"]

#: The DCP section of a sharded checkpoint that holds the lifted tensors (beside ``model``).
SHARDS = "shards"
_SCALARS = (bool, int, float, complex, str, bytes, type(None))


@plain.register("checkpoint.ShardRef")
@attrs.frozen
class ShardRef:
    """Where a sharded checkpoint's DCP data holds a tensor of the checkpoint dict.

    Args:
        section: ``'model'`` (an entry of the saved ``state_dict``) or ``'shards'``.
        name: the entry's name in that section.
    """

    section: str
    name: str


def _mapped(value: Any, fn: Callable[[Any], Any | None]) -> Any:
    """``value`` with every item for which ``fn`` returns non-``None`` replaced by that result.

    Walks dicts, lists and tuples in order (the same order on every rank).
    """
    if isinstance(value, _SCALARS):
        return value
    found = fn(value)
    if found is not None:
        return found
    if isinstance(value, dict):
        return {k: _mapped(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_mapped(v, fn) for v in value]
    if isinstance(value, tuple):
        return tuple(_mapped(v, fn) for v in value)
    return value


def _dtensors(value: Any) -> list[DTensor]:
    found: list[DTensor] = []
    _mapped(value, lambda v: found.append(v) if is_dtensor(v) else None)
    return found


def _storage(tensor: DTensor) -> tuple[Any, ...] | None:
    local = tensor.to_local()
    if local.numel() == 0:
        return None
    return (local.untyped_storage().data_ptr(), local.storage_offset(), tuple(local.shape),
            local.stride(), local.dtype, tuple(tensor.shape), tuple(tensor.placements))  # fmt: skip


def _first_of_each(tensors: list[DTensor], what: str) -> list[int]:
    """For each tensor, the index of the first one holding the same data (decided on rank 0).

    Raises:
        CheckpointError: on every rank, when the ranks hold different numbers of shards.
    """
    plan: list[int] | None = None
    if dist.get_rank() == 0:
        seen: dict[tuple[Any, ...], int] = {}
        plan = []
        for index, tensor in enumerate(tensors):
            key = _storage(tensor)
            plan.append(index if key is None else seen.setdefault(key, index))
    answers = dist.all_gather_object((len(tensors), plan))
    counts = [count for count, _ in answers]
    if len(set(counts)) > 1:
        raise CheckpointError(
            f"cannot save {what!r}: the ranks' checkpoints hold different numbers of sharded "
            f"tensors ({counts} by rank); every rank must hold the same hook states"
        )
    first: list[int] = answers[0][1]
    return first


def lift_shards(
    rest: dict[str, Any], model: Mapping[str, Any], what: str
) -> tuple[dict[str, Any], dict[str, DTensor]]:
    """Replace every ``DTensor`` of ``rest`` by a :class:`ShardRef` (every rank calls it).

    Args:
        rest: this rank's checkpoint without its ``state_dict``.
        model: the ``state_dict`` the DCP data stores as ``model`` (the same tensor in ``rest``
            refers to it).
        what: the checkpoint's path, for messages.

    Returns:
        ``rest`` with references (in plain form), and the DCP ``shards`` section (name → shard).
    """
    names = [name for name, value in model.items() if is_dtensor(value)]
    held = _dtensors(rest)
    tensors = [*(model[name] for name in names), *held]
    first = _first_of_each(tensors, what)
    refs: list[ShardRef] = [ShardRef("model", name) for name in names]
    shards: dict[str, DTensor] = {}
    for index in range(len(names), len(tensors)):
        if first[index] != index:
            refs.append(refs[first[index]])
            continue
        refs.append(ShardRef(SHARDS, str(len(shards))))
        shards[refs[-1].name] = tensors[index]
    by_id = {id(t): plain.to_plain(ref) for t, ref in zip(held, refs[len(names):])}  # plain: a checkpoint is data
    lifted: dict[str, Any] = _mapped(rest, lambda v: by_id.get(id(v)) if is_dtensor(v) else None)
    return lifted, shards


def gather_shards(checkpoint: dict[str, Any], what: str) -> dict[str, Any]:
    """``checkpoint`` with every ``DTensor`` gathered whole on the CPU (every rank calls it).

    Each distinct tensor is gathered once (``DTensor.full_tensor``); rank 0's result holds the
    whole tensors, the other ranks' is not to be written.
    """
    tensors = _dtensors(checkpoint)
    first = _first_of_each(tensors, what)
    keep = dist.get_rank() == 0
    whole: list[Tensor | None] = []
    for index, tensor in enumerate(tensors):
        if first[index] != index:
            whole.append(whole[first[index]])
            continue
        full = tensor.full_tensor()
        whole.append(full.cpu() if keep else None)
    by_id = {id(t): w for t, w in zip(tensors, whole)}
    gathered: dict[str, Any] = _mapped(checkpoint, lambda v: by_id.get(id(v)) if is_dtensor(v) else None)
    return gathered


def _as_ref(value: Any, source: str) -> ShardRef | None:
    if isinstance(value, dict) and len(value) == 2 and "fields" in value:
        decoded = plain.from_plain(value, source=source)
        if isinstance(decoded, ShardRef):
            return decoded
    return None


def refs_in(checkpoint: Any, source: str) -> list[ShardRef]:
    """The references of a checkpoint in plain (undecoded) form, in order."""
    found: list[ShardRef] = []

    def note(value: Any) -> Any:
        ref = _as_ref(value, source)
        if ref is not None:
            found.append(ref)
        return ref

    _mapped(checkpoint, note)
    return found


def resolve_refs(
    checkpoint: dict[str, Any], loaded: Mapping[str, Mapping[str, Tensor]], source: str
) -> dict[str, Any]:
    """Put the loaded tensors where a plain (undecoded) checkpoint holds references to them.

    ``model`` entries are copied (the loaded model tensors may be the model's own storage,
    overwritten when the weights are applied); a ``shards`` entry referred to more than once
    is copied from its second use on.

    Raises:
        CheckpointError: a reference to an entry the DCP data did not give.
    """
    used: set[ShardRef] = set()

    def tensor(value: Any) -> Any:
        ref = _as_ref(value, source)
        if ref is None:
            return None
        found = loaded.get(ref.section, {}).get(ref.name)
        if found is None:
            raise CheckpointError(
                f"{source!r} refers to the sharded tensor {ref.section}.{ref.name}, which its "
                "DCP data does not hold for this model"
            )
        copy = ref.section != SHARDS or ref in used
        used.add(ref)
        return found.detach().clone() if copy else found

    resolved: dict[str, Any] = _mapped(checkpoint, tensor)
    return resolved


def empty_like_stored(size: torch.Size, dtype: torch.dtype, like: Any, device: Any) -> Tensor:
    """A tensor to load a stored one into: sharded as FSDP2 shards parameters when ``like`` is a
    ``DTensor`` (dimension 0 over its mesh), else whole on ``device``."""
    if is_dtensor(like):
        from torch.distributed.tensor import Replicate, Shard
        from torch.distributed.tensor import empty as dtensor_empty

        placements = [Shard(0)] if len(size) else [Replicate()]
        result: Tensor = dtensor_empty(size, dtype=dtype, device_mesh=like.device_mesh, placements=placements)
        return result
    return torch.empty(size, dtype=dtype, device=device)
