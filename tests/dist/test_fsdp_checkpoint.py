"""Sharded checkpoints of an FSDP run: DCP directories, resumed on 2 ranks, in one process and on 4.

Two spawned ranks train 3 epochs with AdamW and EMAHook under ``FullyShardedDataParallel``,
saving a DCP directory per epoch (``max_keep_ckpts=2``), then resume a second run from
``epoch_2/``; a third run accumulates gradients over 2 iterations and saves every 3, so its
``iter_3/`` lies inside an accumulation group, and a fourth resumes from there. The test process
resumes the same directories in one process without sharding, four spawned processes resume
``epoch_2/`` (each with a quarter of the global batch), and plain runs load the last one's
weights with ``load_from``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from typing import Any

import pytest
import torch
from dist_toys import dump, make_model, runner_kwargs, spawn_findings
from test_fsdp import FSDP, GLOO, TOLERANCE, full_state, functional_share
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict
from torch.distributed.tensor import DTensor

from fengine.core.plain import UntrustedCheckpointError
from fengine.runner import Runner
from fengine.runner.checkpoint import CheckpointError, read_checkpoint
from fengine.runner.file_removal import CHECKPOINT_MARKER
from fengine.runner.shard_refs import ShardRef

GLOBAL_BATCH = 4  # 2 ranks x 2, 4 ranks x 1, one process x 4: the same samples per step
EMA = {"type": "EMAHook", "momentum": 0.1}
SETTINGS: dict[str, Any] = {
    "optim_wrapper": {"optimizer": {"type": "AdamW", "lr": 0.01, "weight_decay": 0.01}},
    "param_scheduler": {"type": "MultiStepLR", "milestones": [2], "gamma": 0.5},
    "train_cfg": {"by_epoch": True, "max_epochs": 3},
    "default_hooks": {"checkpoint": {"type": "CheckpointHook", "interval": 1, "max_keep_ckpts": 2}},
    "custom_hooks": [EMA],
}
ACCUMULATE: dict[str, Any] = {
    "optim_wrapper": {"optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9}, "accumulative_counts": 2},
    "param_scheduler": None,
    "train_cfg": {"by_epoch": True, "max_epochs": 2},
    "default_hooks": {"checkpoint": {"type": "CheckpointHook", "interval": 3, "by_epoch": False}},
    "custom_hooks": [],
}
ITERS = 3 * 24 // GLOBAL_BATCH  # the 3-epoch run's iterations


def _runner(work_dir: str, world_size: int, **overrides: Any) -> Runner:
    sharded = {"launcher": "pytorch", "env_cfg": GLOO, "cfg": {"model_wrapper_cfg": FSDP}} if world_size > 1 else {}
    settings = {**SETTINGS, **sharded, **overrides}
    return Runner(**runner_kwargs(work_dir, make_model(batch_norm=False), GLOBAL_BATCH // world_size, **settings))


def _whole(value: Any) -> Any:
    if isinstance(value, DTensor):
        return value.full_tensor()
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _whole(v) for k, v in value.items()}
    return value


def _outcome(runner: Runner) -> dict[str, Any]:
    """Weights, EMA average, optimizer state (whole tensors, by parameter name), lrs and counters."""
    model = runner.model.module if hasattr(runner.model, "module") else runner.model
    optimizer = get_optimizer_state_dict(model, runner.optim_wrapper.optimizer,
                                         options=StateDictOptions(full_state_dict=True))  # fmt: skip
    ema = runner.hook_states().get("EMAHook")
    return {
        "state": full_state(model),
        "ema": None if ema is None else {**_whole(dict(ema.ema.params)), "steps": ema.ema.steps},
        "optimizer": _whole(optimizer["state"]),
        "lr": [g["lr"] for g in runner.optim_wrapper.optimizer.param_groups],
        "iter": runner.iter,
    }


def _ranks(rank: int, out: str) -> None:
    whole = _runner(os.path.join(out, "whole"), 2)
    whole.train()
    found = {"whole": _outcome(whole)}
    resumed = _runner(os.path.join(out, "resumed"), 2, resume=True, load_from=os.path.join(out, "whole", "epoch_2"))
    resumed.train()
    found["resumed"] = _outcome(resumed)
    hook = {"type": "CheckpointHook", "interval": 1, "save_format": "full"}
    full = _runner(os.path.join(out, "full"), 2, train_cfg={"by_epoch": True, "max_epochs": 1},
                   default_hooks={"checkpoint": hook})  # fmt: skip
    full.train()
    found["full"] = _outcome(full)
    accumulated = _runner(os.path.join(out, "acc"), 2, **ACCUMULATE)
    accumulated.train()
    found["acc"] = _outcome(accumulated)
    again = _runner(os.path.join(out, "acc_resumed"), 2, **ACCUMULATE, resume=True,
                    load_from=os.path.join(out, "acc", "iter_3"))  # fmt: skip
    again.train()
    found["acc_resumed"] = _outcome(again)
    dump(os.path.join(out, f"rank{rank}.pkl"), found)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("fsdp_ckpt")
    return {"out": out, "ranks": spawn_findings(_ranks, out, timeout=300)}


def _max_diff(found: Any, expected: Any) -> float:
    """The largest absolute difference between two equally nested dicts of tensors and numbers."""
    if isinstance(expected, dict):
        assert sorted(found) == sorted(expected)
        return max((_max_diff(found[k], expected[k]) for k in expected), default=0.0)
    if isinstance(expected, torch.Tensor):
        assert found.shape == expected.shape
        return (found.double() - expected.double()).abs().max().item() if expected.numel() else 0.0
    assert found == expected
    return 0.0


def _same(found: dict[str, Any], expected: dict[str, Any]) -> None:
    """Bit for bit: weights, EMA average, optimizer state, lrs, counters."""
    assert found["iter"] == expected["iter"] and found["lr"] == expected["lr"]
    for key in ("state", "ema", "optimizer"):
        assert _max_diff(found[key], expected[key]) == 0.0, key


def _close(found: dict[str, Any], expected: dict[str, Any]) -> dict[str, float]:
    """Within :data:`TOLERANCE`; returns the differences."""
    assert found["iter"] == expected["iter"] and found["lr"] == expected["lr"]
    diffs = {key: _max_diff(found[key], expected[key]) for key in ("state", "ema", "optimizer")}
    assert max(diffs.values()) <= TOLERANCE, diffs
    return diffs


def test_each_epoch_is_a_published_dcp_directory_and_old_ones_are_deleted(saved):
    work = saved["out"] / "whole"
    names = sorted(p.name for p in work.iterdir() if p.name.startswith(("epoch", ".epoch")))
    assert names == ["epoch_2", "epoch_3"]  # max_keep_ckpts=2 removed epoch_1/; no leftovers
    assert (work / "last_checkpoint").read_text().strip() == str(work / "epoch_3")
    assert sorted(p.name for p in (work / "epoch_3").iterdir()) == [
        ".fengine-checkpoint", ".metadata", "__0_0.distcp", "__1_0.distcp", "fengine.pth",
    ]  # fmt: skip
    meta = torch.load(work / "epoch_3" / "fengine.pth", weights_only=True)
    assert (meta["meta"]["epoch"], meta["meta"]["iter"]) == (3, ITERS)
    assert "state_dict" not in meta and "optimizer" not in meta  # those are the DCP files


def test_the_ema_average_rides_in_the_dcp_data_stored_once(saved):
    """fengine.pth names where each shard is: the average (in MMEngine's layout the checkpoint's
    ``state_dict``, so the DCP ``model``) is the same tensor in the hook's state, stored once;
    the raw weights of ``ema_state_dict`` are the DCP ``shards``."""
    meta = read_checkpoint(str(saved["out"] / "whole" / "epoch_3" / "fengine.pth"))
    names = ["l1.weight", "l1.bias", "l2.weight", "l2.bias"]
    average = meta["hook_states"]["EMAHook"].ema
    assert dict(average.params) == {n: ShardRef("model", n) for n in names} and average.steps == ITERS
    raw = {k: v for k, v in meta["ema_state_dict"].items() if k != "steps"}
    assert raw == {f"module.{n}": ShardRef("shards", str(i)) for i, n in enumerate(names)}
    assert int(meta["ema_state_dict"]["steps"]) == ITERS


def test_resuming_on_the_same_ranks_continues_bit_for_bit(saved):
    for ranks in saved["ranks"]:
        assert ranks["whole"]["iter"] == ITERS
        _same(ranks["resumed"], ranks["whole"])
        assert _max_diff(ranks["whole"]["ema"], ranks["whole"]["state"] | {"steps": ITERS}) > 1e-3  # a real average


def test_resuming_inside_an_accumulation_group_continues_bit_for_bit(saved):
    meta = read_checkpoint(str(saved["out"] / "acc" / "iter_3" / "fengine.pth"))
    assert meta["grads"] == {n: ShardRef("shards", str(i)) for i, n in enumerate(["l1.weight", "l1.bias", "l2.weight", "l2.bias"])}
    for ranks in saved["ranks"]:
        _same(ranks["acc_resumed"], ranks["acc"])


def test_one_process_resumes_inside_the_accumulation_group(saved, tmp_path):
    runner = _runner(str(tmp_path), 1, **ACCUMULATE, resume=True, load_from=str(saved["out"] / "acc" / "iter_3"))
    runner.train()
    _close(_outcome(runner), saved["ranks"][0]["acc"])


def test_save_format_full_writes_one_ordinary_file_on_rank_0(saved, tmp_path):
    work = saved["out"] / "full"
    assert sorted(p.name for p in work.iterdir() if "epoch" in p.name) == ["epoch_1.pth"]
    checkpoint = torch.load(work / "epoch_1.pth", weights_only=True)
    found = saved["ranks"][0]["full"]
    assert "optimizer" not in checkpoint and sorted(checkpoint["state_dict"]) == sorted(found["state"])
    for name, tensor in found["state"].items():  # MMEngine's layout: state_dict is the average
        assert type(checkpoint["state_dict"][name]) is torch.Tensor
        assert torch.equal(checkpoint["state_dict"][name], found["ema"][name]), name
        assert torch.equal(checkpoint["ema_state_dict"][f"module.{name}"], tensor), name
    runner = _runner(str(tmp_path), 1, load_from=str(work / "epoch_1.pth"), custom_hooks=[])
    runner.load_or_resume()
    assert _max_diff(dict(runner.model.state_dict()), {k: found["ema"][k] for k in found["state"]}) == 0.0


def test_an_unknown_save_format_is_named_at_construction(tmp_path):
    with pytest.raises(ValueError, match=re.escape("save_format must be 'sharded' (a sharded run's DCP directories) or 'full' (one .pth of the gathered weights on rank 0), got 'zip'")):
        _runner(str(tmp_path), 1, default_hooks={"checkpoint": {"type": "CheckpointHook", "save_format": "zip"}})


def test_one_process_resumes_the_two_rank_directory_that_last_checkpoint_names(saved, tmp_path):
    shutil.copytree(saved["out"] / "whole" / "epoch_2", tmp_path / "epoch_2")
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "epoch_2"))
    runner = _runner(str(tmp_path), 1, resume=True)
    runner.train()
    _close(_outcome(runner), saved["ranks"][0]["whole"])
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".pth")) == ["epoch_3.pth"]


def _four(rank: int, out: str, checkpoint: str) -> None:
    runner = _runner(os.path.join(out, "four"), 4, resume=True, load_from=checkpoint)
    runner.train()
    dump(os.path.join(out, f"rank{rank}.pkl"), {"resumed": _outcome(runner), "share": functional_share()})


@pytest.fixture(scope="module")
def four(saved: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """Four processes resume the two-rank ``epoch_2/`` (one spawn serves every four-rank check)."""
    out = tmp_path_factory.mktemp("fsdp_four")
    return spawn_findings(_four, out, str(saved["out"] / "whole" / "epoch_2"), world_size=4, timeout=240)


def test_four_processes_resume_the_two_rank_directory(saved, four):
    for found in four:
        _close(found["resumed"], saved["ranks"][0]["whole"])


def test_four_ranks_each_hold_a_quarter_of_the_functional_state(four):
    for found in four:
        assert found["share"]["sharded"] / found["share"]["plain"] == pytest.approx(0.25, abs=0.01)
        assert found["share"]["close"] <= TOLERANCE  # one step, sharded and not, on the same batch


def test_load_from_a_directory_gives_a_plain_run_the_average_as_mmengine_does(saved, tmp_path):
    runner = _runner(str(tmp_path), 1, load_from=str(saved["out"] / "whole" / "epoch_3"), custom_hooks=[])
    runner.load_or_resume()
    loaded = {k: v.detach() for k, v in runner.model.state_dict().items()}
    whole = saved["ranks"][0]["whole"]
    assert _max_diff(loaded, {k: whole["ema"][k] for k in whole["state"]}) == 0.0
    assert runner.iter == 0  # weights only


@pytest.mark.parametrize("removed", [".metadata", "fengine.pth"])
def test_an_incomplete_directory_is_named_before_training(saved, tmp_path, removed):
    copy = tmp_path / "epoch_3"
    shutil.copytree(saved["out"] / "whole" / "epoch_3", copy)
    (copy / removed).unlink()
    runner = _runner(str(tmp_path / "work"), 1, resume=True, load_from=str(copy))
    with pytest.raises(CheckpointError, match=re.escape(f"is not a complete sharded checkpoint: it lacks ['{removed}']")):
        runner.train()
    assert runner.iter == 0


def test_crafted_dcp_metadata_is_refused(saved, tmp_path):
    copy = tmp_path / "epoch_3"
    shutil.copytree(saved["out"] / "whole" / "epoch_3", copy)
    (copy / ".metadata").write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    runner = _runner(str(tmp_path / "work"), 1, load_from=str(copy))
    with pytest.raises(UntrustedCheckpointError, match=re.escape("refused 'os.system'")):
        runner.load_or_resume()
    assert (copy / CHECKPOINT_MARKER).is_file()


CONFIG = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "configs", "digits.py")


def test_the_cli_trains_sharded_under_torchrun_and_tests_the_directory_in_one_process(tmp_path):
    work = tmp_path / "work"
    options = ["--cfg-options", "model_wrapper_cfg.type=FullyShardedDataParallel",
               "train_cfg.max_epochs=1", "custom_hooks=[]"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    train = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
             "-m", "fengine", "train", CONFIG, "--launcher", "pytorch", "--work-dir", str(work), *options]  # fmt: skip
    done = subprocess.run(train, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (work / "last_checkpoint").read_text().strip() == str(work / "epoch_1")
    (log,) = work.glob("*/*.log")
    trained = re.findall(r"Epoch\(val\) \[1\]\[\d+/\d+\]\s+accuracy: ([0-9.]+)", log.read_text())
    test = [sys.executable, "-m", "fengine", "test", CONFIG, "--checkpoint", str(work / "epoch_1"),
            "--work-dir", str(tmp_path / "test")]  # fmt: skip
    done = subprocess.run(test, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    tested = re.findall(r"epoch_1: accuracy: ([0-9.]+)", done.stdout + done.stderr)
    assert trained and tested == trained[-1:]  # the one-process test sees the sharded run's weights
