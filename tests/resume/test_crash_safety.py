"""Failed and interrupted writes never cost a complete checkpoint, and every writer is atomic."""

from __future__ import annotations

import errno
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from resume_toys import assert_same_run, final_tensors, resume_kwargs

import fengine
from fengine.hooks import Hook
from fengine.runner.checkpoint import find_latest_checkpoint, read_checkpoint
from fengine.runner.checkpointing import DiskFullError
from fengine.runner.runner import Runner

ITERS = 6


def short_kwargs(work_dir: Path, **overrides: Any) -> dict[str, Any]:
    """6 iterations, a checkpoint after each, only the newest kept."""
    kwargs = resume_kwargs(work_dir, False, "SGD", train_cfg={"by_epoch": False, "max_iters": ITERS, "val_interval": 3})
    kwargs["default_hooks"]["checkpoint"].update(max_keep_ckpts=1, save_best=None)
    return {**kwargs, **overrides}


class _FailingHandle:
    """A file handle whose write of matching content stores half of it, then raises."""

    def __init__(self, handle: Any, name: str, fails: Callable[[str, bytes], bool], error: BaseException) -> None:
        self._handle, self._name, self._fails, self._error = handle, name, fails, error

    def write(self, data: bytes) -> int:
        if self._fails(self._name, bytes(data)):
            self._handle.write(data[: len(data) // 2])
            self._handle.flush()
            raise self._error
        return int(self._handle.write(data))

    def __enter__(self) -> _FailingHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def fail_writes(monkeypatch: pytest.MonkeyPatch, fails: Callable[[str, bytes], bool], error: BaseException) -> None:
    """Make the atomic writer's temporary-file writes raise ``error`` midway when ``fails(name, data)``."""
    real = os.fdopen

    def fdopen(fd: int, *args: Any, **kwargs: Any) -> Any:
        handle = real(fd, *args, **kwargs)
        return _FailingHandle(handle, os.path.basename(os.readlink(f"/proc/self/fd/{fd}")), fails, error)

    monkeypatch.setattr(os, "fdopen", fdopen)


def _checkpoint_4(name: str, data: bytes) -> bool:
    return name.startswith(".iter_4.pth.")


def _record_of_4(name: str, data: bytes) -> bool:
    return name.startswith(".last_checkpoint.") and data.endswith(b"iter_4.pth")


@pytest.mark.parametrize("fails", [_checkpoint_4, _record_of_4], ids=["checkpoint", "last_checkpoint"])
@pytest.mark.parametrize(
    "error", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()], ids=["ENOSPC", "ctrl-c"]
)
def test_a_write_failing_midway_keeps_the_last_complete_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails: Callable[[str, bytes], bool], error: BaseException
) -> None:
    reference = Runner(**short_kwargs(tmp_path / "ref"))
    reference.train()
    work_dir = tmp_path / "run"
    with monkeypatch.context() as patch:
        fail_writes(patch, fails, error)
        with pytest.raises(type(error)) as raised:
            Runner(**short_kwargs(work_dir)).train()
    if isinstance(error, OSError):  # one line naming ENOSPC, the file and the newest complete checkpoint
        assert isinstance(raised.value, DiskFullError) and raised.value.errno == errno.ENOSPC
        target = work_dir / ("iter_4.pth" if fails is _checkpoint_4 else "last_checkpoint")
        assert str(raised.value) == (
            f"[Errno 28] no space left on device (ENOSPC) while writing {str(target)!r}; "
            f"the newest complete checkpoint is {str(work_dir / ('iter_3.pth' if fails is _checkpoint_4 else 'iter_4.pth'))!r}"
        )
        assert raised.value.__cause__ is not None
    assert not list(work_dir.glob(".*.tmp"))  # the half-written temporary file is gone
    assert (work_dir / "last_checkpoint").read_text() == str(work_dir / "iter_3.pth")
    # max_keep_ckpts=1 asked to delete iter_3 in the event whose save failed: it is still there.
    assert read_checkpoint(str(work_dir / "iter_3.pth"))["meta"]["iter"] == 3
    for path in work_dir.glob("*.pth"):
        read_checkpoint(str(path))
    resumed = Runner(**short_kwargs(work_dir, resume=True))
    resumed.train()
    assert_same_run(final_tensors(reference), final_tensors(resumed))
    assert sorted(p.name for p in work_dir.glob("*.pth")) == [f"iter_{ITERS}.pth"]


class InterruptAfter(Hook):
    """Ctrl-C in ``after_train_iter`` of iteration ``at``, after the CheckpointHook asked for its save."""

    priority = "LOWEST"

    def __init__(self, at: int) -> None:
        self.at = at

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        if runner.iter + 1 == self.at:
            raise KeyboardInterrupt


def test_an_interrupted_event_writes_and_deletes_nothing(tmp_path: Path) -> None:
    """The save of iteration 5 and the deletion of iteration 4's file were requested, not done."""
    kwargs = short_kwargs(tmp_path)
    with pytest.raises(KeyboardInterrupt):
        Runner(**dict(kwargs, custom_hooks=[*kwargs["custom_hooks"], InterruptAfter(5)])).train()
    assert sorted(p.name for p in tmp_path.glob("*.pth")) == ["iter_4.pth"]
    assert find_latest_checkpoint(str(tmp_path)) == str(tmp_path / "iter_4.pth")


# Writers that may appear in fengine's code only inside the atomic helpers.
_RAW_WRITERS = re.compile(
    r"open\([^)]*['\"][wax]b?\+?['\"]|\.write_text\(|\.write_bytes\(|shutil\.copy\w*\(|torch\.save\((?!.*buffer)"
)


def test_every_file_write_goes_through_the_atomic_helpers() -> None:
    """Audit: no module writes a file directly (torch.save only into a buffer or the atomic writer)."""
    root = Path(fengine.__file__).parent
    allowed = {root / "utils" / "fileio.py"}
    offenders = [
        f"{path.relative_to(root)}:{number}: {line.strip()}"
        for path in sorted(root.rglob("*.py"))
        if path not in allowed
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _RAW_WRITERS.search(line) and "atomic_write(" not in line and not line.lstrip().startswith(("#", '"', "``", "-"))
    ]
    assert offenders == []
