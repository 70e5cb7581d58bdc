"""The built-in hooks, validation and testing with a model sharded by FSDP2, on two gloo ranks.

One spawned pair of ranks trains the BatchNorm toy under ``FullyShardedDataParallel`` with
``SyncBuffersHook``, ``EarlyStoppingHook`` (which must stop both ranks after epoch 2 of 4), a
logger line every iteration, validation every epoch and a test at the end; each rank works in
its own folder, so the files show who writes what. The test process checks the weights against
the plain-torch reference of DDP's arithmetic and recomputes the metric in one process over the
whole validation set.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pytest
import torch
from dist_toys import (
    BATCH,
    EPOCHS,
    N_TRAIN,
    N_VAL,
    IndexedDataset,
    MSEMetric,
    assert_close,
    dump,
    files_under,
    loader_cfg,
    make_model,
    reference_training,
    runner_kwargs,
    spawn_findings,
)
from test_fsdp import FSDP, GLOO, full_state

from fengine.hooks import Hook
from fengine.runner import Runner

STOP = {"type": "EarlyStoppingHook", "monitor": "toy/mse", "rule": "less", "min_delta": 1e9, "patience": 1}


class MetricsSeen(Hook):
    """Keeps the metrics every validation epoch hands to the hooks."""

    def __init__(self) -> None:
        self.seen: list[dict[str, float]] = []

    def after_val_epoch(self, runner: Any, metrics: dict[str, float] | None = None) -> None:
        self.seen.append(dict(metrics or {}))




def _ranks(rank: int, out: str) -> None:
    work = os.path.join(out, f"rank{rank}")
    seen = MetricsSeen()
    evaluation = loader_cfg(IndexedDataset(N_VAL, seed=1), 2, shuffle=False)
    runner = Runner(**runner_kwargs(
        work, make_model(), BATCH, launcher="pytorch", env_cfg=GLOO, cfg={"model_wrapper_cfg": FSDP},
        train_cfg={"by_epoch": True, "max_epochs": 2 * EPOCHS, "val_interval": 1},
        val_dataloader=evaluation, val_cfg={}, val_evaluator=MSEMetric(),
        test_dataloader=evaluation, test_cfg={}, test_evaluator=MSEMetric(),
        default_hooks={"checkpoint": None, "logger": {"type": "LoggerHook", "interval": 1}},
        custom_hooks=[{"type": "SyncBuffersHook"}, STOP, seen], log_level="INFO",
    ))  # fmt: skip
    runner.train()
    found: dict[str, Any] = {"stopped": (runner.epoch, runner.iter), "val": seen.seen}
    found["state"] = full_state(runner.model.module)
    found["test"] = runner.test()
    found["files"] = files_under(work)
    dump(os.path.join(out, f"rank{rank}.pkl"), found)


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("fsdp_hooks")
    return {"out": out, "found": spawn_findings(_ranks, out, timeout=240)}


def test_early_stopping_stops_every_rank_after_the_same_epoch(ranks):
    per_epoch = N_TRAIN // (2 * BATCH)
    assert [r["stopped"] for r in ranks["found"]] == [(EPOCHS, EPOCHS * per_epoch)] * 2
    assert [len(r["val"]) for r in ranks["found"]] == [EPOCHS, EPOCHS]
    assert ranks["found"][0]["val"] == ranks["found"][1]["val"]  # one metric, broadcast


def test_sync_buffers_keeps_ddps_arithmetic_under_sharding(ranks):
    expected = reference_training(2)  # two ranks' BatchNorm statistics, averaged every epoch
    for found in ranks["found"]:
        assert_close(found["state"], expected, rtol=1e-5)
    buffers = [n for n in expected if "running" in n]
    assert buffers and all(torch.equal(ranks["found"][0]["state"][n], ranks["found"][1]["state"][n]) for n in buffers)


def _one_process_mse(state: dict[str, torch.Tensor]) -> float:
    model = make_model()
    model.load_state_dict(state)
    model.eval()
    data = IndexedDataset(N_VAL, seed=1)
    with torch.no_grad():
        return float(((torch.stack(model(data.x)).double() - data.y.double()) ** 2).mean())


def test_validation_and_test_collect_every_sample_into_the_one_process_metric(ranks):
    for found in ranks["found"]:
        expected = _one_process_mse(found["state"])
        assert found["test"]["toy/mse"] == pytest.approx(expected, rel=1e-6, abs=0)
        assert found["val"][-1]["toy/mse"] == pytest.approx(expected, rel=1e-6, abs=0)  # the last epoch's weights
    assert found["val"][0]["toy/mse"] != found["val"][-1]["toy/mse"]


def test_only_rank_zero_writes_the_log_and_the_scalars(ranks):
    rank0, rank1 = (r["files"] for r in ranks["found"])
    assert rank1 == []
    (log,) = [f for f in rank0 if f.endswith(".log")]
    (scalars,) = [f for f in rank0 if f.endswith("scalars.json")]
    lines = [json.loads(line) for line in (ranks["out"] / "rank0" / scalars).read_text().splitlines()]
    train = [line for line in lines if "loss" in line]
    assert [line["step"] for line in train] == list(range(1, EPOCHS * N_TRAIN // (2 * BATCH) + 1))
    assert all(line["lr"] == 0.1 for line in train)
    val = [line["toy/mse"] for line in lines if "toy/mse" in line]
    assert val == [v["toy/mse"] for v in ranks["found"][0]["val"]]
    text = (ranks["out"] / "rank0" / log).read_text()
    logged = re.findall(r"Epoch\(val\) \[(\d+)\]\[\d+/\d+\]\s+toy/mse: ([0-9.]+)", text)
    assert logged == [(str(i + 1), f"{v['toy/mse']:.4f}") for i, v in enumerate(ranks["found"][0]["val"])]
    assert f"Epoch(test) [2/2]    toy/mse: {ranks['found'][0]['test']['toy/mse']:.4f}" in text
