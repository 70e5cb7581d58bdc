"""Shared pieces of the distributed tests: launching ranks, toy models and data, a reference loop.

Ranks are separate interpreters started with ``torch.multiprocessing`` (spawn) or as plain
subprocesses, each given torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``, ``MASTER_PORT``) on a free port, so the code under test takes exactly the path
a ``torchrun`` launch takes. Everything a spawned rank calls lives here, importable by name.
"""

from __future__ import annotations

import math
import os
import pickle
import socket
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from fengine.evaluator import BaseMetric
from fengine.model import BaseModel

N_TRAIN, N_VAL, BATCH, EPOCHS, SAMPLER_SEED = 24, 7, 3, 2, 7
LR, MOMENTUM = 0.1, 0.9


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def torchrun_env(rank: int, world_size: int, port: int) -> dict[str, str]:
    """The variables torchrun sets for ``rank`` on one machine."""
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(world_size),
        "LOCAL_WORLD_SIZE": str(world_size),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "OMP_NUM_THREADS": "1",
    }


#: ``env(rank, world_size, port)`` → the variables a launcher gives a rank.
LauncherEnv = Callable[[int, int, int], dict[str, str]]
TORCHRUN_KEYS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


def _entry(
    rank: int,
    fn: Callable[..., Any],
    world_size: int,
    port: int,
    args: tuple[Any, ...],
    env: LauncherEnv,
) -> None:
    for key in TORCHRUN_KEYS:
        os.environ.pop(key, None)
    os.environ.update(env(rank, world_size, port))
    torch.set_num_threads(1)  # two ranks share two cores
    fn(rank, *args)


def spawn(
    fn: Callable[..., Any],
    *args: Any,
    world_size: int = 2,
    timeout: float = 60,
    env: LauncherEnv = torchrun_env,
) -> None:
    """Run ``fn(rank, *args)`` in ``world_size`` fresh processes; fail the test past ``timeout`` s.

    Each process gets ``env(rank, world_size, port)`` as its launcher's variables (torchrun's
    by default; no torchrun variable is inherited). A rank that raises ends the others and
    re-raises here with its traceback.
    """
    import pytest  # here, so that scripts without pytest can use the rest of this module

    context = mp.start_processes(
        _entry,
        args=(fn, world_size, free_port(), args, env),
        nprocs=world_size,
        join=False,
        start_method="spawn",
    )
    deadline = time.monotonic() + timeout
    while not context.join(timeout=0.2):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"{fn.__name__} did not finish on {world_size} ranks within {timeout} s")


def spawn_findings(
    fn: Callable[..., Any], out: Any, *args: Any, world_size: int = 2, timeout: float = 60
) -> list[Any]:
    """:func:`spawn` ``fn(rank, str(out), *args)``, then what each rank dumped to ``out/rank<r>.pkl``."""
    spawn(fn, str(out), *args, world_size=world_size, timeout=timeout)
    return [load(os.path.join(str(out), f"rank{r}.pkl")) for r in range(world_size)]


def files_under(folder: str) -> list[str]:
    """Every file below ``folder``, as sorted relative paths."""
    return sorted(
        os.path.relpath(os.path.join(d, f), folder) for d, _, fs in os.walk(folder) for f in fs
    )


def dump(path: str, value: Any) -> None:
    """Write a rank's findings for the test process."""
    with open(path, "wb") as handle:
        pickle.dump(value, handle)


def load(path: Any) -> Any:
    """Read what a rank wrote with :func:`dump`."""
    with open(path, "rb") as handle:
        return pickle.load(handle)


class BNNet(BaseModel):
    """Linear(4, 8) -> BatchNorm1d -> ReLU -> Linear(8, 1); ``loss`` is the batch's mean squared error."""

    def __init__(self, batch_norm: bool = True, unused: bool = False) -> None:
        super().__init__()
        self.l1 = nn.Linear(4, 8)
        self.norm = nn.BatchNorm1d(8) if batch_norm else nn.Identity()
        self.l2 = nn.Linear(8, 1)
        self.spare = nn.Linear(8, 1) if unused else None  # never reached by the loss
        # (rank, training forward call, seconds to sleep there, or -1 to raise)
        self.fail_at: tuple[int, int, float] | None = None
        self.calls = 0

    def forward(self, inputs: torch.Tensor, data_samples: Any = None, mode: str = "tensor") -> Any:
        if self.training:
            self._maybe_fail()
        out = self.l2(torch.relu(self.norm(self.l1(inputs)))).squeeze(-1)
        if mode == "loss":
            return {"loss": F.mse_loss(out, data_samples)}
        return list(out)

    def _maybe_fail(self) -> None:
        self.calls += 1
        if self.fail_at is None:
            return
        rank, call, sleep = self.fail_at
        if int(os.environ["RANK"]) == rank and self.calls == call:
            if sleep < 0:
                raise RuntimeError(f"rank {rank} fails on purpose at forward call {call}")
            time.sleep(sleep)


def make_model(
    batch_norm: bool = True, unused: bool = False, dtype: torch.dtype = torch.float32
) -> BNNet:
    """The toy model with the same initial weights in every process."""
    torch.manual_seed(0)
    return BNNet(batch_norm, unused).to(dtype)


class IndexedDataset(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    """Samples ``{'inputs', 'data_samples'}`` that records every index it is asked for."""

    metainfo: dict[str, Any] = {}  # noqa: RUF012

    def __init__(
        self,
        size: int,
        seed: int = 0,
        labels_are_ids: bool = False,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(size, 4, generator=generator, dtype=dtype)
        self.y = (
            torch.arange(size, dtype=dtype)
            if labels_are_ids
            else torch.randn(size, generator=generator, dtype=dtype)
        )
        self.seen: list[int] = []

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        self.seen.append(int(index))
        return {"inputs": self.x[index], "data_samples": self.y[index]}


class IdMetric(BaseMetric):
    """Counts the samples ``compute_metrics`` receives and keeps their ids (the labels)."""

    def __init__(self) -> None:
        super().__init__(prefix="ids")
        self.gathered: list[int] = []

    def process(self, data_batch: Any, data_samples: Any) -> None:
        self.results.extend(int(i) for i in data_batch["data_samples"])

    def compute_metrics(self, results: list[Any]) -> dict[str, Any]:
        self.gathered = list(results)
        return {"count": len(results)}


class MSEMetric(BaseMetric):
    """The mean squared error of the model's predictions over the samples it was given."""

    def __init__(self) -> None:
        super().__init__(prefix="toy")

    def process(self, data_batch: Any, data_samples: Any) -> None:
        targets = data_batch["data_samples"]
        self.results.extend(float((p - t) ** 2) for p, t in zip(data_samples, targets))

    def compute_metrics(self, results: list[Any]) -> dict[str, Any]:
        return {"mse": sum(results) / len(results)}


def loader_cfg(dataset: Any, batch_size: int, shuffle: bool = True) -> dict[str, Any]:
    """A dataloader config with MMEngine's DefaultSampler and a fixed sampler seed."""
    return {
        "dataset": dataset,
        "sampler": {"type": "DefaultSampler", "shuffle": shuffle, "seed": SAMPLER_SEED},
        "batch_size": batch_size,
        "collate_fn": {"type": "default_collate"},
    }


def runner_kwargs(
    work_dir: str, model: nn.Module, batch_size: int, **overrides: Any
) -> dict[str, Any]:
    """A 2-epoch SGD run of ``model`` on :data:`N_TRAIN` samples (in its dtype), checkpointing every epoch."""
    dtype = next(model.parameters()).dtype
    kwargs: dict[str, Any] = {
        "model": model,
        "work_dir": work_dir,
        "train_dataloader": loader_cfg(IndexedDataset(N_TRAIN, dtype=dtype), batch_size),
        "train_cfg": {"by_epoch": True, "max_epochs": EPOCHS},
        "optim_wrapper": {"optimizer": {"type": "SGD", "lr": LR, "momentum": MOMENTUM}},
        "custom_hooks": [{"type": "SyncBuffersHook"}],
        "randomness": {"seed": 0},
        "log_level": "WARNING",
    }
    kwargs.update(overrides)
    return kwargs


def epoch_order(epoch: int, size: int = N_TRAIN) -> list[int]:
    """DefaultSampler's shared order for ``epoch`` (before sharding)."""
    return torch.randperm(
        size, generator=torch.Generator().manual_seed(SAMPLER_SEED + epoch)
    ).tolist()


def reference_training(world_size: int, accumulate: int = 1) -> dict[str, torch.Tensor]:
    """What DDP over ``world_size`` ranks computes, in one process with plain torch.

    Per iteration, each rank's batch (its shard of the epoch order, :data:`BATCH` at a time)
    runs through the model with that rank's own BatchNorm statistics; the gradients of
    ``loss_r / (world_size * accumulate)`` add up in ``.grad`` (DDP's cross-rank mean, and the
    optimizer wrapper's accumulation scaling); ``torch.optim.SGD`` steps every ``accumulate``
    iterations. After each epoch the ranks' buffers are replaced by their mean (SyncBuffersHook).

    Runs on one thread, like each rank, so that matrix products round the same way.

    Returns:
        The final ``state_dict`` (buffers: the synchronised ones).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _reference(world_size, accumulate)
    finally:
        torch.set_num_threads(threads)


def _reference(world_size: int, accumulate: int) -> dict[str, torch.Tensor]:
    model = make_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM)
    data = IndexedDataset(N_TRAIN)
    tracks = [{n: b.clone() for n, b in model.named_buffers()} for _ in range(world_size)]
    live = dict(model.named_buffers())
    per_rank = math.ceil(N_TRAIN / world_size)
    iters = per_rank // BATCH
    done = 0
    for epoch in range(EPOCHS):
        order = epoch_order(epoch)
        for k in range(iters):
            for rank in range(world_size):
                with torch.no_grad():
                    for name, tensor in tracks[rank].items():
                        live[name].copy_(tensor)
                index = order[rank::world_size][k * BATCH : (k + 1) * BATCH]
                loss = model(data.x[index], data.y[index], mode="loss")["loss"]
                (loss / (world_size * accumulate)).backward()
                tracks[rank] = {n: b.clone() for n, b in live.items()}
            done += 1
            if done % accumulate == 0:
                optimizer.step()
                optimizer.zero_grad()
        mean = {
            n: torch.true_divide(sum(t[n] for t in tracks), world_size).to(live[n].dtype)
            for n in live
        }
        tracks = [dict(mean) for _ in range(world_size)]
    with torch.no_grad():
        for name, tensor in tracks[0].items():
            live[name].copy_(tensor)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def relative_error(found: torch.Tensor, expected: torch.Tensor) -> float:
    """``max |found - expected| / max |expected|`` (0 when both are all zeros)."""
    scale = expected.double().abs().max().item()
    error = (found.double() - expected.double()).abs().max().item()
    return error / scale if scale else error


def assert_close(
    found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], rtol: float = 1e-6
) -> None:
    """Every tensor of ``expected`` matches ``found`` within ``rtol`` of its largest magnitude."""
    assert sorted(found) == sorted(expected)
    errors = {n: relative_error(found[n], expected[n]) for n in expected}
    assert max(errors.values()) <= rtol, errors


def train_with_fault(work_dir: str, fault: str, timeout: float) -> None:
    """A two-rank Runner run in which rank 1's second training forward raises or hangs.

    Run as a rank's main program (``python -c``), with torchrun's variables in the environment.

    Args:
        work_dir: the run's folder.
        fault: ``'raise'`` (a RuntimeError) or ``'hang'`` (ten minutes of sleep).
        timeout: the process group's timeout in seconds (``env_cfg.dist_cfg.timeout``).
    """
    torch.set_num_threads(1)
    from fengine.runner import Runner

    model = make_model()
    model.fail_at = (1, 2, -1.0 if fault == "raise" else 600.0)
    env_cfg = {"dist_cfg": {"backend": "gloo", "timeout": timeout}}
    Runner(**runner_kwargs(work_dir, model, BATCH, launcher="pytorch", env_cfg=env_cfg)).train()


SAVE_STALLED = "rank 1 is inside the save of epoch_2"


def train_killed_mid_save(work_dir: str) -> None:
    """A two-rank FSDP run checkpointing every epoch, whose rank 1 stalls inside the second save.

    Run as a rank's main program (``python -c``), with torchrun's variables in the environment.
    Rank 1 writes its shards of ``epoch_2`` (torch.distributed.checkpoint's save returns), then
    prints :data:`SAVE_STALLED` and sleeps, so the parent kills it while the directory is still
    being assembled, however busy the machine is.
    """
    torch.set_num_threads(1)
    from fengine.runner import Runner, sharded_checkpoint

    real_save = sharded_checkpoint.dcp_save
    saves = []

    def save_then_stall(*args: Any, **kwargs: Any) -> Any:
        result = real_save(*args, **kwargs)
        saves.append(1)
        if len(saves) == 2 and os.environ["RANK"] == "1":
            print(SAVE_STALLED, flush=True)
            time.sleep(600)
        return result

    sharded_checkpoint.dcp_save = save_then_stall  # type: ignore[assignment]
    env_cfg = {"dist_cfg": {"backend": "gloo", "timeout": 60}}
    kwargs = runner_kwargs(work_dir, make_model(batch_norm=False), BATCH, launcher="pytorch",
                           env_cfg=env_cfg, cfg={"model_wrapper_cfg": {"type": "FullyShardedDataParallel"}})  # fmt: skip
    Runner(**kwargs).train()
