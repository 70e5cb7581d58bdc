"""Distributed scaling rows: DDP against FSDP2 on 1, 2 and 4 processes (by hand, not in CI).

A 50M-parameter MLP (2048 -> 4096 -> 4096 -> 4096 -> 2048, plus a 10-way head) trains with AdamW
through fengine's functional core: DDP is ``make_train_step(..., grad_reducer=
dist.grad_all_reduce_mean)`` on whole parameters, FSDP is the same step on a model sharded by
``fully_shard`` (every Linear, then the root). Each rank takes its own batch of ``--batch``
samples; a row gives the samples per second of the whole job and per rank, each rank's bytes of
parameters + optimizer state, and its peak RSS (``ru_maxrss``, which includes the interpreter
and torch: about 0.3 GiB). One world size at a time, each in fresh processes (gloo on CPU, NCCL
on GPU), one thread per rank.

    python benchmarks/scaling_dist.py                        # 1, 2, 4 processes, both wrappers
    python benchmarks/scaling_dist.py --ranks 1,2 --steps 5  # quicker
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from typing import Any

WIDTH, IO = 4096, 2048


def _rank_main(kind: str, steps: int, batch: int, out: str) -> None:
    import torch
    import torch.distributed as torch_dist
    import torch.nn.functional as F
    from torch import nn
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.distributed.tensor import DTensor

    import fengine.core as fc
    from fengine import dist

    torch.set_num_threads(1)
    cuda = torch.cuda.is_available()
    dist.init_dist("pytorch", backend="nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", dist.get_local_rank()) if cuda else torch.device("cpu")
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(IO, WIDTH), nn.GELU(), nn.Linear(WIDTH, WIDTH), nn.GELU(),
        nn.Linear(WIDTH, WIDTH), nn.GELU(), nn.Linear(WIDTH, IO), nn.GELU(), nn.Linear(IO, 10),
    ).to(device)  # fmt: skip
    reducer = None
    if kind == "fsdp":
        mesh = init_device_mesh(device.type, (world,))
        for layer in model:
            if isinstance(layer, nn.Linear):
                fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)
    elif world > 1:
        reducer = dist.grad_all_reduce_mean
    tx = fc.optim.adamw(1e-4)

    def loss_fn(view: fc.ModelView, data: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(view(data[0]), data[1])

    step = fc.make_train_step(model, loss_fn, tx, grad_reducer=reducer)
    state = fc.TrainState.create(model, tx)
    generator = torch.Generator().manual_seed(rank)
    data = (torch.randn(batch, IO, generator=generator).to(device), torch.randint(0, 10, (batch,), generator=generator).to(device))
    state, _ = step(state, data, donate=True)  # warm-up: allocates the optimizer state
    dist.barrier()
    start = time.perf_counter()
    for _ in range(steps):
        state, result = step(state, data, donate=True)
    float(result.loss)
    dist.barrier()
    seconds = time.perf_counter() - start

    def local_bytes(t: torch.Tensor) -> int:
        t = t.to_local() if isinstance(t, DTensor) else t
        return t.numel() * t.element_size()

    moments = state.opt_state.exp_avg + state.opt_state.exp_avg_sq
    opt_bytes = sum(local_bytes(t) for t in moments if t is not None)
    found = {
        "rank": rank,
        "seconds": seconds,
        "params": sum(t.numel() for t in state.params.values()),
        "state_bytes": sum(local_bytes(t) for t in state.params.values()) + opt_bytes,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }
    with open(os.path.join(out, f"{kind}{rank}.json"), "w") as handle:
        json.dump(found, handle)
    torch_dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def measure(kind: str, world: int, steps: int, batch: int) -> dict[str, Any]:
    """One row: ``world`` fresh processes training ``steps`` steps under ``kind`` (ddp/fsdp)."""
    with tempfile.TemporaryDirectory() as out:
        port, processes = _free_port(), []
        for rank in range(world):
            env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(world),
                   "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}  # fmt: skip
            command = [sys.executable, __file__, "--rank-of", kind, "--steps", str(steps), "--batch", str(batch), "--out", out]
            processes.append(subprocess.Popen(command, env=env))
        if any(p.wait() != 0 for p in processes):
            raise RuntimeError(f"{kind} on {world} processes failed")
        ranks = []
        for rank in range(world):
            with open(os.path.join(out, f"{kind}{rank}.json")) as handle:
                ranks.append(json.load(handle))
    seconds = max(r["seconds"] for r in ranks)
    return {
        "kind": kind, "world": world, "params": ranks[0]["params"],
        "samples_per_s": world * batch * steps / seconds, "per_rank": batch * steps / seconds,
        "state_mib": max(r["state_bytes"] for r in ranks) / 2**20,
        "peak_mib": max(r["peak_rss"] for r in ranks) / 2**20,
    }  # fmt: skip


def main() -> None:
    """Measure every (wrapper, world size) pair and print the Markdown table for RESULTS.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranks", default="1,2,4")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rank-of", choices=["ddp", "fsdp"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rank_of:
        _rank_main(args.rank_of, args.steps, args.batch, args.out)
        return
    rows = [measure(kind, int(w), args.steps, args.batch) for w in args.ranks.split(",") for kind in ("ddp", "fsdp")]
    print(f"{rows[0]['params'] / 1e6:.1f}M parameters, AdamW, batch {args.batch} per rank, {args.steps} steps\n")
    print("| wrapper | processes | samples/s (job) | samples/s per rank | params + AdamW state per rank MiB | peak RSS per rank MiB |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['kind'].upper()} | {r['world']} | {r['samples_per_s']:.1f} | {r['per_rank']:.1f} | "
              f"{r['state_mib']:.0f} | {r['peak_mib']:.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
