"""Sharded checkpoints of an FSDP run: DCP directories, resumed on 2 ranks and in one process.

Two spawned ranks train 3 epochs with AdamW under ``FullyShardedDataParallel``, saving a DCP
directory per epoch (``max_keep_ckpts=2``), then resume a second run from ``epoch_2/``. The test
process resumes the same directory in one process without sharding, and loads the last one's
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
from dist_toys import BATCH, dump, load, make_model, runner_kwargs, spawn
from test_fsdp import FSDP, GLOO, TOLERANCE, full_state

from fengine.core.plain import UntrustedCheckpointError
from fengine.runner import Runner
from fengine.runner.checkpoint import CheckpointError
from fengine.runner.file_removal import CHECKPOINT_MARKER

SETTINGS: dict[str, Any] = {
    "optim_wrapper": {"optimizer": {"type": "AdamW", "lr": 0.01, "weight_decay": 0.01}},
    "param_scheduler": {"type": "MultiStepLR", "milestones": [2], "gamma": 0.5},
    "train_cfg": {"by_epoch": True, "max_epochs": 3},
    "default_hooks": {"checkpoint": {"type": "CheckpointHook", "interval": 1, "max_keep_ckpts": 2}},
    "custom_hooks": [],
}


def _runner(work_dir: str, batch: int, **overrides: Any) -> Runner:
    return Runner(**runner_kwargs(work_dir, make_model(batch_norm=False), batch, **{**SETTINGS, **overrides}))


def _outcome(runner: Runner) -> dict[str, Any]:
    return {
        "state": full_state(runner.model.module if hasattr(runner.model, "module") else runner.model),
        "lr": [g["lr"] for g in runner.optim_wrapper.optimizer.param_groups],
        "iter": runner.iter,
    }


def _ranks(rank: int, out: str) -> None:
    whole = _runner(os.path.join(out, "whole"), BATCH, launcher="pytorch", env_cfg=GLOO,
                    cfg={"model_wrapper_cfg": FSDP})  # fmt: skip
    whole.train()
    found = {"whole": _outcome(whole)}
    resumed = _runner(os.path.join(out, "resumed"), BATCH, launcher="pytorch", env_cfg=GLOO,
                      cfg={"model_wrapper_cfg": FSDP}, resume=True,
                      load_from=os.path.join(out, "whole", "epoch_2"))  # fmt: skip
    resumed.train()
    found["resumed"] = _outcome(resumed)
    averaged = _runner(os.path.join(out, "ema"), BATCH, launcher="pytorch", env_cfg=GLOO,
                       cfg={"model_wrapper_cfg": FSDP}, custom_hooks=[{"type": "EMAHook"}])  # fmt: skip
    try:
        averaged.train()
    except CheckpointError as error:
        found["ema"] = (str(error), averaged.iter, sorted(os.listdir(os.path.join(out, "ema"))))
    hook = {"type": "CheckpointHook", "interval": 1, "save_format": "full"}
    full = _runner(os.path.join(out, "full"), BATCH, launcher="pytorch", env_cfg=GLOO,
                   cfg={"model_wrapper_cfg": FSDP}, train_cfg={"by_epoch": True, "max_epochs": 1},
                   default_hooks={"checkpoint": hook})  # fmt: skip
    full.train()
    found["full"] = _outcome(full)
    dump(os.path.join(out, f"rank{rank}.pkl"), found)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("fsdp_ckpt")
    spawn(_ranks, str(out), timeout=240)
    return {"out": out, "ranks": [load(out / f"rank{r}.pkl") for r in range(2)]}


def test_each_epoch_is_a_published_dcp_directory_and_old_ones_are_deleted(saved):
    work = saved["out"] / "whole"
    names = sorted(p.name for p in work.iterdir() if p.name.startswith(("epoch", ".epoch")))
    assert names == ["epoch_2", "epoch_3"]  # max_keep_ckpts=2 removed epoch_1/; no leftovers
    assert (work / "last_checkpoint").read_text().strip() == str(work / "epoch_3")
    assert sorted(p.name for p in (work / "epoch_3").iterdir()) == [
        ".fengine-checkpoint", ".metadata", "__0_0.distcp", "__1_0.distcp", "fengine.pth",
    ]  # fmt: skip
    meta = torch.load(work / "epoch_3" / "fengine.pth", weights_only=True)
    assert (meta["meta"]["epoch"], meta["meta"]["iter"]) == (3, 12)
    assert "state_dict" not in meta and "optimizer" not in meta  # those are the DCP files


def test_resuming_on_the_same_ranks_continues_bit_for_bit(saved):
    for ranks in saved["ranks"]:
        whole, resumed = ranks["whole"], ranks["resumed"]
        assert resumed["iter"] == whole["iter"] == 12
        assert resumed["lr"] == whole["lr"]
        for name, tensor in whole["state"].items():
            assert torch.equal(resumed["state"][name], tensor), name


def test_an_ema_average_stops_the_sharded_save_on_every_rank_with_its_keys(saved):
    for ranks in saved["ranks"]:
        message, iteration, names = ranks["ema"]
        assert message.startswith(f"cannot save {str(saved['out'] / 'ema' / 'epoch_1')!r}: the checkpoint entries ['ema_state_dict.module.l1.weight'")
        assert "leave EMAHook out of FSDP runs" in message
        assert iteration == 4 and not [n for n in names if "epoch" in n]  # nothing half-written


def test_save_format_full_writes_one_ordinary_file_on_rank_0(saved, tmp_path):
    work = saved["out"] / "full"
    assert sorted(p.name for p in work.iterdir() if "epoch" in p.name) == ["epoch_1.pth"]
    checkpoint = torch.load(work / "epoch_1.pth", weights_only=True)
    weights = saved["ranks"][0]["full"]["state"]
    assert "optimizer" not in checkpoint and sorted(checkpoint["state_dict"]) == sorted(weights)
    for name, tensor in weights.items():
        assert type(checkpoint["state_dict"][name]) is torch.Tensor
        assert torch.equal(checkpoint["state_dict"][name], tensor), name
    runner = _runner(str(tmp_path), 2 * BATCH, load_from=str(work / "epoch_1.pth"))
    runner.load_or_resume()
    assert _max_diff(dict(runner.model.state_dict()), weights) == 0.0


def test_an_unknown_save_format_is_named_at_construction(tmp_path):
    with pytest.raises(ValueError, match=re.escape("save_format must be 'sharded' (a sharded run's DCP directories) or 'full' (one .pth of the gathered weights on rank 0), got 'zip'")):
        _runner(str(tmp_path), BATCH, default_hooks={"checkpoint": {"type": "CheckpointHook", "save_format": "zip"}})


def _max_diff(found: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> float:
    return max((found[k].double() - expected[k].double()).abs().max().item() for k in expected)


def test_one_process_resumes_the_two_rank_directory_that_last_checkpoint_names(saved, tmp_path):
    shutil.copytree(saved["out"] / "whole" / "epoch_2", tmp_path / "epoch_2")
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "epoch_2"))
    runner = _runner(str(tmp_path), 2 * BATCH, resume=True)
    runner.train()
    alone, whole = _outcome(runner), saved["ranks"][0]["whole"]
    assert alone["iter"] == 12 and alone["lr"] == whole["lr"]
    assert _max_diff(alone["state"], whole["state"]) <= TOLERANCE
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".pth")) == ["epoch_3.pth"]


def test_load_from_a_directory_gives_a_plain_run_the_weights(saved, tmp_path):
    runner = _runner(str(tmp_path), 2 * BATCH, load_from=str(saved["out"] / "whole" / "epoch_3"))
    runner.load_or_resume()
    loaded = {k: v.detach() for k, v in runner.model.state_dict().items()}
    assert _max_diff(loaded, saved["ranks"][0]["whole"]["state"]) == 0.0
    assert runner.iter == 0  # weights only


@pytest.mark.parametrize("removed", [".metadata", "fengine.pth"])
def test_an_incomplete_directory_is_named_before_training(saved, tmp_path, removed):
    copy = tmp_path / "epoch_3"
    shutil.copytree(saved["out"] / "whole" / "epoch_3", copy)
    (copy / removed).unlink()
    runner = _runner(str(tmp_path / "work"), 2 * BATCH, resume=True, load_from=str(copy))
    with pytest.raises(CheckpointError, match=re.escape(f"is not a complete sharded checkpoint: it lacks ['{removed}']")):
        runner.train()
    assert runner.iter == 0


def test_crafted_dcp_metadata_is_refused(saved, tmp_path):
    copy = tmp_path / "epoch_3"
    shutil.copytree(saved["out"] / "whole" / "epoch_3", copy)
    (copy / ".metadata").write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    runner = _runner(str(tmp_path / "work"), 2 * BATCH, load_from=str(copy))
    with pytest.raises(UntrustedCheckpointError, match="refused 'os.system'"):
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
