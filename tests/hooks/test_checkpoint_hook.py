"""CheckpointHook: pure handlers over scripted and generated runs (spec §6.6, A9–A13, A17)."""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.core import effects as fx
from fengine.core.events import Event
from fengine.core.run import EventInfo
from fengine.hooks import CheckpointHook
from fengine.hooks.checkpoint_state import CheckpointState
from fengine.registry import HOOKS
from fengine.testing import EventStep, RunScript, Simulation, check_hook, events


def epoch_run(
    max_epochs: int, scores: Sequence[float | None] = (), iters: int = 2, key: str = "acc"
) -> RunScript:
    """An epoch-based run validating after every epoch with ``{key: scores[e]}``."""
    steps = [EventStep(Event.BEFORE_RUN, 0, 0), EventStep(Event.BEFORE_TRAIN, 0, 0)]
    it = 0
    for epoch in range(max_epochs):
        steps.append(EventStep(Event.BEFORE_TRAIN_EPOCH, epoch, it))
        for b in range(iters):
            steps.append(EventStep(Event.AFTER_TRAIN_ITER, epoch, it, EventInfo(batch_idx=b)))
            it += 1
        steps.append(EventStep(Event.AFTER_TRAIN_EPOCH, epoch, it))
        if scores:
            metrics = {key: scores[epoch]}
            steps.append(EventStep(Event.AFTER_VAL_EPOCH, epoch + 1, it, EventInfo(metrics=metrics)))
    steps.append(EventStep(Event.AFTER_TRAIN, max_epochs, it))
    return RunScript(tuple(steps), max_epochs, max_epochs * iters, True, {"train": iters, "val": 1})


def iter_run(max_iters: int, val_at: dict[int, float] | None = None) -> RunScript:
    """An iteration-based run; ``val_at`` maps ``runner.iter`` after a validation to its acc."""
    steps = [EventStep(Event.BEFORE_TRAIN, 0, 0), EventStep(Event.BEFORE_TRAIN_EPOCH, 0, 0)]
    for it in range(max_iters):
        steps.append(EventStep(Event.AFTER_TRAIN_ITER, 0, it, EventInfo(batch_idx=it)))
        if val_at and it + 1 in val_at:
            info = EventInfo(metrics={"acc": val_at[it + 1]})
            steps.append(EventStep(Event.AFTER_VAL_EPOCH, 0, it + 1, info))
    steps.append(EventStep(Event.AFTER_TRAIN_EPOCH, 0, max_iters))
    steps.append(EventStep(Event.AFTER_TRAIN, 0, max_iters))
    return RunScript(tuple(steps), 1, max_iters, False, {"train": 4, "val": 1})


def play(hook: CheckpointHook, script: RunScript, **changes: object) -> Simulation:
    return Simulation(hook, script.initial_state(**changes)).play(script)


def names(sim: Simulation) -> list[str]:
    return sorted(os.path.basename(p) for p in sim.files)


def test_a9_interval_saving() -> None:
    sim = play(CheckpointHook(interval=2), epoch_run(11))
    assert names(sim) == sorted(f"epoch_{e}.pth" for e in (2, 4, 6, 8, 10, 11))
    assert sim.last_checkpoint == os.path.join("work_dir", "epoch_11.pth")


def test_a10_max_keep_ckpts() -> None:
    sim = play(CheckpointHook(interval=1, max_keep_ckpts=2, save_best=None), epoch_run(5))
    assert names(sim) == ["epoch_4.pth", "epoch_5.pth"]
    assert sim.message_hub.info["keep_ckpt_ids"] == [4, 5]
    assert sim.last_checkpoint == os.path.join("work_dir", "epoch_5.pth")
    sim = play(CheckpointHook(interval=1, max_keep_ckpts=3), epoch_run(11))
    assert sim.checkpoints["work_dir/epoch_11.pth"]["hook_states"]["CheckpointHook"].keep_ckpt_ids == (9, 10, 11)


def test_a11_best_does_not_add_regular_checkpoints_and_is_resumable() -> None:
    hook = CheckpointHook(interval=2, save_best="acc")
    sim = play(hook, epoch_run(5, [0.1, 0.2, 0.3, 0.2, 0.5]))
    # MMEngine also writes epoch_3.pth (a regular save forced by the improvement); fengine does not.
    assert names(sim) == ["best_acc_epoch_5.pth", "epoch_2.pth", "epoch_4.pth", "epoch_5.pth"]
    assert sim.message_hub.info["best_score"] == 0.5
    best = [e for e in sim.effects if isinstance(e, fx.SaveCheckpoint) and "best_" in e.path]
    assert [os.path.basename(e.path) for e in best] == [f"best_acc_epoch_{n}.pth" for n in (1, 2, 3, 5)]
    assert all(e.save_optimizer and e.save_param_scheduler and not e.update_last for e in best)
    # epoch_2 and epoch_5 improved right after their regular save: rewritten in place with the new best.
    regular = [os.path.basename(e.path) for e in sim.effects if isinstance(e, fx.SaveCheckpoint) and "best_" not in e.path]
    assert regular == ["epoch_2.pth", "epoch_2.pth", "epoch_4.pth", "epoch_5.pth", "epoch_5.pth"]
    sim = play(CheckpointHook(interval=2, save_best="auto", max_keep_ckpts=2), epoch_run(5, [0.1, 0.2, 0.3, 0.2, 0.5]))
    assert names(sim) == ["best_acc_epoch_5.pth", "epoch_4.pth", "epoch_5.pth"]
    assert sim.message_hub.info["keep_ckpt_ids"] == [4, 5]


def test_a12_best_file_naming_and_several_keys() -> None:
    sim = play(CheckpointHook(interval=-1, save_best="coco/bbox_mAP"), epoch_run(3, [0.3, 0.1, 0.2], key="coco/bbox_mAP"))
    assert names(sim) == ["best_coco_bbox_mAP_epoch_1.pth", "epoch_3.pth"]
    assert sim.message_hub.info["best_score"] == 0.3
    sim = play(CheckpointHook(by_epoch=False, save_best="acc"), iter_run(9, {9: 0.5}))
    assert "best_acc_iter_9.pth" in names(sim)
    hook = CheckpointHook(save_best=["acc", "mIoU"])
    run = epoch_run(1).initial_state()
    sim = Simulation(hook, run)
    sim.step(EventStep(Event.AFTER_VAL_EPOCH, 1, 2, EventInfo(metrics={"acc": 0.5, "mIoU": 0.25})))
    info = sim.message_hub.info
    assert (info["best_score_acc"], info["best_score_mIoU"]) == (0.5, 0.25)
    assert info["best_ckpt_mIoU"] == os.path.join("work_dir", "best_mIoU_epoch_1.pth")
    with pytest.raises(Exception, match="'acc' is not among the metrics"):
        sim.step(EventStep(Event.AFTER_VAL_EPOCH, 2, 4, EventInfo(metrics={"top": 1.0})))


def test_a13_template_save_begin_and_iteration_mode() -> None:
    hook = CheckpointHook(interval=1, save_last=False, filename_tmpl="ckpt_{:03d}.pth", save_begin=2)
    assert names(play(hook, epoch_run(4))) == ["ckpt_002.pth", "ckpt_003.pth", "ckpt_004.pth"]
    sim = play(CheckpointHook(interval=5, by_epoch=False, max_keep_ckpts=1), iter_run(12))
    assert names(sim) == ["iter_12.pth"]
    assert [e.meta for e in sim.effects if isinstance(e, fx.SaveCheckpoint)][-1] == {"epoch": 0, "iter": 12}


@pytest.mark.parametrize(("begin", "expected"), [(5, [5, 7, 9, 11]), (1, [1, 3, 5, 7, 9, 11]), (0, [2, 4, 6, 8, 10, 11])])
def test_save_begin(begin: int, expected: list[int]) -> None:
    sim = play(CheckpointHook(interval=2, save_begin=begin), epoch_run(11))
    assert names(sim) == sorted(f"epoch_{e}.pth" for e in expected)


def test_by_epoch_follows_the_loop_unless_set() -> None:
    # MMEngine (by_epoch=True in an iteration loop) writes a single epoch_1.pth at the end.
    assert names(play(CheckpointHook(interval=2), iter_run(6))) == ["iter_2.pth", "iter_4.pth", "iter_6.pth"]
    sim = play(CheckpointHook(interval=1, by_epoch=True), iter_run(6))
    assert names(sim) == ["epoch_1.pth"]
    assert sim.checkpoints["work_dir/epoch_1.pth"]["meta"] == {"epoch": 1, "iter": 6}


def test_standalone_val_saves_best_without_optimizer() -> None:
    hook = CheckpointHook(save_best="acc")
    run = epoch_run(1).initial_state(max_epochs=0, max_iters=0, dataloader_len={"val": 1})
    sim = Simulation(hook, run)
    sim.step(EventStep(Event.AFTER_VAL_EPOCH, 0, 0, EventInfo(metrics={"acc": 0.9})))
    (save,) = [e for e in sim.effects if isinstance(e, fx.SaveCheckpoint)]
    assert os.path.basename(save.path) == "best_acc_epoch_0.pth"
    assert not save.save_optimizer and not save.save_param_scheduler


def test_default_auto_with_empty_or_no_metrics_saves_no_best() -> None:
    sim = play(CheckpointHook(), epoch_run(2, [None, None]))
    assert names(sim) == ["epoch_2.pth"]
    sim = Simulation(CheckpointHook(), epoch_run(1).initial_state())
    sim.step(EventStep(Event.AFTER_VAL_EPOCH, 1, 2, EventInfo(metrics={})))
    assert sim.files == set() and "metrics` is empty" in sim.logs[-1]


def test_out_dir_publish_and_extra_kwargs() -> None:
    hook = CheckpointHook(interval=1, out_dir="/shared", published_keys=["meta", "state_dict"], save_best="acc", foo=1)
    sim = play(hook, epoch_run(2, [0.5, 0.4]), work_dir="/runs/exp1/")
    assert names(sim) == sorted(
        ["best_acc_epoch_1.pth", "epoch_1.pth", "epoch_2.pth", "best_acc_epoch_1-published.pth", "epoch_2-published.pth"]
    )
    assert all(p.startswith("/shared/exp1/") for p in sim.files)
    published = [e for e in sim.effects if isinstance(e, fx.PublishCheckpoint)]
    assert [(e.src, e.keys) for e in published] == [
        ("/shared/exp1/epoch_2.pth", ("meta", "state_dict")),
        ("/shared/exp1/best_acc_epoch_1.pth", ("meta", "state_dict")),
    ]
    assert all(e.extra == {"foo": 1} for e in sim.effects if isinstance(e, fx.SaveCheckpoint))


def test_resume_from_message_hub_trims_and_keeps_best() -> None:
    hook = CheckpointHook(interval=1, max_keep_ckpts=1, save_best="acc")
    run = epoch_run(5).initial_state(resumed=True)
    sim = Simulation(hook, run)
    runtime = {"keep_ckpt_ids": [2, 3, 4], "best_score": 0.7, "best_ckpt": "work_dir/best_acc_epoch_3.pth"}
    sim.step(EventStep(Event.AFTER_LOAD_CHECKPOINT, 4, 8, EventInfo(checkpoint={"message_hub": {"runtime_info": runtime}})))
    sim.files |= {"work_dir/epoch_2.pth", "work_dir/epoch_3.pth", "work_dir/epoch_4.pth", "work_dir/best_acc_epoch_3.pth"}
    sim.step(EventStep(Event.BEFORE_TRAIN, 4, 8))
    assert names(sim) == ["best_acc_epoch_3.pth", "epoch_4.pth"]
    sim.step(EventStep(Event.AFTER_TRAIN_EPOCH, 4, 10))
    sim.step(EventStep(Event.AFTER_VAL_EPOCH, 5, 10, EventInfo(metrics={"acc": 0.6})))
    assert names(sim) == ["best_acc_epoch_3.pth", "epoch_5.pth"]
    sim.step(EventStep(Event.AFTER_VAL_EPOCH, 5, 10, EventInfo(metrics={"acc": 0.8})))
    assert names(sim) == ["best_acc_epoch_5.pth", "epoch_5.pth"]
    # Without `resume` a loaded checkpoint's hub is not taken over (MMEngine loads it only on resume).
    fresh = Simulation(hook, epoch_run(5).initial_state())
    fresh.step(EventStep(Event.AFTER_LOAD_CHECKPOINT, 0, 0, EventInfo(checkpoint={"message_hub": {"runtime_info": runtime}})))
    assert fresh.run_state.hook_states["CheckpointHook"] == CheckpointState()


def test_a17_rules_and_argument_errors() -> None:
    assert CheckpointHook(save_best=["acc", "mIoU"], rule=None).rules == ["greater", "greater"]
    assert CheckpointHook(save_best=["FID", "IS"], rule=["less", "greater"]).rules == ["less", "greater"]
    assert CheckpointHook(greater_keys="acc").greater_keys == ("acc",)
    # A list is kept as given (MMEngine); rules are inferred from it all the same.
    given = ["score"]
    hook = CheckpointHook(save_best="score", rule=None, greater_keys=given, less_keys=["err"])
    assert hook.greater_keys is given and hook.less_keys == ["err"] and hook.rules == ["greater"]
    assert CheckpointHook(save_best="err", rule=None, less_keys=["err"]).rules == ["less"]
    with pytest.raises(ValueError, match='"file_client_args" and "backend_args" cannot be set at the same time'):
        CheckpointHook(file_client_args={"backend": "disk"}, backend_args={"backend": "local"})
    assert CheckpointHook().rules == ["greater"] and CheckpointHook(save_best=None).rules == []
    with pytest.raises(AssertionError, match='Number of "rule"'):
        CheckpointHook(save_best=["acc"], rule=["greater", "loss"])
    with pytest.raises(KeyError, match="'max'"):
        CheckpointHook(save_best="acc", rule="max")
    with pytest.raises(ValueError, match="Cannot infer the rule for key 'f1'"):
        CheckpointHook(save_best="f1", rule=None)
    with pytest.raises(AssertionError, match="auto"):
        CheckpointHook(save_best=["auto", "acc"])
    with pytest.raises(ValueError, match="duplicate"):
        CheckpointHook(save_best=["acc", "acc"])
    with pytest.raises(TypeError, match="save_best"):
        CheckpointHook(save_best=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="published_keys"):
        CheckpointHook(published_keys=[1])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="save_begin"):
        CheckpointHook(save_begin=-1)
    with pytest.raises(ValueError, match="backend_args"):
        CheckpointHook(file_client_args={}, backend_args={})
    with pytest.raises(ValueError, match="filename_tmpl"):
        CheckpointHook(filename_tmpl="ckpt_{name}.pth")
    with pytest.raises(TypeError, match="interval"):
        CheckpointHook(interval="1")  # type: ignore[arg-type]
    with pytest.warns(UserWarning, match="'val_loss' is compared with rule='greater'"):
        CheckpointHook(save_best="val_loss")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        CheckpointHook(save_best="val_loss", rule=None)


def test_facade_priority_registry_and_direct_calls() -> None:
    hook = HOOKS.build({"type": "CheckpointHook", "interval": 1})
    assert isinstance(hook, CheckpointHook) and hook.priority == "VERY_LOW"
    assert hook.to_fn_hook("ckpt").priority_value == 90
    sim = Simulation(hook, epoch_run(2).initial_state())
    hook.after_train_epoch(sim)
    hook.after_val_epoch(sim, metrics={"acc": 0.5})
    assert names(sim) == ["best_acc_epoch_0.pth", "epoch_1.pth"]


def test_contract() -> None:
    check_hook(CheckpointHook(interval=1, max_keep_ckpts=2), scripts=events(metric_names=("acc",)), max_examples=15)


@settings(max_examples=40, deadline=None)
@given(
    script=events(metric_names=("acc", "loss"), max_epochs=5, max_iters=15, with_test=False),
    interval=st.sampled_from([-1, 1, 2, 3]),  # 0 and other negatives are rejected
    keep=st.integers(1, 3),
    key=st.sampled_from(["acc", "loss", "auto"]),
    save_last=st.booleans(),
)
def test_kept_files_and_best_over_any_run(script: RunScript, interval: int, keep: int, key: str, save_last: bool) -> None:
    hook = CheckpointHook(interval=interval, max_keep_ckpts=keep, save_best=key, save_last=save_last, rule=None)
    sim = play(hook, script)
    regular = [p for p in sim.files if not os.path.basename(p).startswith("best_")]
    saved = [e.path for e in sim.effects if isinstance(e, fx.SaveCheckpoint) and e.update_last]
    assert len(regular) <= keep
    if saved:
        assert saved[-1] in sim.files and sim.last_checkpoint == saved[-1]
    vals = [s.info.metrics for s in script.steps if s.event is Event.AFTER_VAL_EPOCH]
    metric = next(iter(vals[0])) if key == "auto" else key  # 'auto': the first metric returned
    seen = [m[metric] for m in vals]
    best_files = [p for p in sim.files if os.path.basename(p).startswith("best_")]
    assert len(best_files) == 1
    expected = max(seen) if metric == "acc" else min(seen)
    assert sim.message_hub.info["best_score"] == expected
    # The best file is the one written when the best score was first reached.
    first = next(s for s in script.steps if s.event is Event.AFTER_VAL_EPOCH and s.info.metrics[metric] == expected)
    unit, n = ("epoch", first.epoch) if script.train_by_epoch else ("iter", first.iter)
    assert os.path.basename(best_files[0]) == f"best_{metric}_{unit}_{n}.pth"
    assert sim.checkpoints[best_files[0]]["hook_states"]["CheckpointHook"].best_scores == (expected,)


def test_state_survives_plain_round_trip() -> None:
    from fengine.core.plain import from_plain, to_plain

    state = CheckpointState((1, 2), "a.pth", 2, "acc", (0.5,), ("b.pth",))
    assert from_plain(to_plain(state)) == state


NAMES = st.none() | st.text(max_size=12)


@settings(max_examples=30, deadline=None)
@given(
    ids=st.lists(st.integers(0, 10**6), max_size=4),
    last=NAMES,
    step=st.none() | st.integers(0, 10**6),
    auto=NAMES,
    scores=st.lists(st.none() | st.floats(allow_nan=False), max_size=3),
    paths=st.lists(NAMES, max_size=3),
)
def test_a_state_survives_a_checkpoint_file(
    ids: list[int],
    last: str | None,
    step: int | None,
    auto: str | None,
    scores: list[float | None],
    paths: list[str | None],
) -> None:
    """Saved under its tag ``hooks.CheckpointState`` and read back by the checkpoint decoder."""
    from fengine.core.plain import to_plain
    from fengine.testing import through_checkpoint

    state = CheckpointState(tuple(ids), last, step, auto, tuple(scores), tuple(paths))
    assert to_plain(state)["__record__"] == "hooks.CheckpointState"
    restored = through_checkpoint(state)
    assert type(restored) is CheckpointState and restored == state


# -- end to end with the Runner: files on disk and their contents ---------------------------------

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runner"))
from runner_toys import ToyMetric, toy_kwargs  # noqa: E402

from fengine.runner.runner import Runner  # noqa: E402


def train(work_dir: Path, epochs: int = 5, checkpoint: dict[str, Any] | None = None, **overrides: Any) -> Runner:
    hooks = {"checkpoint": {"type": "CheckpointHook", **(checkpoint or {})}, "logger": None}
    train_cfg = {"by_epoch": True, "max_epochs": epochs, "val_interval": 1}
    runner = Runner(**toy_kwargs(work_dir, default_hooks=hooks, train_cfg=train_cfg, **overrides))
    runner.train()
    return runner


def on_disk(work_dir: Path) -> list[str]:
    return sorted(p.name for p in work_dir.glob("*.pth"))


def test_e2e_a10_max_keep_ckpts(tmp_path: Path) -> None:
    train(tmp_path, 5, {"interval": 1, "max_keep_ckpts": 2, "save_best": None})
    assert on_disk(tmp_path) == ["epoch_4.pth", "epoch_5.pth"]
    assert (tmp_path / "last_checkpoint").read_text() == str(tmp_path / "epoch_5.pth")
    saved = torch.load(tmp_path / "epoch_5.pth", weights_only=False)
    assert saved["message_hub"]["runtime_info"]["keep_ckpt_ids"] == [4, 5]


def test_e2e_a11_best_is_resumable_and_no_extra_regular_file(tmp_path: Path) -> None:
    metric = ToyMetric(values=[0.1, 0.2, 0.3, 0.2, 0.5])
    train(tmp_path, 5, {"interval": 2, "save_best": "acc"}, val_evaluator=metric)
    assert on_disk(tmp_path) == ["best_acc_epoch_5.pth", "epoch_2.pth", "epoch_4.pth", "epoch_5.pth"]
    best = torch.load(tmp_path / "best_acc_epoch_5.pth", weights_only=False)
    assert "optimizer" in best and (best["meta"]["epoch"], best["meta"]["iter"]) == (5, 20)
    regular = torch.load(tmp_path / "epoch_5.pth", weights_only=False)  # rewritten after the improvement
    assert regular["message_hub"]["runtime_info"]["best_ckpt"] == str(tmp_path / "best_acc_epoch_5.pth")
    resumed = train(
        tmp_path, 6, {"interval": 2, "save_best": "acc"}, val_evaluator=ToyMetric(values=[0.6]),
        load_from=str(tmp_path / "best_acc_epoch_5.pth"), resume=True,
    )
    assert (resumed.epoch, resumed.iter) == (6, 24)
    assert on_disk(tmp_path) == ["best_acc_epoch_6.pth", "epoch_2.pth", "epoch_4.pth", "epoch_5.pth", "epoch_6.pth"]


def test_e2e_a15_resume_trims_to_the_new_max_keep(tmp_path: Path) -> None:
    train(tmp_path, 4, {"interval": 1, "max_keep_ckpts": 3, "save_best": None})
    assert on_disk(tmp_path) == ["epoch_2.pth", "epoch_3.pth", "epoch_4.pth"]
    runner = train(tmp_path, 5, {"interval": 1, "max_keep_ckpts": 1, "save_best": None}, resume=True)
    assert on_disk(tmp_path) == ["epoch_5.pth"]
    assert (runner.epoch, runner.iter) == (5, 20)


def test_e2e_a16_published_copy_and_runtime_info(tmp_path: Path) -> None:
    train(tmp_path, 3, {"interval": 1, "save_best": None, "published_keys": ["meta", "state_dict"]})
    (published,) = [name for name in on_disk(tmp_path) if name.startswith("epoch_3-")]
    assert re.fullmatch(r"epoch_3-[0-9a-f]{8}\.pth", published)
    assert list(torch.load(tmp_path / published, weights_only=False)) == ["meta", "state_dict"]
    saved = torch.load(tmp_path / "epoch_3.pth", weights_only=False)
    assert (saved["meta"]["epoch"], saved["meta"]["iter"]) == (3, 12)
    runtime = saved["message_hub"]["runtime_info"]
    assert (runtime["epoch"], runtime["iter"], runtime["last_ckpt"]) == (2, 11, str(tmp_path / "epoch_3.pth"))


def test_e2e_iteration_run_follows_the_loop_kind(tmp_path: Path) -> None:
    hooks = {"checkpoint": {"type": "CheckpointHook", "interval": 3, "save_best": None}, "logger": None}
    Runner(**toy_kwargs(tmp_path, default_hooks=hooks, train_cfg={"by_epoch": False, "max_iters": 6, "val_interval": 10})).train()
    assert on_disk(tmp_path) == ["iter_3.pth", "iter_6.pth"]
    hooks["checkpoint"] = {"type": "CheckpointHook", "interval": 1, "by_epoch": True, "save_best": None}
    Runner(**toy_kwargs(tmp_path / "b", default_hooks=hooks, train_cfg={"by_epoch": False, "max_iters": 6, "val_interval": 10})).train()
    assert on_disk(tmp_path / "b") == ["epoch_1.pth"]
    meta = torch.load(tmp_path / "b" / "epoch_1.pth", weights_only=False)["meta"]
    assert (meta["epoch"], meta["iter"]) == (1, 6)


def test_e2e_standalone_val_saves_best(tmp_path: Path) -> None:
    kwargs = toy_kwargs(tmp_path, default_hooks={"checkpoint": {"type": "CheckpointHook", "save_best": "acc"}})
    for key in ("train_dataloader", "train_cfg", "optim_wrapper"):
        kwargs.pop(key)
    assert Runner(**kwargs).val() == {"acc": 1}
    assert on_disk(tmp_path) == ["best_acc_epoch_0.pth"]
    assert "optimizer" not in torch.load(tmp_path / "best_acc_epoch_0.pth", weights_only=False)


@pytest.mark.parametrize("out_dir", [None, "elsewhere", "same"])
def test_out_dir_shows_the_folder_checkpoints_go_to(tmp_path: Path, out_dir: str | None) -> None:
    """``out_dir`` as given until the hook is in a runner, then MMEngine's resolved folder."""
    work_dir = tmp_path / "run"
    given_dir = {None: None, "elsewhere": str(tmp_path / "elsewhere"), "same": str(work_dir)}[out_dir]
    hook = CheckpointHook(interval=1, out_dir=given_dir, save_best=None)
    assert hook.out_dir == given_dir
    runner = Runner(**toy_kwargs(work_dir, default_hooks={"checkpoint": hook, "logger": None}))
    expected = str(tmp_path / "elsewhere" / "run") if out_dir == "elsewhere" else str(work_dir)
    assert hook.out_dir == expected
    runner.train()
    assert {"epoch_1.pth", "epoch_2.pth"} <= set(os.listdir(expected))
    assert runner.message_hub.get_info("last_ckpt") == os.path.join(expected, "epoch_2.pth")


class _AccAndLoss(ToyMetric):
    def compute_metrics(self, results: list[Any]) -> dict[str, Any]:
        acc = super().compute_metrics(results)["acc"]
        return {"acc": acc, "loss": acc}


@pytest.mark.parametrize("keys", [["acc"], ["acc", "loss"]])
def test_best_checkpoint_paths_are_the_hooks_records(tmp_path: Path, keys: list[str]) -> None:
    """``best_ckpt_path`` (one key) or ``best_ckpt_path_dict`` (several), as MMEngine names them."""
    metric = _AccAndLoss(values=[0.2, 0.5, 0.3])
    save_best: str | list[str] = keys[0] if len(keys) == 1 else keys
    hook = CheckpointHook(interval=1, save_best=save_best, rule=["greater", "less"][: len(keys)] if len(keys) > 1 else None)
    other = "best_ckpt_path_dict" if len(keys) == 1 else "best_ckpt_path"
    assert not hasattr(hook, other)
    runner = Runner(**toy_kwargs(tmp_path, default_hooks={"checkpoint": hook, "logger": None}, val_evaluator=metric,
                                 train_cfg={"by_epoch": True, "max_epochs": 3, "val_interval": 1}))
    before = hook.best_ckpt_path if len(keys) == 1 else hook.best_ckpt_path_dict
    assert before == (None if len(keys) == 1 else dict.fromkeys(keys))
    runner.train()
    hub = runner.message_hub.runtime_info
    if len(keys) == 1:
        assert hook.best_ckpt_path == hub["best_ckpt"] == str(tmp_path / "best_acc_epoch_2.pth")
    else:
        assert hook.best_ckpt_path_dict == {"acc": hub["best_ckpt_acc"], "loss": hub["best_ckpt_loss"]}
        assert hook.best_ckpt_path_dict == {
            "acc": str(tmp_path / "best_acc_epoch_2.pth"), "loss": str(tmp_path / "best_loss_epoch_1.pth"),
        }
    assert not hasattr(hook, other)


@pytest.mark.parametrize("keys", [["acc"], ["acc", "loss"]])
def test_before_train_takes_the_best_paths_the_hub_records(tmp_path: Path, keys: list[str]) -> None:
    """MMEngine's ``before_train`` reads the best paths from the message hub, whoever wrote them;
    a path outside the run is then replaced by the run's own best but never deleted."""
    work_dir = tmp_path / "run"
    metric = _AccAndLoss(values=[0.2, 0.5, 0.3])
    save_best: str | list[str] = keys[0] if len(keys) == 1 else keys
    hook = CheckpointHook(interval=1, save_best=save_best, rule=["greater", "less"][: len(keys)] if len(keys) > 1 else None)
    runner = Runner(**toy_kwargs(work_dir, default_hooks={"checkpoint": hook, "logger": None}, val_evaluator=metric,
                                 train_cfg={"by_epoch": True, "max_epochs": 3, "val_interval": 1}))
    outside = tmp_path / "outside.pth"
    outside.write_bytes(b"not this run's")
    first = "best_ckpt" if len(keys) == 1 else f"best_ckpt_{keys[0]}"
    runner.message_hub.update_info(first, str(outside))

    def best() -> dict[str, str | None]:
        return {keys[0]: hook.best_ckpt_path} if len(keys) == 1 else hook.best_ckpt_path_dict

    hook.before_train(runner)
    assert best() == {keys[0]: str(outside), **dict.fromkeys(keys[1:])}
    runner.train()
    assert outside.read_bytes() == b"not this run's"
    expected = {"acc": str(work_dir / "best_acc_epoch_2.pth"), "loss": str(work_dir / "best_loss_epoch_1.pth")}
    assert best() == {key: expected[key] for key in keys}
    assert sorted(p.name for p in work_dir.glob("best_*.pth")) == sorted(os.path.basename(expected[k]) for k in keys)
