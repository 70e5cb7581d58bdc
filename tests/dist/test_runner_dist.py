"""Runner(launcher='pytorch') on two gloo ranks against one process and a plain-torch reference.

One spawned pair of ranks runs every scenario in turn (each rank an interpreter of its own, as
under torchrun; one start-up shared by all the tests here); the tests read what each rank found.
"""

from __future__ import annotations

import atexit
import os
from typing import Any

import pytest
import torch
import torch.distributed as torch_dist
from dist_toys import (
    BATCH,
    EPOCHS,
    N_TRAIN,
    N_VAL,
    IdMetric,
    IndexedDataset,
    assert_close,
    dump,
    epoch_order,
    files_under,
    load,
    loader_cfg,
    make_model,
    reference_training,
    runner_kwargs,
    spawn,
)
from torch.distributed.algorithms.ddp_comm_hooks.default_hooks import allreduce_hook

from fengine import dist
from fengine.runner import Runner
from fengine.runner.checkpoint import read_checkpoint

GLOO = {"dist_cfg": {"backend": "gloo", "timeout": 60}}


def _state(runner: Runner) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in runner.model.module.state_dict().items()}


def _report_group_at_exit(path: str) -> None:
    dump(path, torch_dist.is_initialized())




def _ranks_session(rank: int, out: str, one_process_checkpoint: str) -> None:
    # Registered before any runner exists, so it runs after the teardown the runner registers.
    atexit.register(_report_group_at_exit, os.path.join(out, f"exit{rank}.pkl"))
    work = os.path.join(out, f"rank{rank}")  # one folder per rank shows who writes what
    found: dict[str, Any] = {}

    metric = IdMetric()
    runner = Runner(
        **runner_kwargs(
            work,
            make_model(),
            BATCH,
            val_dataloader=loader_cfg(
                IndexedDataset(N_VAL, seed=1, labels_are_ids=True), 2, shuffle=False
            ),
            val_cfg={},
            val_evaluator=metric,
            launcher="pytorch",
            env_cfg=GLOO,
        )
    )
    found["launch"] = (
        runner.rank,
        runner.world_size,
        dist.get_local_rank(),
        torch_dist.get_backend(),
    )
    found["wrapper"] = type(runner.model).__name__
    runner.train()
    found["bn"], found["seen"] = _state(runner), list(runner.train_dataloader.dataset.seen)
    found["metrics"], found["gathered"] = runner.val(), metric.gathered
    found["files"] = files_under(work)

    accumulating = Runner(
        **runner_kwargs(
            work + "_acc",
            make_model(),
            BATCH,
            optim_wrapper={
                "optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9},
                "accumulative_counts": 2,
            },
            launcher="pytorch",
            env_cfg=GLOO,
        )
    )
    synced_at: list[int] = []

    def counting_hook(state, bucket):  # type: ignore[no-untyped-def]  # DDP checks the annotations
        synced_at.append(accumulating.iter)
        return allreduce_hook(state, bucket)

    accumulating.model.register_comm_hook(None, counting_hook)
    accumulating.train()
    found["acc"], found["synced_at"] = _state(accumulating), synced_at

    unused = Runner(
        **runner_kwargs(
            work + "_unused",
            make_model(unused=True),
            BATCH,
            launcher="pytorch",
            env_cfg=GLOO,
            cfg={"model_wrapper_cfg": {"find_unused_parameters": True}},
        )
    )
    unused.train()
    found["unused"] = (unused.model.find_unused_parameters, unused.iter)

    by_iter = Runner(
        **runner_kwargs(
            work + "_iter",
            make_model(),
            BATCH,
            train_cfg={"by_epoch": False, "max_iters": 5, "val_interval": 5},
            val_dataloader=loader_cfg(IndexedDataset(N_VAL), 2, shuffle=False),
            val_cfg={},
            val_evaluator=IdMetric(),
            launcher="pytorch",
            env_cfg=GLOO,
        )
    )
    by_iter.train()
    found["by_iter"] = _state(by_iter)

    scratch = Runner(
        **runner_kwargs(work + "_mlp", _mlp(), BATCH, launcher="pytorch", env_cfg=GLOO)
    )
    scratch.train()
    found["mlp"] = _state(scratch)
    resumed = Runner(
        **runner_kwargs(
            work + "_resumed",
            _mlp(),
            BATCH,
            launcher="pytorch",
            env_cfg=GLOO,
            load_from=one_process_checkpoint,
            resume=True,
        )
    )
    resumed.train()
    found["resumed"] = (_state(resumed), resumed.epoch, resumed.iter)
    found["distributed_after"] = dist.is_distributed()
    dump(os.path.join(out, f"rank{rank}.pkl"), found)


def _mlp() -> torch.nn.Module:
    # float64: one process and two ranks sum the same batch in different orders; in float64 that
    # rounding stays far below the tolerance, so any real difference shows.
    return make_model(batch_norm=False, dtype=torch.float64)


def _one_process(work_dir: str, **overrides: Any) -> Runner:
    """The MLP trained in one process on the same global batches (two ranks' batches together)."""
    runner = Runner(**runner_kwargs(work_dir, _mlp(), 2 * BATCH, **overrides))
    runner.train()
    return runner


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("one")
    single = _state_of(_one_process(str(folder)))
    out = tmp_path_factory.mktemp("ranks")
    spawn(_ranks_session, str(out), str(folder / "epoch_1.pth"), timeout=90)
    return {
        "out": out,
        "single": single,
        "ranks": [load(out / f"rank{r}.pkl") for r in range(2)],
        "exit": [load(out / f"exit{r}.pkl") for r in range(2)],
    }


def _state_of(runner: Runner) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in runner.model.state_dict().items()}


def test_runner_joins_the_group_from_torchrun_variables_and_destroys_it_at_exit(session):
    ranks = session["ranks"]
    assert [r["launch"] for r in ranks] == [(0, 2, 0, "gloo"), (1, 2, 1, "gloo")]
    assert [r["wrapper"] for r in ranks] == ["MMDistributedDataParallel"] * 2
    assert [r["distributed_after"] for r in ranks] == [True, True]  # later runners reuse the group
    assert session["exit"] == [False, False]


def test_batchnorm_training_matches_the_reference_and_buffers_agree(session):
    rank0, rank1 = (r["bn"] for r in session["ranks"])
    expected = reference_training(world_size=2)
    assert_close(rank0, expected)
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    assert rank0["norm.num_batches_tracked"].item() == EPOCHS * N_TRAIN // (2 * BATCH)


def test_accumulation_synchronises_only_the_updating_micro_steps(session):
    ranks = session["ranks"]
    assert_close(ranks[0]["acc"], reference_training(world_size=2, accumulate=2))
    assert all(torch.equal(ranks[0]["acc"][k], ranks[1]["acc"][k]) for k in ranks[0]["acc"])
    iters = EPOCHS * N_TRAIN // (2 * BATCH)
    assert ranks[0]["synced_at"] == ranks[1]["synced_at"] == list(range(1, iters, 2))


def test_ranks_see_disjoint_shards_reshuffled_every_epoch(session):
    seen = [r["seen"] for r in session["ranks"]]
    per_epoch = N_TRAIN // 2
    for epoch in range(EPOCHS):
        order = epoch_order(epoch)
        shards = [s[epoch * per_epoch : (epoch + 1) * per_epoch] for s in seen]
        assert shards == [order[0::2], order[1::2]]
        assert sorted(shards[0] + shards[1]) == list(range(N_TRAIN))
    assert epoch_order(0) != epoch_order(1)


def test_evaluation_gathers_every_sample_once_before_the_metric(session):
    rank0, rank1 = session["ranks"]
    assert rank0["gathered"] == list(range(N_VAL))  # 8 processed (one padding repeat), 7 kept
    assert rank1["gathered"] == []  # compute_metrics ran on rank 0 only
    assert rank0["metrics"] == rank1["metrics"] == {"ids/count": N_VAL}


def test_only_rank_zero_writes_checkpoints_logs_and_scalars(session):
    rank0, rank1 = (r["files"] for r in session["ranks"])
    assert {"epoch_1.pth", "epoch_2.pth", "best_ids_count_epoch_1.pth"} == {
        f for f in rank0 if f.endswith(".pth")
    }
    assert "last_checkpoint" in rank0
    assert any(f.endswith(".log") for f in rank0) and any(f.endswith("scalars.json") for f in rank0)
    assert rank1 == []


def test_model_wrapper_cfg_reaches_the_wrapper(session):
    for found in session["ranks"]:
        assert found["unused"] == (True, EPOCHS * N_TRAIN // (2 * BATCH))


def test_iteration_based_validation_averages_the_buffers_first(session):
    rank0, rank1 = (r["by_iter"] for r in session["ranks"])
    assert rank0["norm.num_batches_tracked"].item() == 5  # no epoch ended: validation synced
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name


def test_checkpoints_resume_across_world_sizes(session, tmp_path):
    single = session["single"]
    rank0, rank1 = session["ranks"]
    # Without BatchNorm, two ranks with batches of 3 train as one process with batches of 6.
    assert_close(rank0["mlp"], single, rtol=1e-12)
    state, epoch, iters = rank0["resumed"]  # one process's epoch 1, continued by two
    assert (epoch, iters) == (EPOCHS, EPOCHS * N_TRAIN // (2 * BATCH))
    assert_close(state, single, rtol=1e-12)
    assert all(torch.equal(state[k], rank1["resumed"][0][k]) for k in state)
    two_ranks_checkpoint = session["out"] / "rank0_mlp" / "epoch_1.pth"
    assert read_checkpoint(str(two_ranks_checkpoint))["meta"]["epoch"] == 1
    continued = _one_process(str(tmp_path), load_from=str(two_ranks_checkpoint), resume=True)
    assert (continued.epoch, continued.iter) == (epoch, iters)
    assert_close(_state_of(continued), single, rtol=1e-12)
