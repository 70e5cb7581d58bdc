"""What a checkpoint says never reaches outside the run: deletions, resume checks, tidy files."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from runner_toys import ToyMetric, ToyModel, toy_kwargs
from torch import nn

from fengine.runner.checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from fengine.runner.file_removal import CHECKPOINT_MARKER, marker_content
from fengine.runner.runner import Runner
from fengine.utils import fileio


def _kwargs(work_dir: Any, values: list[float], max_iters: int, **overrides: Any) -> dict[str, Any]:
    """An iteration run validating (and so improving ``acc``) after every iteration."""
    hook = {"type": "CheckpointHook", "interval": 1, "max_keep_ckpts": 1, "save_best": "acc", "rule": "greater"}
    return toy_kwargs(
        work_dir,
        train_cfg={"by_epoch": False, "max_iters": max_iters, "val_interval": 1},
        val_evaluator=ToyMetric(values=values),
        default_hooks={"checkpoint": hook},
        log_level="WARNING",
        **overrides,
    )


@pytest.fixture(scope="module")
def source_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A genuine run of 3 iterations (best at iteration 3, iter_3.pth kept)."""
    work_dir = tmp_path_factory.mktemp("source")
    Runner(**_kwargs(work_dir, [0.1, 0.2, 0.3], 3)).train()
    return work_dir


class _Warnings(logging.Handler):
    """Collects the messages of the runner's logger at WARNING and above."""

    def __init__(self, runner: Runner) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []
        runner.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _snapshot(root: Path) -> dict[str, Any]:
    """Every entry under ``root`` (not following links): file bytes' digest, link target or a folder mark."""
    entries: dict[str, Any] = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            key = os.path.relpath(path, root)
            if os.path.islink(path):
                entries[key] = ("link", os.readlink(path))
            elif os.path.isdir(path):
                entries[key] = ("dir",)
            else:
                entries[key] = ("file", hashlib.sha256(Path(path).read_bytes()).hexdigest())
    return entries


def _craft(path: Path, best: list[Any], keep: list[Any], last: Any, mmengine_layout: bool) -> None:
    """Rewrite the bookkeeping of the checkpoint at ``path`` (and re-stamp its checksum)."""
    checkpoint = read_checkpoint(str(path), decode=False)
    fields = checkpoint["hook_states"]["CheckpointHook"]["fields"]
    fields.update(best_ckpts=tuple(best), keep_ckpt_ids=tuple(keep), last_ckpt=last, best_scores=(0.0,) * len(best))
    info = checkpoint["message_hub"]["runtime_info"]
    info.update(keep_ckpt_ids=list(keep), last_ckpt=last, best_ckpt=best[0] if best else None, best_score=0.0)
    if mmengine_layout:
        checkpoint.pop("hook_states")
    save_checkpoint(checkpoint, str(path))


_TARGETS = (
    "outside_file", "outside_dir", "outside_ckpt_name", "outside_nested", "dotdot_file", "dotdot_dir",
    "link_dir", "through_link", "link_named_like_best", "inside_dir", "relative_outside", "outside_checkpoint",
    "own_iter_2", "work_dir",
)


def _target(name: str, work: Path, out: Path) -> str:
    return {
        "outside_file": str(out / "notes.txt"),
        "outside_dir": str(out / "data"),
        "outside_ckpt_name": str(out / "best_acc_iter_1.pth"),
        "outside_nested": str(out / "data" / "deep" / "iter_2.pth"),
        "dotdot_file": str(work / ".." / out.name / "notes.txt"),
        "dotdot_dir": str(work / ".." / out.name / "data"),
        "link_dir": str(work / "link_out"),
        "through_link": str(work / "link_out" / "iter_1.pth"),
        "link_named_like_best": str(work / "best_acc_iter_9.pth"),
        "inside_dir": str(work / "sub"),
        "relative_outside": os.path.relpath(out / "iter_1.pth"),
        "outside_checkpoint": str(out / "iter_3.pth"),
        "own_iter_2": str(work / "iter_2.pth"),
        "work_dir": str(work),
    }[name]


def _build_trees(base: Path, source: Path) -> tuple[Path, Path]:
    out, work = base / "outside", base / "work"
    (out / "data" / "deep").mkdir(parents=True)
    (out / "notes.txt").write_text("keep me")
    (out / "best_acc_iter_1.pth").write_bytes(b"not yours")
    (out / "iter_1.pth").write_bytes(b"not yours either")
    (out / "data" / "deep" / "iter_2.pth").write_bytes(b"deep")
    shutil.copy(source / "iter_3.pth", out / "iter_3.pth")  # a valid checkpoint outside
    work.mkdir()
    (work / "sub").mkdir()
    (work / "sub" / "epoch_1.pth").write_bytes(b"a folder without a marker")
    (work / "link_out").symlink_to(out)
    (work / "best_acc_iter_9.pth").symlink_to(out / "best_acc_iter_1.pth")
    shutil.copy(source / "iter_3.pth", work / "iter_3.pth")
    return work, out


@settings(max_examples=12)
@given(
    best=st.lists(st.sampled_from(_TARGETS), min_size=1, max_size=1),
    keep=st.lists(st.one_of(st.integers(0, 4), st.sampled_from(["../outside/notes", "/etc", "-1"])), max_size=3),
    last=st.sampled_from(_TARGETS),
    record=st.sampled_from(_TARGETS),
    mmengine_layout=st.booleans(),
)
def test_no_bookkeeping_from_a_checkpoint_deletes_anything_outside_the_work_dir(
    source_run: Path, best: list[str], keep: list[Any], last: str, record: str, mmengine_layout: bool
) -> None:
    with tempfile.TemporaryDirectory() as base:
        work, out = _build_trees(Path(base), source_run)
        _craft(work / "iter_3.pth", [_target(b, work, out) for b in best], keep, _target(last, work, out), mmengine_layout)
        (work / "last_checkpoint").write_text(_target(record, work, out))
        before_out, before_sub = _snapshot(out), _snapshot(work / "sub")
        runner = Runner(**_kwargs(work, [1.0, 2.0, 3.0], 6, resume=True))
        runner.train()  # resumes, then improves at each of 3 validations: previous bests are deleted
        assert _snapshot(out) == before_out
        assert _snapshot(work / "sub") == before_sub
        assert os.path.islink(work / "link_out") and os.path.islink(work / "best_acc_iter_9.pth")
        assert runner.iter == 6
        # Only the run's own files were rotated: the newest regular and best checkpoints remain.
        # (iter_3.pth, resumed from, is deleted only when the kept steps that survive name it.)
        kept = ["best_acc_iter_6.pth", "iter_6.pth"] + ([] if 3 in [k for k in keep if type(k) is int] else ["iter_3.pth"])
        assert sorted(p.name for p in work.glob("*.pth") if not p.is_symlink()) == sorted(kept)
        state = runner.hook_states()["CheckpointHook"]
        assert state.best_ckpts == (str(work / "best_acc_iter_6.pth"),) and state.last_ckpt == str(work / "iter_6.pth")


@pytest.mark.parametrize("mmengine_layout", [False, True], ids=["fengine", "mmengine-layout"])
def test_resuming_into_another_work_dir_keeps_the_source_files(tmp_path: Path, mmengine_layout: bool) -> None:
    source = tmp_path / "runX"
    Runner(**_kwargs(source, [0.1, 0.2, 0.3], 3)).train()
    if mmengine_layout:  # bookkeeping only in the message hub, as MMEngine writes it
        checkpoint = read_checkpoint(str(source / "iter_3.pth"), decode=False)
        checkpoint.pop("hook_states")
        save_checkpoint(checkpoint, str(source / "iter_3.pth"))
    before = {k: v for k, v in _snapshot(source).items() if k.endswith(".pth") or k == "last_checkpoint"}
    assert sorted(before) == ["best_acc_iter_3.pth", "iter_3.pth", "last_checkpoint"]
    new = tmp_path / "new"
    runner = Runner(**_kwargs(new, [1.0, 2.0, 3.0], 6, resume=True, load_from=str(source / "iter_3.pth")))
    warnings = _Warnings(runner)
    runner.train()
    assert {k: v for k, v in _snapshot(source).items() if k in before} == before  # nothing deleted or rewritten
    assert sorted(p.name for p in new.glob("*.pth")) == ["best_acc_iter_6.pth", "iter_6.pth"]
    (warning,) = [m for m in warnings.messages if "dropped from the CheckpointHook" in m]
    assert str(source / "best_acc_iter_3.pth") in warning and str(source / "iter_3.pth") in warning
    assert f"the kept steps [3] of {str(source)!r}" in warning
    hub = runner.message_hub.runtime_info
    assert hub["best_ckpt"] == str(new / "best_acc_iter_6.pth") and hub["keep_ckpt_ids"] == [6]


class _Renamed(ToyModel):
    """The toy model with ``linear1`` inside a container (other names) and one more layer."""

    def __init__(self) -> None:
        super().__init__()
        self.linear1 = nn.Sequential(nn.Linear(2, 2))
        self.extra = nn.Linear(2, 2)


class _Wider(ToyModel):
    def __init__(self) -> None:
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(2, 3), nn.Linear(3, 1)


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(
    ("model", "named"),
    [
        (_Renamed, r"missing from the checkpoint: linear1\.0\.weight, linear1\.0\.bias, extra\.weight, extra\.bias; unexpected: linear1\.weight, linear1\.bias"),
        (_Wider, r"shapes differ: linear1\.weight \(checkpoint \(2, 2\), model \(3, 2\)\), linear1\.bias \(checkpoint \(2,\), model \(3,\)\), linear2\.weight \(checkpoint \(1, 2\), model \(1, 3\)\)"),
    ],
    ids=["renamed", "wider"],
)
def test_resuming_another_model_fails_before_any_step(source_run: Path, tmp_path: Path, model: type[nn.Module], named: str) -> None:
    net = model()
    initial = _weights(net)
    runner = Runner(**_kwargs(tmp_path, [1.0], 6, model=net, resume=True, load_from=str(source_run / "iter_3.pth")))
    with pytest.raises(CheckpointError, match=named) as raised:
        runner.train()
    assert "resume=dict(strict=False)" in str(raised.value)
    assert all(torch.equal(initial[k], v) for k, v in net.state_dict().items())  # no weight loaded, no step
    assert runner.iter == 0 and not list(tmp_path.glob("*.pth"))
    # The opt-out resumes leniently: what fits is loaded, the rest reported, training continues.
    lenient = Runner(**_kwargs(tmp_path / "lenient", [1.0], 6, model=model(), resume={"strict": False}, load_from=str(source_run / "iter_3.pth")))
    lenient.train()
    assert lenient.iter == 6
    # load_from alone stays MMEngine's lenient weight loading.
    weights_only = Runner(**_kwargs(tmp_path / "weights", [1.0], 1, model=model(), load_from=str(source_run / "iter_3.pth")))
    weights_only.train()
    assert weights_only.iter == 1


def _rewrite(source: Path, target: Path, edit: Any) -> str:
    checkpoint = read_checkpoint(str(source if source.suffix == ".pth" else source / "iter_3.pth"), decode=False)
    edit(checkpoint)
    save_checkpoint(checkpoint, str(target))
    return str(target)


def test_an_optimizer_state_of_another_shape_fails_at_load(source_run: Path, tmp_path: Path) -> None:
    def wrong_momentum(checkpoint: dict[str, Any]) -> None:
        state = checkpoint["optimizer"]["state"]
        state[0] = {"momentum_buffer": torch.zeros(5, 5)}

    def extra_group(checkpoint: dict[str, Any]) -> None:
        groups = checkpoint["optimizer"]["param_groups"]
        groups.append({**groups[0], "params": []})

    def wrong_dtype(checkpoint: dict[str, Any]) -> None:
        checkpoint["optimizer"]["state"][1] = {"momentum_buffer": torch.zeros(2, dtype=torch.float64)}

    momentum = {"optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9}}
    cases = [
        (wrong_momentum, r"group 0 parameter 0 'momentum_buffer' \(checkpoint \(5, 5\) torch\.float32, parameter \(2, 2\) torch\.float32\)"),
        (extra_group, r"2 parameter groups saved, 1 configured"),
        (wrong_dtype, r"parameter 1 'momentum_buffer' \(checkpoint \(2,\) torch\.float64, parameter \(2,\) torch\.float32\)"),
    ]
    for index, (edit, named) in enumerate(cases):
        path = _rewrite(source_run, tmp_path / f"bad{index}.pth", edit)
        runner = Runner(**_kwargs(tmp_path / f"run{index}", [1.0], 6, optim_wrapper=momentum))
        runner.train_loop  # noqa: B018 - built as train() would
        with pytest.raises(CheckpointError, match=rf"optimizer state in .* does not fit the configured optimizer: .*{named}"):
            runner.resume(path)
    runner = Runner(**_kwargs(tmp_path / "lenient", [1.0], 6, optim_wrapper=momentum))
    warnings = _Warnings(runner)
    runner.resume(_rewrite(source_run, tmp_path / "lenient.pth", wrong_momentum), strict=False)
    assert any("the optimizer starts afresh" in m for m in warnings.messages)
    assert runner.optim_wrapper.optimizer.state_dict()["state"] == {}


@pytest.mark.parametrize(
    ("meta", "named"),
    [
        ({"iter": -5}, r"non-negative ints, got iter=-5"),
        ({"iter": 10**9}, r"iter=1000000000 is past the configured max_iters=6"),
        ({"epoch": "0"}, r"non-negative ints, got epoch='0'"),
        ({"iter": True}, r"non-negative ints, got iter=True"),
        ({"iter": 2.0}, r"non-negative ints, got iter=2\.0"),
    ],
)
def test_bad_meta_counters_fail(source_run: Path, tmp_path: Path, meta: dict[str, Any], named: str) -> None:
    path = _rewrite(source_run, tmp_path / "bad.pth", lambda c: c["meta"].update(meta))
    runner = Runner(**_kwargs(tmp_path / "run", [1.0], 6, resume=True, load_from=path))
    with pytest.raises(CheckpointError, match=named):
        runner.train()
    assert runner.iter == 0


def test_epoch_counters_must_fit_the_dataloader_length(tmp_path: Path) -> None:
    Runner(**toy_kwargs(tmp_path / "src", log_level="ERROR")).train()  # 2 epochs of 4 iterations
    source = tmp_path / "src" / "epoch_2.pth"
    for index, (epoch, it, fits) in enumerate([(1, 4, True), (1, 6, True), (1, 8, True), (1, 3, False), (0, 5, False), (3, 12, False)]):
        path = _rewrite(source, tmp_path / f"e{index}.pth", lambda c, e=epoch, i=it: c["meta"].update(epoch=e, iter=i))
        runner = Runner(**toy_kwargs(tmp_path / f"run{index}", log_level="ERROR"))
        runner.train_loop  # noqa: B018 - built as train() would
        if fits:
            runner.resume(path)
            assert (runner.epoch, runner.iter) == (epoch, it)
        else:
            with pytest.raises(CheckpointError, match=rf"(iter={it} does not fit epoch={epoch} with 4 iterations per epoch \(expected {epoch * 4}\.\.{epoch * 4 + 4}\)|iter={it} is past the configured max_iters=8)"):
                runner.resume(path)
            Runner(**toy_kwargs(tmp_path / f"lenient{index}", log_level="ERROR")).resume(path, strict=False)


def test_an_outside_last_checkpoint_is_ignored_for_the_newest_inside(source_run: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(source_run, elsewhere)
    work = tmp_path / "work"
    work.mkdir()
    shutil.copy(source_run / "iter_3.pth", work / "iter_3.pth")
    (work / "last_checkpoint").write_text(str(elsewhere / "iter_3.pth"))
    runner = Runner(**_kwargs(work, [1.0], 6, resume=True))
    warnings = _Warnings(runner)
    runner.load_or_resume()
    messages = warnings.messages
    assert any(f"`last_checkpoint` names {str(elsewhere / 'iter_3.pth')!r}, which lies outside" in m for m in messages)
    assert not any("is missing" in m for m in messages)
    assert runner.run_state.resumed and runner.iter == 3


def test_only_the_runs_own_files_are_deleted(tmp_path: Path) -> None:
    from fengine.core import effects as fx

    runner = Runner(**_kwargs(tmp_path, [1.0], 1))
    own_dir, foreign_dir, wrong_marker = tmp_path / "shards_a", tmp_path / "shards_b", tmp_path / "shards_c"
    for folder in (own_dir, foreign_dir, wrong_marker):
        folder.mkdir()
        (folder / "part0").write_bytes(b"x")
    (own_dir / CHECKPOINT_MARKER).write_bytes(marker_content(str(tmp_path)))
    (wrong_marker / CHECKPOINT_MARKER).write_bytes(marker_content(str(tmp_path / "other")))
    (tmp_path / "notes.pth").write_bytes(b"user file")  # not a checkpoint name, not saved by the run
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "iter_1.pth").write_bytes(b"outside")
    (tmp_path / "iter_7.pth").symlink_to(outside / "iter_1.pth")  # a checkpoint name, but a link out
    escapes = [tmp_path / ".." / outside.name / "iter_1.pth", outside / "iter_1.pth", tmp_path / "iter_7.pth"]
    runner.save_checkpoint(str(tmp_path), "custom_name.pth", save_optimizer=False, save_param_scheduler=False)  # saved by the run: deletable
    mark = len(runner.hook_host.event_end)
    effects = [fx.RemoveFile(str(p)) for p in (own_dir, foreign_dir, wrong_marker, tmp_path / "notes.pth", tmp_path / "custom_name.pth", tmp_path / "never.pth", *escapes)]
    warnings = _Warnings(runner)
    runner.hook_host.end_event(runner.hook_host.carry_out(runner.run_state.emit(*effects)), mark)
    assert not own_dir.exists() and not (tmp_path / "custom_name.pth").exists()
    assert (foreign_dir / "part0").exists() and (wrong_marker / "part0").exists() and (tmp_path / "notes.pth").exists()
    assert (outside / "iter_1.pth").read_bytes() == b"outside" and os.path.islink(tmp_path / "iter_7.pth")
    reasons = {m.split("': ")[0].split("'")[-1]: m.split("': ")[1] for m in warnings.messages if m.startswith("not deleting")}
    assert reasons == {
        str(foreign_dir): f"it is a folder without this run's {CHECKPOINT_MARKER} file",
        str(wrong_marker): f"it is a folder without this run's {CHECKPOINT_MARKER} file",
        str(tmp_path / "notes.pth"): "its name is not that of a checkpoint this run saved or writes",
        str(escapes[0]): f"it lies outside the run's checkpoint folders {[str(tmp_path)]}",
        str(escapes[1]): f"it lies outside the run's checkpoint folders {[str(tmp_path)]}",
        str(escapes[2]): f"it lies outside the run's checkpoint folders {[str(tmp_path)]}",
    }


@pytest.mark.parametrize(
    ("resume", "error", "message"),
    [
        ("yes", TypeError, "resume must be a bool or a dict such as dict(strict=False), got 'yes'"),
        ({"strict": "no"}, TypeError, "resume['strict'] must be a bool, got 'no'"),
        ({"strick": False}, KeyError, "resume: unknown keys ['strick']"),
    ],
)
def test_the_resume_argument(tmp_path: Path, resume: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as raised:
        Runner(**_kwargs(tmp_path, [1.0], 1, resume=resume))
    assert message in str(raised.value)
    runner = Runner(**_kwargs(tmp_path, [1.0], 1, resume={"strict": False}))
    assert runner.resume_strict is False and runner.run_state.resumed


def test_stale_temporary_files_are_removed_at_the_next_start(tmp_path: Path) -> None:
    stale = tmp_path / ".iter_4.pth.ab12cd_9.tmp"
    stale.write_bytes(b"half a checkpoint")
    nested = tmp_path / "20260101_000000" / ".20260101_000000.json.zzzzzzzz.tmp"
    nested.parent.mkdir()
    nested.write_bytes(b"half")
    foreign = [tmp_path / "notes.tmp", tmp_path / ".iter_4.pth.tmp", tmp_path / ".x.ABCDEFGH.tmp", tmp_path / "a.pth.ab12cd_9.tmp"]
    for path in foreign:
        path.write_bytes(b"not ours")
    (tmp_path / ".link.abcdefgh.tmp").symlink_to(tmp_path / "notes.tmp")
    busy = tmp_path / ".iter_5.pth.busybusy.tmp"
    with open(busy, "wb") as handle:  # a write in progress holds its temporary file's lock
        fileio._claim(handle.fileno())
        Runner(**_kwargs(tmp_path, [1.0], 1))
        assert busy.exists()
    assert not stale.exists() and not nested.exists()
    assert all(p.exists() for p in foreign) and os.path.islink(tmp_path / ".link.abcdefgh.tmp")
    Runner(**_kwargs(tmp_path, [1.0], 1))
    assert not busy.exists()


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_written_files_honour_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    script = (
        "import os, sys\n"
        f"os.umask({umask})\n"
        "from fengine.utils.fileio import atomic_write\n"
        "from fengine.runner.checkpoint import save_checkpoint\n"
        "atomic_write(sys.argv[1] + '/a.txt', b'x')\n"
        "save_checkpoint({'meta': {}}, sys.argv[1] + '/b.pth')\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).parents[2]), os.environ.get("PYTHONPATH")]))}
    subprocess.run([sys.executable, "-c", script, str(tmp_path)], check=True, env=env)
    for name in ("a.txt", "b.pth"):
        assert (tmp_path / name).stat().st_mode & 0o777 == mode
