"""Runner checkpoints: contents (A16), load_from, resume (A15), hook states, mid-epoch resume."""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from runner_toys import ToyModel, loader, toy_kwargs

from fengine.hooks import EMAHook, Hook
from fengine.runner.checkpoint import CheckpointError, read_checkpoint
from fengine.runner.runner import Runner

_MMENGINE_KEYS = ["meta", "state_dict", "message_hub", "optimizer"]
_RECORD_KEYS = ["params", "buffers", "opt_state", "step", "ema", "epoch", "iter", "inner_iter", "rng", "hook_states"]
_FENGINE_KEYS = [*_RECORD_KEYS, "data_position"]


def _checkpoint_hook(**kwargs: Any) -> dict[str, Any]:
    return {"checkpoint": {"type": "CheckpointHook", "interval": 1, "by_epoch": True, "save_best": None, **kwargs}}


def _files(tmp_path: Any) -> list[str]:
    return sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "*.pth")))


def test_a16_checkpoint_contents(tmp_path: Any) -> None:
    runner = Runner(
        **toy_kwargs(
            tmp_path,
            train_cfg={"by_epoch": True, "max_epochs": 3},
            default_hooks=_checkpoint_hook(published_keys=["meta", "state_dict"]),
        )
    )
    runner.train()
    checkpoint = read_checkpoint(str(tmp_path / "epoch_3.pth"))
    assert list(checkpoint) == _MMENGINE_KEYS + _FENGINE_KEYS
    meta = checkpoint["meta"]
    assert (meta["epoch"], meta["iter"]) == (3, 12)
    assert sorted(meta) == sorted(
        ["epoch", "iter", "cfg", "seed", "experiment_name", "time", "fengine_version", "dataset_meta", "checksum"]
    )
    assert meta["seed"] == 0 and meta["experiment_name"] == runner.experiment_name
    hub = checkpoint["message_hub"]
    assert (hub["runtime_info"]["epoch"], hub["runtime_info"]["iter"]) == (2, 11)
    assert {"train/lr", "train/loss", "train/time", "train/data_time"} <= set(hub["log_scalars"])
    assert list(checkpoint["hook_states"]) == runner.hook_names
    position = checkpoint["data_position"]
    assert (position["epoch"], position["iter"], position["inner_iter"], position["by_epoch"]) == (3, 12, 0, True)
    assert position["validated"] is False  # saved in after_train_epoch, before that epoch's validation
    for name, tensor in runner.model.state_dict().items():
        assert torch.equal(checkpoint["state_dict"][name], tensor)
    (published,) = [p for p in _files(tmp_path) if p.startswith("epoch_3-")]
    assert len(published) == len("epoch_3-12345678.pth")
    assert list(read_checkpoint(str(tmp_path / published))) == ["meta", "state_dict"]
    assert (tmp_path / "last_checkpoint").read_text() == str(tmp_path / "epoch_3.pth")


def test_param_schedulers_follow_the_optimizer(tmp_path: Any) -> None:
    runner = Runner(
        **toy_kwargs(
            tmp_path,
            param_scheduler={"type": "MultiStepLR", "milestones": [1], "by_epoch": True},
            default_hooks=_checkpoint_hook(),
        )
    )
    runner.train()
    checkpoint = read_checkpoint(str(tmp_path / "epoch_2.pth"))
    assert list(checkpoint) == [*_MMENGINE_KEYS, "param_schedulers", *_FENGINE_KEYS]
    assert checkpoint["param_schedulers"] == [s.state_dict() for s in runner.param_schedulers]


def test_iteration_checkpoints_in_an_epoch_loop_record_the_position(tmp_path: Any) -> None:
    runner = Runner(**toy_kwargs(tmp_path, default_hooks=_checkpoint_hook(by_epoch=False, interval=3)))
    runner.train()
    position = read_checkpoint(str(tmp_path / "iter_6.pth"))["data_position"]
    assert (position["epoch"], position["iter"], position["inner_iter"]) == (1, 6, 2)
    assert position["epoch_start_rng"] is not None


def test_load_from_loads_weights_only(tmp_path: Any) -> None:
    first = Runner(**toy_kwargs(tmp_path / "a", default_hooks=_checkpoint_hook()))
    first.train()
    second = Runner(**toy_kwargs(tmp_path / "b", load_from=str(tmp_path / "a" / "epoch_2.pth"), default_hooks=_checkpoint_hook()))
    recorder: list[Any] = []

    class Peek(Hook):
        def before_train(self, runner: Any) -> None:
            recorder.append((runner.epoch, runner.iter, {k: v.clone() for k, v in runner.model.state_dict().items()}))

    second.register_hook(Peek())
    second.train()
    epoch, iteration, weights = recorder[0]
    assert (epoch, iteration) == (0, 0)
    for name, tensor in first.model.state_dict().items():
        assert torch.equal(weights[name], tensor)


def test_a15_resume_trims_old_checkpoints(tmp_path: Any) -> None:
    Runner(**toy_kwargs(tmp_path, train_cfg={"by_epoch": True, "max_epochs": 4}, default_hooks=_checkpoint_hook(max_keep_ckpts=3))).train()
    assert _files(tmp_path) == ["epoch_2.pth", "epoch_3.pth", "epoch_4.pth"]
    runner = Runner(
        **toy_kwargs(tmp_path, train_cfg={"by_epoch": True, "max_epochs": 5}, resume=True, default_hooks=_checkpoint_hook(max_keep_ckpts=1))
    )
    runner.train()
    assert _files(tmp_path) == ["epoch_5.pth"]
    assert (runner.epoch, runner.iter) == (5, 20)


class _Crash(Hook):
    """Simulates the process dying after iteration ``at`` (and its checkpoint) completed."""

    def __init__(self, at: int) -> None:
        self.at = at

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        if runner.iter == self.at:
            raise KeyboardInterrupt


def _exact_kwargs(path: Any, by_epoch: bool, plain_loader: bool, **overrides: Any) -> dict[str, Any]:
    """Shuffled data, dropout, momentum and validation: everything a resume must restore."""
    data = {"dataset": {"type": "ToyDataset"}, "sampler": {"type": "DefaultSampler", "shuffle": True}, "batch_size": 3}
    train_cfg = {"by_epoch": True, "max_epochs": 3} if by_epoch else {"by_epoch": False, "max_iters": 10, "val_interval": 3}
    return toy_kwargs(
        path,
        model={"type": "ToyModel", "dropout": 0.5},
        # torch's own shuffling draws each pass's order from the global generator
        train_dataloader=loader(shuffle=True) if plain_loader else data,
        val_dataloader=dict(data, sampler={"type": "DefaultSampler", "shuffle": False}),
        train_cfg=train_cfg,
        optim_wrapper={"optimizer": {"type": "SGD", "lr": 0.01, "momentum": 0.9}},
        default_hooks=_checkpoint_hook(by_epoch=False, interval=1),
        randomness={"seed": 7},
        **overrides,
    )


@pytest.mark.parametrize(
    ("by_epoch", "plain_loader", "crash_at"),
    [(True, False, 2), (True, False, 4), (True, True, 5), (False, False, 3), (False, True, 4), (False, True, 6)],
)
def test_resume_mid_epoch_matches_the_uninterrupted_run(tmp_path: Any, by_epoch: bool, plain_loader: bool, crash_at: int) -> None:
    """Crash before iteration ``crash_at``, resume from the newest checkpoint, compare bitwise."""
    reference = Runner(**_exact_kwargs(tmp_path / "ref", by_epoch, plain_loader))
    reference.train()
    with pytest.raises(KeyboardInterrupt):
        Runner(**_exact_kwargs(tmp_path / "run", by_epoch, plain_loader, custom_hooks=[_Crash(crash_at)])).train()
    assert (tmp_path / "run" / "last_checkpoint").read_text().endswith(f"iter_{crash_at}.pth")
    resumed = Runner(**_exact_kwargs(tmp_path / "run", by_epoch, plain_loader, resume=True))
    resumed.train()
    assert (resumed.epoch, resumed.iter) == ((reference.epoch, reference.iter))
    for (name, a), b in zip(reference.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    for a, b in zip(reference.optim_wrapper.state_dict()["state"].values(), resumed.optim_wrapper.state_dict()["state"].values()):
        assert torch.equal(a["momentum_buffer"], b["momentum_buffer"])


def test_hook_states_are_restored_strictly(tmp_path: Any) -> None:
    Runner(**toy_kwargs(tmp_path, default_hooks=_checkpoint_hook())).train()
    path = str(tmp_path / "epoch_2.pth")

    class Stateless(Hook):
        def before_train(self, runner: Any) -> None:
            pass

    runner = Runner(**toy_kwargs(tmp_path, default_hooks=_checkpoint_hook(), custom_hooks=[Stateless()]))
    runner.resume(path)
    saved = read_checkpoint(path)["hook_states"]["CheckpointHook"]
    assert runner.hook_states()["CheckpointHook"].last_ckpt == saved.last_ckpt
    stateful = Runner(**toy_kwargs(tmp_path / "c", default_hooks=_checkpoint_hook(), custom_hooks=[EMAHook()]))
    with pytest.raises(CheckpointError, match=r"missing \['EMAHook'\], unknown \[\]"):
        stateful.resume(path)
    fewer = Runner(**toy_kwargs(tmp_path / "d", default_hooks={**_checkpoint_hook(), "timer": None}))
    with pytest.raises(CheckpointError, match=r"missing \[\], unknown \['IterTimerHook'\]"):
        fewer.resume(path)


def test_resume_reports_damaged_files_and_missing_counters(tmp_path: Any) -> None:
    runner = Runner(**toy_kwargs(tmp_path))
    path = str(tmp_path / "bare.pth")
    torch.save({"state_dict": ToyModel().state_dict()}, path)
    with pytest.raises(CheckpointError, match="has no `epoch`/`iter` counters"):
        runner.resume(path)
    Path(path).write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        runner.resume(path)


def test_auto_resume_without_a_checkpoint_starts_fresh(tmp_path: Any) -> None:
    runner = Runner(**toy_kwargs(tmp_path, resume=True, default_hooks=_checkpoint_hook()))
    runner.train()
    assert (runner.epoch, runner.iter) == (2, 8)


def test_save_checkpoint_arguments(tmp_path: Any) -> None:
    runner = Runner(**toy_kwargs(tmp_path))
    runner.train_loop  # noqa: B018
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    with pytest.raises(TypeError, match="`meta` should be a dict or None"):
        runner.save_checkpoint(str(tmp_path), "x.pth", meta=[1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="cannot be set at the same time"):
        runner.save_checkpoint(str(tmp_path), "x.pth", file_client_args={}, backend_args={})
    with pytest.raises(ValueError, match="only local checkpoint storage"):
        runner.save_checkpoint(str(tmp_path), "x.pth", backend_args={"backend": "petrel"})
    runner.save_checkpoint(str(tmp_path), "x.pth", by_epoch=False, save_optimizer=False)
    meta = read_checkpoint(str(tmp_path / "x.pth"))["meta"]
    assert (meta["epoch"], meta["iter"]) == (0, 1)
