"""NCCL + CUDA check of fengine's distributed path, for a machine with GPUs (not collected by pytest).

Run from the repository root, one process per GPU (NCCL refuses two ranks on one GPU)::

    torchrun --standalone --nproc_per_node=$(python -c "import torch; print(min(2, torch.cuda.device_count()))") tests/dist/nccl_check.py

Each rank checks: the Runner joined an NCCL group and selected ``cuda:LOCAL_RANK``;
``cfg.sync_bn='torch'`` made the BatchNorm a SyncBatchNorm inside MMDistributedDataParallel;
two epochs of training give what one process gives on the same global batches (SyncBatchNorm
normalises over the global batch); the ranks' weights and buffers agree; validation gathered
each sample once; a pure step with ``grad_all_reduce_mean`` gives DDP's parameters; the
collectives work on NCCL. Rank 0 prints one JSON line; the exit status is 1 if a check failed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import torch
import torch.distributed as torch_dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

sys.path[:0] = [
    os.path.dirname(os.path.abspath(__file__)),
    os.path.join(os.path.dirname(__file__), "..", ".."),
]

from dist_toys import (  # noqa: E402
    BATCH,
    EPOCHS,
    LR,
    MOMENTUM,
    N_TRAIN,
    N_VAL,
    IdMetric,
    IndexedDataset,
    epoch_order,
    loader_cfg,
    make_model,
    relative_error,
    runner_kwargs,
)

import fengine.core as fc  # noqa: E402
from fengine import dist  # noqa: E402
from fengine.runner import Runner  # noqa: E402


def global_batch_reference(world_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """One process, plain BatchNorm, each iteration on the union of the ranks' batches."""
    model = make_model().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    data = IndexedDataset(N_TRAIN)
    for epoch in range(EPOCHS):
        order = epoch_order(epoch)
        for k in range(N_TRAIN // (world_size * BATCH)):
            index = [
                i
                for r in range(world_size)
                for i in order[r::world_size][k * BATCH : (k + 1) * BATCH]
            ]
            model(data.x[index].to(device), data.y[index].to(device), mode="loss")[
                "loss"
            ].backward()
            optimizer.step()
            optimizer.zero_grad()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def reducer_against_ddp(rank: int, device: torch.device) -> float:
    """Largest difference between DDP and a pure step with ``grad_all_reduce_mean`` after 4 steps."""
    model = make_model().to(device)
    ddp = DistributedDataParallel(
        make_model().to(device), device_ids=[device.index], broadcast_buffers=False
    )
    optimizer = torch.optim.SGD(ddp.parameters(), lr=LR, momentum=MOMENTUM)
    tx = fc.optim.sgd(LR, MOMENTUM)
    step = fc.make_train_step(
        model, lambda view, b: view(*b, mode="loss"), tx, grad_reducer=dist.grad_all_reduce_mean
    )
    state = fc.TrainState.create(model, tx)
    data, shard = IndexedDataset(N_TRAIN), epoch_order(0)[rank :: dist.get_world_size()]
    for k in range(4):
        index = shard[k * BATCH : (k + 1) * BATCH]
        batch = (data.x[index].to(device), data.y[index].to(device))
        ddp(*batch, mode="loss")["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
        state, _ = step(state, batch)
    pure = {**state.params, **state.buffers}
    return max(
        (t.double() - pure[n].double()).abs().max().item()
        for n, t in ddp.module.state_dict().items()
    )


def main() -> int:
    started = time.monotonic()
    local_rank = int(os.environ["LOCAL_RANK"])
    metric = IdMetric()
    runner = Runner(
        **runner_kwargs(
            "/tmp/fengine_nccl_check",
            make_model(),
            BATCH,
            val_dataloader=loader_cfg(
                IndexedDataset(N_VAL, seed=1, labels_are_ids=True), 2, shuffle=False
            ),
            val_cfg={},
            val_evaluator=metric,
            launcher="pytorch",
            env_cfg={"dist_cfg": {"backend": "nccl", "timeout": 60}},
            cfg={"sync_bn": "torch"},
        )
    )
    rank, world_size = runner.rank, runner.world_size
    device = torch.device("cuda", local_rank)
    seconds: dict[str, float] = {"setup": time.monotonic() - started}
    checks: dict[str, Any] = {
        "backend_nccl": torch_dist.get_backend() == "nccl",
        "device_per_local_rank": torch.cuda.current_device() == local_rank
        and all(p.device == device for p in runner.model.parameters()),
        "wrapped_with_sync_bn": type(runner.model).__name__ == "MMDistributedDataParallel"
        and isinstance(runner.model.module.norm, nn.SyncBatchNorm),
    }
    begun = time.monotonic()
    runner.train()
    seconds["train"] = time.monotonic() - begun
    metrics = runner.val()
    checks["gathered_once"] = metrics == {"ids/count": N_VAL} and (
        rank != 0 or metric.gathered == list(range(N_VAL))
    )
    state = {k: v.detach().clone() for k, v in runner.model.module.state_dict().items()}
    checks["ranks_agree"] = all(
        all(torch.equal(t, other) for other in dist.all_gather(t)) for t in state.values()
    )
    reference = global_batch_reference(world_size, device)
    error = max(relative_error(state[n], reference[n]) for n in reference)
    checks["matches_one_process"] = error <= 1e-5
    begun = time.monotonic()
    reducer_gap = reducer_against_ddp(rank, device)
    seconds["reducer_vs_ddp"] = time.monotonic() - begun
    checks["reducer_equals_ddp"] = reducer_gap <= 1e-6
    counts = torch.tensor([3 * rank + 1], device=device)
    dist.all_reduce(counts, "mean")
    checks["int_mean"] = counts.item() == int(
        sum(3 * r + 1 for r in range(world_size)) / world_size
    )
    gathered = [dist.collect_results([rank], world_size, device=d) for d in ("cpu", "gpu")]
    checks["collect_results"] = rank != 0 or gathered == [list(range(world_size))] * 2
    passed = all(checks.values())
    verdicts = dist.all_gather(torch.tensor([int(passed)], device=device))
    if rank == 0:
        report = {
            "world_size": world_size,
            "gpu": torch.cuda.get_device_name(device),
            "torch": torch.__version__,
            "nccl": ".".join(map(str, torch.cuda.nccl.version())),
            "checks": checks,
            "max_relative_error_vs_one_process": error,
            "reducer_vs_ddp_max_abs": reducer_gap,
            "seconds": {k: round(v, 2) for k, v in seconds.items()},
            "all_ranks_passed": all(int(v.item()) for v in verdicts),
        }
        print(json.dumps(report), flush=True)
    return 0 if all(int(v.item()) for v in verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
