"""fengine.dist: identity behaviour in one process, and real collectives in two gloo processes."""

from __future__ import annotations

import os
import pickle
import socket
import time

import pytest
import torch
import torch.multiprocessing as mp

from fengine import dist
from fengine.dataset import DefaultSampler


def test_single_process_is_rank_zero_of_one():
    assert not dist.is_distributed()
    assert (dist.get_rank(), dist.get_world_size(), dist.get_local_rank()) == (0, 1, 0)
    assert dist.get_dist_info() == (0, 1)
    assert dist.is_main_process()
    dist.barrier()


def test_single_process_collectives_are_identities():
    data = torch.tensor([1.0, 2.0])
    for op in ("sum", "mean", "MAX", "min", "product"):
        dist.all_reduce(data, op)
    assert data.tolist() == [1.0, 2.0]
    assert dist.all_gather(data)[0] is data
    dist.broadcast(data)
    box = ["x"]
    dist.broadcast_object_list(box)
    assert box == ["x"] and dist.all_gather_object(3) == [3]
    assert dist.collect_results([1, 2, 3, 1], 3) == [1, 2, 3]
    assert isinstance(dist.sync_random_seed(), int)
    with pytest.raises(ValueError, match="unknown op 'avg'"):
        dist.all_reduce(data, "avg")
    with pytest.raises(ValueError, match="device"):
        dist.collect_results([], 0, device="tpu")


def test_master_only_runs_on_rank_zero(monkeypatch):
    calls = []

    @dist.master_only
    def record(x):
        calls.append(x)
        return x * 2

    assert record(2) == 4
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 1)
    assert record(3) is None
    assert calls == [2]
    assert record.__name__ == "record"


def test_init_dist_checks_launcher_and_environment(monkeypatch):
    with pytest.raises(ValueError, match="unsupported launcher 'pbs'"):
        dist.init_dist("pbs")
    for key in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(KeyError, match="RANK"):
        dist.init_dist("pytorch", backend="gloo")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _worker(rank: int, port: int, out_dir: str) -> None:
    from fengine.evaluator import BaseMetric

    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        WORLD_SIZE="2",
        LOCAL_RANK=str(rank),
    )
    dist.init_dist("pytorch", backend="gloo", timeout=60)
    try:
        found: dict = {"info": (dist.get_rank(), dist.get_world_size(), dist.get_local_rank())}
        value = torch.tensor([rank + 1.0, 10.0 * (rank + 1)])
        for op in ("sum", "mean", "max"):
            reduced = value.clone()
            dist.all_reduce(reduced, op)
            found[op] = reduced.tolist()
        found["gather"] = [t.tolist() for t in dist.all_gather(torch.tensor([rank, rank * 2]))]
        shared = torch.tensor([float(rank + 5)])
        dist.broadcast(shared, src=1)
        found["broadcast"] = shared.item()
        box = [f"from {rank}"]
        dist.broadcast_object_list(box)
        found["object"] = box[0]
        found["seed"] = dist.sync_random_seed()

        sampler = DefaultSampler(range(7), shuffle=True, seed=3)
        shard = list(sampler)
        found["shard"] = shard
        found["collected"] = dist.collect_results([f"r{i}" for i in shard], 7)

        class Sum(BaseMetric):
            def process(self, data_batch, data_samples):
                self.results.extend(data_samples)

            def compute_metrics(self, results):
                return {"sum": sum(results), "n": len(results)}

        metric = Sum(prefix="m")
        metric.process(None, shard)
        found["metric"] = metric.evaluate(7)
        with open(os.path.join(out_dir, f"rank{rank}.pkl"), "wb") as handle:
            pickle.dump(found, handle)
    finally:
        torch.distributed.destroy_process_group()


def test_two_gloo_processes(tmp_path):
    context = mp.start_processes(
        _worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + 120
    while not context.join(timeout=1):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.terminate()
            pytest.fail("the two-process run did not finish within 120 s")
    ranks = [pickle.loads((tmp_path / f"rank{r}.pkl").read_bytes()) for r in range(2)]
    assert [r["info"] for r in ranks] == [(0, 2, 0), (1, 2, 1)]
    for found in ranks:
        assert found["sum"] == [3.0, 30.0]
        assert found["mean"] == [1.5, 15.0]
        assert found["max"] == [2.0, 20.0]
        assert found["gather"] == [[0, 0], [1, 2]]
        assert found["broadcast"] == 6.0
        assert found["object"] == "from 0"
        assert found["metric"] == {"m/sum": 21, "m/n": 7}
    assert ranks[0]["seed"] == ranks[1]["seed"]
    generator = torch.Generator()
    generator.manual_seed(3)
    order = torch.randperm(7, generator=generator).tolist()
    padded = order + order[:1]
    assert ranks[0]["shard"] == padded[0::2] and ranks[1]["shard"] == padded[1::2]
    assert set(ranks[0]["shard"]).isdisjoint(ranks[1]["shard"][:3])  # rank 1 ends with padding
    assert set(ranks[0]["shard"]) | set(ranks[1]["shard"]) == set(range(7))
    assert ranks[0]["collected"] == [f"r{i}" for i in order]
    assert ranks[1]["collected"] is None
