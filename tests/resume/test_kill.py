"""Runs killed from outside (``SIGKILL``, ``SIGINT``) resume to the uninterrupted result.

A child process (:mod:`train_child`) trains the resume toy run; the parent kills it once the
checkpoint of iteration ``k`` (hypothesis' choice) exists, so the kill lands anywhere after it:
inside an iteration, a validation, or the write of the next checkpoint. A new runner in this
process then resumes with ``resume=True``, and every final tensor must equal the uninterrupted
run's (computed in this process, with the same single intra-op thread as the child).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from resume_toys import assert_same_run, final_numbers, final_tensors, reference, resume_kwargs

import fengine
from fengine.runner.checkpoint import find_latest_checkpoint, read_checkpoint
from fengine.runner.runner import Runner

HERE = Path(__file__).parent
#: Children import the fengine this process runs, and the test helpers beside this file.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(Path(fengine.__file__).parents[1])])}


def start_child(work_dir: Path, loop: str, optimizer: str, delay: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(HERE / "train_child.py"), str(work_dir), loop, optimizer, str(delay)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )


def kill_after(child: subprocess.Popen[str], checkpoint: Path, sig: int, timeout: float = 300.0) -> str:
    """Send ``sig`` once ``checkpoint`` exists; return the child's output (stdout, then stderr).

    The child waits for the kill in its last iteration, so it cannot end first; ``timeout`` only
    catches a hang (a child starting on a busy machine takes tens of seconds to import torch).
    """
    deadline = time.monotonic() + timeout
    try:
        while not checkpoint.exists():
            assert child.poll() is None, f"the child ended before writing {checkpoint.name}: {child.communicate()[1][-2000:]}"
            assert time.monotonic() < deadline, f"no {checkpoint.name} after {timeout} s"
            time.sleep(0.005)
    except AssertionError:
        child.kill()
        child.communicate()
        raise
    child.send_signal(sig)
    stdout, stderr = child.communicate(timeout=timeout)
    return stdout + stderr


def no_partial_files(work_dir: Path) -> None:
    """Every checkpoint on disk reads back intact, and last_checkpoint names one of them."""
    for path in work_dir.glob("*.pth"):
        read_checkpoint(str(path))
    last = find_latest_checkpoint(str(work_dir))
    assert last is not None
    read_checkpoint(last)


@settings(max_examples=2)
@given(loop=st.sampled_from(["epochs", "iterations"]), data=st.data())
def test_sigkill_anywhere_then_resume_is_bit_identical(loop: str, data: st.DataObject) -> None:
    optimizer = data.draw(st.sampled_from(["SGD", "AdamW"]), label="optimizer")
    expected_tensors, expected_numbers = reference(loop == "epochs", optimizer)
    k = data.draw(st.integers(1, expected_numbers["counters"][1] - 2), label="kill after checkpoint")
    with tempfile.TemporaryDirectory() as tmp:
        work_dir = Path(tmp)
        child = start_child(work_dir, loop, optimizer, delay=0.05)
        kill_after(child, work_dir / f"iter_{k}.pth", signal.SIGKILL)
        assert child.returncode == -signal.SIGKILL
        resumed = Runner(**resume_kwargs(work_dir, loop == "epochs", optimizer, resume=True))
        resumed.train()
        assert final_numbers(resumed) == expected_numbers
        assert_same_run(expected_tensors, final_tensors(resumed))


def test_ctrl_c_exits_cleanly_and_resume_continues(tmp_path: Path) -> None:
    """SIGINT (Ctrl-C) to a training process: it stops, names the checkpoint to resume from,
    leaves only complete files, and ``resume=True`` finishes the run exactly."""
    expected_tensors, expected_numbers = reference(False, "SGD")
    child = start_child(tmp_path, "iterations", "SGD", delay=0.08)
    output = kill_after(child, tmp_path / "iter_5.pth", signal.SIGINT)
    assert child.returncode == -signal.SIGINT  # Python's exit after an unhandled KeyboardInterrupt
    assert "training interrupted at iteration" in output and "Runner(resume=True) continues from it" in output
    assert output.rstrip().endswith("KeyboardInterrupt")
    assert not list(tmp_path.glob(".*.tmp"))
    no_partial_files(tmp_path)
    resumed = Runner(**resume_kwargs(tmp_path, False, "SGD", resume=True))
    resumed.train()
    assert final_numbers(resumed) == expected_numbers
    assert_same_run(expected_tensors, final_tensors(resumed))


_BIG_WRITER = """
import io, sys, time, torch
from fengine.runner.checkpoint import save_checkpoint, write_last_checkpoint
work_dir = sys.argv[1]
real_save = torch.save

def half_then_stall(obj, handle):
    buffer = io.BytesIO()
    real_save(obj, buffer)
    data = buffer.getvalue()
    handle.write(data[: len(data) // 2])
    handle.flush()
    print("half written", flush=True)
    time.sleep(600)

state = {"state_dict": {"w": torch.randn(12_000_000)}}
for i in range(1, 4):
    if i == 3:  # the third write stops half-way through its temporary file
        torch.save = half_then_stall
    state["meta"] = {"epoch": 0, "iter": i}
    path = f"{work_dir}/iter_{i}.pth"
    save_checkpoint(state, path)
    write_last_checkpoint(work_dir, path)
"""


def test_sigkill_while_a_large_checkpoint_is_written_keeps_the_previous_files(tmp_path: Path) -> None:
    """Kill the writer while the temporary file of a ~48 MB checkpoint is half filled.

    The child says when it is there and waits, so the kill lands mid-write however busy the
    machine is (a kill timed by polling the folder could miss the write and find no partial file).
    """
    child = subprocess.Popen(
        [sys.executable, "-c", _BIG_WRITER, str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
    )
    assert child.stdout is not None
    line = child.stdout.readline()
    assert line == "half written\n", line + child.communicate()[1][-2000:]
    child.kill()
    child.wait(timeout=30)
    (partial,) = tmp_path.glob(".iter_3.pth.*.tmp")  # killed mid-write: the partial file is there ...
    assert partial.stat().st_size > 0
    complete = sorted(p.name for p in tmp_path.glob("iter_*.pth"))
    assert complete == ["iter_1.pth", "iter_2.pth"]
    no_partial_files(tmp_path)  # ... and every named file is whole
    assert read_checkpoint(find_latest_checkpoint(str(tmp_path)) or "")["meta"]["iter"] == 2
