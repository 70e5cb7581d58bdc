"""The functional path on two gloo ranks: a pure step with ``grad_all_reduce_mean`` equals DDP.

The ranks initialise the process group themselves here, so the same run also shows that a
Runner joins a group it finds and leaves it alone at exit.
"""

from __future__ import annotations

import atexit
import copy
import os
from typing import Any

import pytest
import torch
import torch.distributed as torch_dist
from dist_toys import (
    BATCH,
    LR,
    MOMENTUM,
    N_TRAIN,
    IndexedDataset,
    dump,
    epoch_order,
    load,
    make_model,
    spawn,
)
from torch.nn.parallel import DistributedDataParallel

import fengine.core as fc
from fengine import dist
from fengine.core.step import ModelView
from fengine.runner import Runner

STEPS = 4


def _loss(view: ModelView, batch: tuple[torch.Tensor, torch.Tensor]) -> Any:
    return view(*batch, mode="loss")


def _ddp_against_pure_step(rank: int) -> dict[str, Any]:
    model = make_model()
    ddp = DistributedDataParallel(copy.deepcopy(model), broadcast_buffers=False)
    optimizer = torch.optim.SGD(ddp.parameters(), lr=LR, momentum=MOMENTUM)
    tx = fc.optim.sgd(LR, MOMENTUM)
    step = fc.make_train_step(model, _loss, tx, grad_reducer=dist.grad_all_reduce_mean)
    state = fc.TrainState.create(model, tx)
    data, shard = IndexedDataset(N_TRAIN), epoch_order(0)[rank::2]
    for k in range(STEPS):
        index = shard[k * BATCH : (k + 1) * BATCH]
        batch = (data.x[index], data.y[index])
        ddp(*batch, mode="loss")["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
        state, _ = step(state, batch)
    return {"ddp": ddp.module.state_dict(), "pure": {**state.params, **state.buffers}}


def _reducer_details(rank: int) -> dict[str, Any]:
    grads = {
        "a": torch.full((2, 3), float(rank + 1)),
        "b": torch.tensor([10.0 * rank], dtype=torch.float64),
        "c": torch.tensor([1.0, -1.0]) * (rank + 2),
    }
    versions = {n: g._version for n, g in grads.items()}
    originals = {n: g.clone() for n, g in grads.items()}
    averaged = dist.grad_all_reduce_mean(grads)
    counts = torch.tensor([3 * rank + 1])  # 1 and 4: mean 2.5, an integer buffer keeps 2
    dist.all_reduce(counts, "mean")
    return {
        "averaged": averaged,
        "untouched": all(torch.equal(grads[n], originals[n]) for n in grads)
        and versions == {n: g._version for n, g in grads.items()},
        "count": counts.item(),
    }


def _report_group_at_exit(path: str) -> None:
    dump(path, torch_dist.is_initialized())
    torch_dist.destroy_process_group()  # the user's group: the user tears it down


def _ranks(rank: int, out: str) -> None:
    atexit.register(_report_group_at_exit, os.path.join(out, f"exit{rank}.pkl"))
    torch_dist.init_process_group("gloo")  # env:// from the torchrun variables
    group = torch_dist.group.WORLD
    found = {"steps": _ddp_against_pure_step(rank), **_reducer_details(rank)}
    runner = Runner(
        model=make_model(),
        work_dir=os.path.join(out, "runner"),
        launcher="pytorch",
        env_cfg={"dist_cfg": {"backend": "nccl"}},  # ignored: the group exists already
        log_level="WARNING",
    )
    found["runner"] = (runner.world_size, torch_dist.group.WORLD is group, torch_dist.get_backend())
    dump(os.path.join(out, f"rank{rank}.pkl"), found)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("functional")
    spawn(_ranks, str(out))
    return {
        "found": [load(out / f"rank{r}.pkl") for r in range(2)],
        "exit": [load(out / f"exit{r}.pkl") for r in range(2)],
    }


def test_pure_step_with_the_reducer_gives_ddps_parameters_bit_for_bit(ranks):
    for found in ranks["found"]:
        ddp, pure = found["steps"]["ddp"], found["steps"]["pure"]
        assert sorted(ddp) == sorted(pure)
        for name in ddp:
            assert torch.equal(ddp[name], pure[name]), name
    # The parameters agree across ranks; each rank keeps its own BatchNorm statistics.
    rank0, rank1 = (f["steps"]["pure"] for f in ranks["found"])
    assert torch.equal(rank0["l1.weight"], rank1["l1.weight"])
    assert not torch.equal(rank0["norm.running_mean"], rank1["norm.running_mean"])


def test_reducer_averages_each_kind_without_touching_its_input(ranks):
    for found in ranks["found"]:
        averaged = found["averaged"]
        assert list(averaged) == ["a", "b", "c"]
        assert torch.equal(averaged["a"], torch.full((2, 3), 1.5))
        assert averaged["b"].dtype == torch.float64 and averaged["b"].tolist() == [5.0]
        assert averaged["c"].tolist() == [2.5, -2.5]
        assert found["untouched"]
        assert found["count"] == 2


def test_runner_joins_an_existing_group_and_leaves_it_to_its_owner(ranks):
    assert [f["runner"] for f in ranks["found"]] == [(2, True, "gloo")] * 2
    assert ranks["exit"] == [True, True]
