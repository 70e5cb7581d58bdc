"""``MMFullyShardedDataParallel``: a model sharded by FSDP2 (``fully_shard``) across all ranks.

``model_wrapper_cfg=dict(type='FullyShardedDataParallel', ...)`` (or
``'MMFullyShardedDataParallel'``, the same class) applies PyTorch's
``torch.distributed.fsdp.fully_shard`` over a one-dimensional device mesh of every rank
(``init_device_mesh``): each parameter becomes a ``DTensor`` holding this rank's shard, so
parameters, gradients and optimizer state take 1/world_size of the memory; before each sharded
module runs its parameters are all-gathered, after backward its gradients are averaged across
ranks and scattered back to their shards (reduce-scatter). This is FSDP2, not the deprecated
``FullyShardedDataParallel`` class (FSDP1) that MMEngine wraps.

All settings are checked before anything is sharded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:  # FSDP is imported when a model is sharded (it costs tens of MiB at start-up)
    from torch.distributed.fsdp import MixedPrecisionPolicy, OffloadPolicy

from fengine import dist
from fengine.model.wrappers.wrapped_steps import WrappedSteps
from fengine.registry import MODEL_WRAPPERS

__all__ = ["MMFullyShardedDataParallel", "parse_dtype"]

_ACCEPTED = ("wrap", "reshard_after_forward", "mixed_precision", "cpu_offload")
_PRECISION_KEYS = ("param_dtype", "reduce_dtype", "output_dtype", "cast_forward_inputs")
_DTYPE_ALIASES = {"fp16": "float16", "half": "float16", "bf16": "bfloat16", "fp32": "float32",
                  "float": "float32", "fp64": "float64", "double": "float64"}  # fmt: skip

#: ``wrap``: class names of the submodules that get their own ``fully_shard``, or a predicate.
WrapPolicy = Sequence[str] | Callable[[nn.Module], bool] | None


def parse_dtype(value: Any, key: str) -> torch.dtype | None:
    """A dtype from a config value: a ``torch.dtype``, its name (``'bfloat16'``, ``'torch.float16'``,
    ``'bf16'``, ``'fp16'``, ``'fp32'``) or ``None``.

    Raises:
        TypeError: anything else (naming ``key`` and the value).
    """
    if value is None or isinstance(value, torch.dtype):
        return value
    if isinstance(value, str):
        name = value.removeprefix("torch.")
        found = getattr(torch, _DTYPE_ALIASES.get(name, name), None)
        if isinstance(found, torch.dtype) and found.is_floating_point:
            return found
    raise TypeError(
        f"mixed_precision[{key!r}] must be a floating-point torch.dtype or its name (torch.bfloat16, "
        f"'bfloat16', 'bf16', 'float16', 'fp16', 'float32'), got {value!r}"
    )


def _precision_policy(mixed_precision: Mapping[str, Any] | None) -> MixedPrecisionPolicy:
    from torch.distributed.fsdp import MixedPrecisionPolicy

    if mixed_precision is None:
        return MixedPrecisionPolicy()
    if not isinstance(mixed_precision, Mapping):
        raise TypeError(
            f"mixed_precision must be a dict such as dict(param_dtype=torch.bfloat16, "
            f"reduce_dtype=torch.float32), got {mixed_precision!r}"
        )
    unknown = sorted(set(mixed_precision) - set(_PRECISION_KEYS))
    if unknown:
        raise TypeError(f"mixed_precision: unknown keys {unknown}; accepted: {list(_PRECISION_KEYS)}")
    values = {k: parse_dtype(v, k) for k, v in mixed_precision.items() if k != "cast_forward_inputs"}
    cast = mixed_precision.get("cast_forward_inputs", True)
    if not isinstance(cast, bool):
        raise TypeError(f"mixed_precision['cast_forward_inputs'] must be a bool, got {cast!r}")
    return MixedPrecisionPolicy(**values, cast_forward_inputs=cast)


def _offload_policy(cpu_offload: Any) -> OffloadPolicy:
    from torch.distributed.fsdp import CPUOffloadPolicy, OffloadPolicy

    if cpu_offload is False:
        return OffloadPolicy()
    if cpu_offload is True:
        return CPUOffloadPolicy()
    if isinstance(cpu_offload, Mapping) and set(cpu_offload) <= {"pin_memory"}:
        return CPUOffloadPolicy(pin_memory=bool(cpu_offload.get("pin_memory", True)))
    raise TypeError(f"cpu_offload must be a bool or dict(pin_memory=bool), got {cpu_offload!r}")


def _post_order(module: nn.Module) -> Iterator[nn.Module]:
    """Submodules, children before their parents (FSDP2 shards the innermost first)."""
    for child in module.children():
        yield from _post_order(child)
        yield child


def _targets(model: nn.Module, wrap: WrapPolicy) -> list[nn.Module]:
    """The submodules (not the root) that get their own ``fully_shard``, innermost first."""
    if wrap is None:
        return [c for c in model.children() if any(True for _ in c.parameters())]
    if callable(wrap):
        return [m for m in _post_order(model) if wrap(m)]
    if isinstance(wrap, str) or not isinstance(wrap, Sequence) or not all(isinstance(w, str) for w in wrap):
        raise TypeError(
            f"wrap must be a list of module class names (e.g. ['TransformerBlock']), a callable "
            f"module -> bool, or None, got {wrap!r}"
        )
    present = {type(m).__name__ for m in model.modules()}
    absent = [name for name in wrap if name not in present]
    if absent:
        raise ValueError(
            f"wrap names {absent}, which {type(model).__name__} does not contain; its module "
            f"classes are {sorted(present)}"
        )
    return [m for m in _post_order(model) if type(m).__name__ in wrap]


@MODEL_WRAPPERS.register_module(name=["MMFullyShardedDataParallel", "FullyShardedDataParallel"])
class MMFullyShardedDataParallel(WrappedSteps, nn.Module):
    """A BaseModel sharded in place by FSDP2's ``fully_shard``, with a BaseModel's steps.

    ``self.module`` is the model itself (``fully_shard`` changes it in place), so its
    ``named_parameters()`` keep their names and hold ``DTensor`` shards. ``train_step`` runs the
    forward through the sharded model and steps the optimizer on the shards
    (:class:`~fengine.model.wrappers.wrapped_steps.WrappedSteps`); gradient clipping uses the
    global norm across shards. While accumulating gradients each backward reduce-scatters, so
    only gradient shards are ever kept.

    Args:
        module: the model, on its device, with the same weights on every rank.
        wrap: which submodules get their own ``fully_shard`` (their own all-gather and
            reduce-scatter, so that only one group is unsharded at a time): a list of module
            class names, or a callable ``module -> bool`` asked for every submodule; default
            every direct child that has parameters. The root is always sharded last.
        reshard_after_forward: free each group's gathered parameters after its forward (and
            gather again for backward): less memory, more communication.
        mixed_precision: ``dict(param_dtype=..., reduce_dtype=..., output_dtype=...,
            cast_forward_inputs=True)`` for ``MixedPrecisionPolicy``: parameters are gathered in
            ``param_dtype`` and gradients reduced in ``reduce_dtype``; the shards and the
            optimizer state stay in the parameters' dtype. Dtypes may be given by name.
        cpu_offload: ``True`` (or ``dict(pin_memory=...)``) keeps shards, gradients and the
            optimizer step on the CPU (``CPUOffloadPolicy``).
        **unknown: rejected, naming the accepted keywords.

    Raises:
        RuntimeError: no process group (start with a launcher: ``launcher='pytorch'``, ...).
        ValueError, TypeError: a bad setting, naming it.
    """

    def __init__(
        self,
        module: nn.Module,
        wrap: WrapPolicy = None,
        reshard_after_forward: bool = True,
        mixed_precision: Mapping[str, Any] | None = None,
        cpu_offload: bool | Mapping[str, Any] = False,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise TypeError(
                f"FullyShardedDataParallel: unknown keyword(s) {sorted(unknown)}; accepted: "
                f"{list(_ACCEPTED)} (FSDP1's auto_wrap_policy, sharding_strategy, ... have no "
                "place in FSDP2: choose the sharded submodules with `wrap`)"
            )
        if not dist.is_distributed():
            raise RuntimeError(
                "FullyShardedDataParallel needs a process group: start the processes with a "
                "launcher (torchrun and launcher='pytorch', srun and 'slurm', mpirun and 'mpi') "
                "or call torch.distributed.init_process_group first"
            )
        if not isinstance(reshard_after_forward, bool):
            raise TypeError(f"reshard_after_forward must be a bool, got {reshard_after_forward!r}")
        precision, offload = _precision_policy(mixed_precision), _offload_policy(cpu_offload)
        targets = _targets(module, wrap)
        super().__init__()
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        device = "cuda" if torch.cuda.is_available() else "cpu"
        mesh = init_device_mesh(device, (dist.get_world_size(),))
        for target in [*targets, module]:
            fully_shard(
                target,
                mesh=mesh,
                reshard_after_forward=reshard_after_forward,
                mp_policy=precision,
                offload_policy=offload,
            )
        self.module = module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        """The sharded model's forward."""
        return self.module(*args, **kwargs)
