"""The functional core on a model sharded by FSDP2: each rank holds 1/world_size of the state.

``torch.distributed.fsdp.fully_shard`` over a one-dimensional device mesh turns every parameter
into a ``DTensor`` shard. ``TrainState.create`` copies those shards (so the optimizer state is
sharded too) and ``make_train_step`` returns the pure step for the sharded model: FSDP
all-gathers the parameters for the forward pass and averages the gradients across ranks
(reduce-scatter), then the pure optimizer updates each rank's shard with foreach ops on
``DTensor``s, clipping by the global gradient norm across all shards.

    torchrun --nproc_per_node 2 examples/fsdp_functional.py        # CPU (gloo) or GPU (NCCL)
    torchrun --nproc_per_node 2 examples/fsdp_functional.py --steps 5

At the end rank 0 gathers the full weights and repeats the run in one process, unsharded, on
the combined batches: the two agree to rounding (the reduce-scatter sums in another order).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any

import attrs
import torch
import torch.distributed as torch_dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

import fengine.core as fc


def build_model(seed: int) -> nn.Module:
    """The same MLP, with the same initial weights, on every rank."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))


def batches(step: int, world_size: int, per_rank: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Step ``step``'s combined batch (``world_size * per_rank`` samples; rank r takes the r-th slice)."""
    generator = torch.Generator().manual_seed(seed * 1000 + step)
    labels = torch.randint(0, 10, (world_size * per_rank,), generator=generator)
    images = torch.randn(world_size * per_rank, 64, generator=generator) + labels[:, None] / 5.0
    return images, labels


def loss_fn(view: fc.ModelView, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Cross-entropy of the model on the batch."""
    inputs, labels = batch
    return F.cross_entropy(view(inputs), labels)


def train(
    model: nn.Module, tx: Any, lrs: list[float], steps: int, rank: int, world_size: int, args: Any
) -> fc.TrainState[Any]:
    """``steps`` pure steps; each rank trains on its slice of every combined batch."""
    state = fc.TrainState.create(model, tx)
    step = fc.make_train_step(model, loss_fn, tx)
    for i in range(steps):
        images, labels = batches(i, world_size, args.batch_size, args.seed)
        mine = slice(rank * args.batch_size, (rank + 1) * args.batch_size)
        state = attrs.evolve(state, opt_state=fc.optim.set_hyperparams(state.opt_state, lr=lrs[i]))
        state, out = step(state, (images[mine], labels[mine]), donate=True)
        if rank == 0 and (i + 1) % 5 == 0:
            print(f"step {i + 1:3d}  loss {float(out.loss):.4f}  grad norm {float(out.grad_norm):.4f}")
    return state


def full_tensors(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every shard gathered into its full tensor (a collective: every rank calls it)."""
    return {n: t.full_tensor() if isinstance(t, DTensor) else t for n, t in tensors.items()}


def main(argv: Sequence[str] | None = None) -> float:
    """Train sharded, compare with the unsharded run; returns the largest weight difference."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16, help="samples per rank and step")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    torch_dist.init_process_group("nccl" if cuda else "gloo")
    rank, world_size = torch_dist.get_rank(), torch_dist.get_world_size()
    mesh = init_device_mesh("cuda" if cuda else "cpu", (world_size,))

    # Clip by the global norm, then AdamW; a linear warm-up and a cosine decay move its lr.
    tx = fc.optim.chain(fc.optim.clip_grad_norm(1.0), fc.optim.adamw(args.lr, weight_decay=0.01))
    schedule = [
        fc.schedule.Linear(start_factor=0.1, begin=0, end=5, by_epoch=False),
        fc.schedule.Cosine(begin=5, end=args.steps, by_epoch=False),
    ]
    lrs = fc.schedule.trajectory(schedule, args.lr, args.steps)

    model = build_model(args.seed)
    for layer in model:
        if any(True for _ in layer.parameters()):
            fully_shard(layer, mesh=mesh)  # each layer its own all-gather and reduce-scatter
    fully_shard(model, mesh=mesh)
    state = train(model, tx, lrs, args.steps, rank, world_size, args)
    local = sum(t.to_local().numel() for t in state.params.values() if isinstance(t, DTensor))
    total = sum(t.numel() for t in state.params.values())
    print(f"rank {rank}: holds {local} of {total} parameters")
    sharded = full_tensors(state.params)

    largest = 0.0
    if rank == 0:  # the same run in one process, unsharded, on the combined batches
        combined = argparse.Namespace(**{**vars(args), "batch_size": world_size * args.batch_size})
        reference = train(build_model(args.seed), tx, lrs, args.steps, 0, 1, combined)
        largest = max(
            (sharded[n].cpu() - reference.params[n].cpu()).abs().max().item() for n in sharded
        )
        print(f"world size {world_size}: max |sharded - one process| = {largest:.3g}")
    torch_dist.destroy_process_group()
    return largest


if __name__ == "__main__":
    main()
