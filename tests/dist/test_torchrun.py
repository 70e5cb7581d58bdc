"""The example trains under ``torchrun --nproc_per_node=2`` exactly as a user would start it."""

from __future__ import annotations

import os
import re
import subprocess
import sys

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "dist_train.py")


def test_torchrun_two_processes_train_the_example(tmp_path):
    work_dir = tmp_path / "work"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        EXAMPLE, "--launcher", "pytorch", "--epochs", "2", "--work-dir", str(work_dir),
    ]  # fmt: skip
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    (line,) = [s for s in done.stdout.splitlines() if s.startswith("world size")]
    match = re.fullmatch(r"world size 2: accuracy (\S+) on 301 samples", line)
    assert match is not None and float(match.group(1)) > 0.8
    names = {p.name for p in work_dir.iterdir()}
    assert {"epoch_1.pth", "epoch_2.pth", "last_checkpoint"} <= names
    (log_dir,) = [p for p in work_dir.iterdir() if p.is_dir()]
    assert [p.name for p in log_dir.glob("*.log")] == [f"{log_dir.name}.log"]  # one log: rank 0's
