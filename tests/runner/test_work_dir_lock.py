"""One run per work dir: concurrent runs are refused naming the holder, sequential runs work."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from runner_toys import toy_kwargs

from fengine.hooks import Hook
from fengine.runner import WorkDirLockedError
from fengine.runner.runner import Runner
from fengine.runner.work_dir_lock import LOCK_FILE

_HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {toys!r})
    from runner_toys import toy_kwargs
    from fengine.hooks import Hook
    from fengine.runner.runner import Runner

    class Park(Hook):
        def before_train_iter(self, runner, batch_idx, data_batch=None):
            Path({ready!r}).write_text("holding")
            time.sleep(120)

    Runner(**toy_kwargs({work_dir!r}, custom_hooks=[Park()])).train()
    """
)


def _wait_for(path: Path, process: subprocess.Popen[bytes], seconds: float = 300) -> None:
    """Wait for ``path`` (``seconds`` only catches a hang: on a busy machine the child's imports
    alone take tens of seconds)."""
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()[1].decode()[-2000:]
        assert time.monotonic() < deadline, "the first run never started training"
        time.sleep(0.05)


def test_a_second_process_is_refused_naming_pid_and_host_until_the_first_is_killed(tmp_path: Path) -> None:
    work_dir, ready = tmp_path / "run", tmp_path / "ready"
    script = _HOLDER.format(toys=str(Path(__file__).parent), ready=str(ready), work_dir=str(work_dir))
    first = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_for(ready, first)
        second = Runner(**toy_kwargs(work_dir))
        with pytest.raises(WorkDirLockedError, match=rf"work_dir '{work_dir}' is in use by another run \(pid {first.pid} on host {socket.gethostname()}, since "):
            second.train()
        assert second.iter == 0 and not list(work_dir.glob("*.pth"))
        with pytest.raises(WorkDirLockedError, match=f"pid {first.pid}"):
            second.val()
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    assert first.returncode == -signal.SIGKILL
    assert (work_dir / LOCK_FILE).exists()  # the file stays; the OS dropped the lock with the process
    third = Runner(**toy_kwargs(work_dir))
    third.train()
    assert third.iter == 8 and (work_dir / "epoch_2.pth").exists()


def test_runs_one_after_another_in_one_process_share_the_work_dir(tmp_path: Path) -> None:
    Runner(**toy_kwargs(tmp_path)).train()
    assert (tmp_path / LOCK_FILE).read_text() == ""  # released: no stale holder in the file
    resumed = Runner(**toy_kwargs(tmp_path, train_cfg={"by_epoch": True, "max_epochs": 3}, resume=True))
    resumed.train()
    assert resumed.iter == 12
    assert isinstance(Runner(**toy_kwargs(tmp_path)).val(), dict)


class Boom(Hook):
    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        raise RuntimeError("boom")


def test_the_lock_is_released_when_a_run_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"):
        Runner(**toy_kwargs(tmp_path, custom_hooks=[Boom()])).train()
    Runner(**toy_kwargs(tmp_path)).train()


class Nested(Hook):
    """Calls ``runner.val()`` from inside training, then starts a second run in the same dir."""

    def __init__(self) -> None:
        self.metrics: Any = None
        self.refusal = ""

    def after_train_epoch(self, runner: Any) -> None:
        if self.metrics is not None:
            return
        self.metrics = runner.val()  # the same run: the held lock is reused
        try:
            Runner(**toy_kwargs(runner.work_dir)).train()
        except WorkDirLockedError as error:
            self.refusal = str(error)


def test_nested_calls_reuse_the_lock_and_a_second_runner_in_the_process_is_refused(tmp_path: Path) -> None:
    hook = Nested()
    runner = Runner(**toy_kwargs(tmp_path, custom_hooks=[hook]))
    runner.train()
    assert isinstance(hook.metrics, dict)
    assert f"pid {os.getpid()} on host {socket.gethostname()}" in hook.refusal
    assert runner.iter == 8
