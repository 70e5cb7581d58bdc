"""Which checkpoint a run resumes from, and MMEngine's loading entry points."""

from __future__ import annotations

import logging
import os
import shutil
import struct
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch
from resume_toys import CrashAt, final_tensors, resume_kwargs

from fengine.runner.checkpoint import CheckpointError, read_checkpoint
from fengine.runner.resume_selection import select_resume_checkpoint
from fengine.runner.runner import Runner

ITERS = 6


def short_kwargs(work_dir: Path, **overrides: Any) -> dict[str, Any]:
    """The resume toy as a 6-iteration run, checkpointing every iteration."""
    return resume_kwargs(work_dir, False, "SGD", train_cfg={"by_epoch": False, "max_iters": ITERS, "val_interval": 3}, **overrides)


def interrupted(work_dir: Path, at: int) -> None:
    """Train until iteration ``at`` (its checkpoint written), then die."""
    kwargs = short_kwargs(work_dir)
    with pytest.raises(RuntimeError, match="crash before iteration"):
        Runner(**dict(kwargs, custom_hooks=[*kwargs["custom_hooks"], CrashAt(at)])).train()


class Lines(logging.Handler):
    """Collects a logger's messages."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []
        logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def flip_a_weight_byte(path: Path) -> None:
    """Change one byte of a stored tensor in place: the file still unpickles, with another number."""
    with zipfile.ZipFile(path) as archive:
        info = next(i for i in archive.infolist() if "/data/" in i.filename and i.file_size >= 4)
    data = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", data[info.header_offset + 26 : info.header_offset + 30])
    data[info.header_offset + 30 + name_len + extra_len] ^= 0x40
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.fixture(scope="module")
def four_saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A work dir whose run died before iteration 5: iter_1 ... iter_4 and last_checkpoint."""
    work_dir = tmp_path_factory.mktemp("four")
    interrupted(work_dir, 4)
    return work_dir


def copy_of(source: Path, tmp_path: Path) -> Path:
    target = tmp_path / "work"
    shutil.copytree(source, target)
    (target / "last_checkpoint").write_text(str(target / "iter_4.pth"))
    return target


def resumed_at(work_dir: Path) -> tuple[Runner, Lines]:
    runner = Runner(**short_kwargs(work_dir, resume=True))
    lines = Lines(runner.logger)
    runner.train_loop  # noqa: B018  (builds the loop, as train() does, so load_or_resume can run)
    runner.load_or_resume()
    return runner, lines


def test_last_checkpoint_wins_when_intact(four_saved: Path, tmp_path: Path) -> None:
    work_dir = copy_of(four_saved, tmp_path)
    (work_dir / "last_checkpoint").write_text(str(work_dir / "iter_3.pth"))
    runner, lines = resumed_at(work_dir)
    assert runner.iter == 3 and not [m for m in lines.messages if "skipped" in m]


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (truncate, "truncated or corrupted"),
        (flip_a_weight_byte, "is damaged: its content digest"),
        (lambda p: p.write_bytes(b""), "empty"),
        (os.remove, "does not exist"),
        (lambda p: p.write_bytes(b"<html>not found</html>"), "not a torch checkpoint"),
    ],
    ids=["truncated", "bit-flip", "empty", "gone", "not-a-checkpoint"],
)
def test_a_damaged_newest_falls_back_to_the_previous_with_a_warning(four_saved: Path, tmp_path: Path, damage: Any, reason: str) -> None:
    work_dir = copy_of(four_saved, tmp_path)
    damage(work_dir / "iter_4.pth")
    runner, lines = resumed_at(work_dir)
    assert runner.iter == 3
    (warning,) = [m for m in lines.messages if "last_checkpoint` names" in m]
    assert "iter_4.pth" in warning and reason in warning


def test_without_last_checkpoint_the_newest_by_counters_is_taken(four_saved: Path, tmp_path: Path) -> None:
    work_dir = copy_of(four_saved, tmp_path)
    os.remove(work_dir / "last_checkpoint")
    os.utime(work_dir / "iter_2.pth")  # the newest file by time is not the newest by counters
    truncate(work_dir / "iter_4.pth")
    runner, lines = resumed_at(work_dir)
    assert runner.iter == 3
    assert any("last_checkpoint' is missing" in m for m in lines.messages)
    assert any("skipped" in m and "iter_4.pth" in m and "truncated" in m for m in lines.messages)


def test_published_copies_and_temporary_files_are_not_resumed_from(four_saved: Path, tmp_path: Path) -> None:
    work_dir = copy_of(four_saved, tmp_path)
    checkpoint = read_checkpoint(str(work_dir / "iter_4.pth"))
    torch.save({"meta": {**checkpoint["meta"], "iter": 99}, "state_dict": checkpoint["state_dict"]}, work_dir / "iter_99-abcdef12.pth")
    (work_dir / ".iter_5.pth.x1y2.tmp").write_bytes(b"half a file")
    os.remove(work_dir / "last_checkpoint")
    warnings: list[str] = []
    found = select_resume_checkpoint(str(work_dir), warnings.append)
    assert found is not None and found[0] == str(work_dir / "iter_4.pth")
    assert any("iter_99-abcdef12.pth" in w and "published" in w for w in warnings)


def test_nothing_usable_starts_afresh(tmp_path: Path) -> None:
    (tmp_path / "iter_1.pth").write_bytes(b"")
    runner, lines = resumed_at(tmp_path)
    assert runner.iter == 0
    assert any("iter_1.pth" in m and "empty" in m for m in lines.messages)
    assert any("starts from the beginning" in m for m in lines.messages)


def test_resume_with_load_from_resumes_that_file(four_saved: Path, tmp_path: Path) -> None:
    work_dir = copy_of(four_saved, tmp_path)
    runner = Runner(**short_kwargs(tmp_path / "other", resume=True, load_from=str(work_dir / "iter_2.pth")))
    runner.train_loop  # noqa: B018
    runner.load_or_resume()
    assert runner.iter == 2
    saved = read_checkpoint(str(work_dir / "iter_2.pth"))
    for name, value in runner.optim_wrapper.state_dict()["state"].items():
        assert torch.equal(value["momentum_buffer"], saved["optimizer"]["state"][name]["momentum_buffer"])


def test_load_from_alone_loads_weights_only(four_saved: Path, tmp_path: Path) -> None:
    runner = Runner(**short_kwargs(tmp_path, load_from=str(four_saved / "iter_3.pth")))
    runner.train_loop  # noqa: B018
    runner.load_or_resume()
    assert (runner.iter, runner.message_hub.get_info("iter")) == (0, None)
    assert isinstance(runner.optim_wrapper, dict)  # not built: no optimizer state was loaded
    weights = read_checkpoint(str(four_saved / "iter_3.pth"))["state_dict"]
    assert all(torch.equal(weights[k], v) for k, v in runner.model.state_dict().items())


def test_an_explicit_resume_of_a_damaged_file_names_it(four_saved: Path, tmp_path: Path) -> None:
    work_dir = copy_of(four_saved, tmp_path)
    flip_a_weight_byte(work_dir / "iter_2.pth")
    runner = Runner(**short_kwargs(tmp_path / "b"))
    with pytest.raises(CheckpointError, match=r"iter_2\.pth' is damaged: its content digest sha256:\w+ differs"):
        runner.resume(str(work_dir / "iter_2.pth"))


def test_resuming_finishes_the_run_exactly(four_saved: Path, tmp_path: Path) -> None:
    """After falling back to iteration 3, the run still ends as the uninterrupted one."""
    reference = Runner(**short_kwargs(tmp_path / "ref"))
    reference.train()
    work_dir = copy_of(four_saved, tmp_path)
    truncate(work_dir / "iter_4.pth")
    resumed = Runner(**short_kwargs(work_dir, resume=True))
    resumed.train()
    expected, actual = final_tensors(reference), final_tensors(resumed)
    assert all(torch.equal(expected[k], actual[k]) for k in expected)


def test_load_checkpoint_arguments(four_saved: Path, tmp_path: Path) -> None:
    """``map_location``, ``strict`` (mismatches named) and ``revise_keys`` as in MMEngine."""
    runner = Runner(**short_kwargs(tmp_path))
    saved = read_checkpoint(str(four_saved / "iter_4.pth"))
    prefixed = tmp_path / "prefixed.pth"
    torch.save({"state_dict": {f"net.{k}": v for k, v in saved["state_dict"].items()}}, prefixed)
    runner.load_checkpoint(str(prefixed), map_location=lambda storage, _: storage, revise_keys=[(r"^net\.", "")], strict=True)
    assert all(torch.equal(saved["state_dict"][k], v) for k, v in runner.model.state_dict().items())
    with pytest.raises(CheckpointError, match=r"(?s)unexpected keys in the checkpoint: net\.body\.0\.weight.*missing keys"):
        runner.load_checkpoint(str(prefixed), strict=True)
    lines = Lines(runner.logger)
    runner.load_checkpoint(str(prefixed), map_location={"cpu": "cpu"})  # not strict: reported only
    assert any("unexpected keys" in m for m in lines.messages)


def test_hook_states_can_be_restored_leniently(four_saved: Path, tmp_path: Path) -> None:
    kwargs = short_kwargs(tmp_path, custom_hooks=[{"type": "EMAHook", "momentum": 0.2}])  # no early stopping
    strict = Runner(**kwargs)
    strict.train_loop  # noqa: B018
    with pytest.raises(CheckpointError, match=r"unknown \['EarlyStoppingHook'\].*strict_hook_states=False"):
        strict.resume(str(four_saved / "iter_4.pth"))
    lenient = Runner(**kwargs)
    lenient.train_loop  # noqa: B018
    lines = Lines(lenient.logger)
    lenient.resume(str(four_saved / "iter_4.pth"), strict_hook_states=False)
    assert lenient.iter == 4 and any("unknown states are ignored" in m for m in lines.messages)
    lenient.strict_hook_states = False  # the attribute is the default for automatic resumes
    assert Runner(**kwargs).strict_hook_states is True
