"""SIGKILL of one rank in the middle of a sharded save leaves the previous checkpoint the one
that resumes.

Each rank is a plain subprocess with torchrun's variables. Rank 1 says when it has written its
shards of ``epoch_2/`` and waits (:func:`dist_toys.train_killed_mid_save`); the test kills it
then, so the kill lands inside the save every time: the directory is never published,
``last_checkpoint`` still names ``epoch_1/``, and ``resume=True`` continues from there.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dist_toys import (
    BATCH,
    N_TRAIN,
    SAVE_STALLED,
    free_port,
    make_model,
    runner_kwargs,
    torchrun_env,
)

from fengine.runner import Runner

HERE = os.path.dirname(os.path.abspath(__file__))
BOUND = 180.0  # seconds the surviving rank may take to notice (a watchdog for hangs only)


def test_sigkill_of_one_rank_mid_save_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    work, port = tmp_path / "work", free_port()
    code = f"import dist_toys; dist_toys.train_killed_mid_save({str(work)!r})"
    ranks = []
    for rank in range(2):
        env = {**os.environ, **torchrun_env(rank, 2, port)}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")]))
        with open(tmp_path / f"rank{rank}.log", "wb") as log:
            output = subprocess.PIPE if rank == 1 else log
            ranks.append(subprocess.Popen([sys.executable, "-c", code], env=env, stdout=output,
                                          stderr=log, text=rank == 1))  # fmt: skip
    survivor, victim = ranks
    try:
        assert victim.stdout is not None
        line = victim.stdout.readline()  # blocks until rank 1 is inside the save (or ends)
        assert line.strip() == SAVE_STALLED, line + (tmp_path / "rank1.log").read_text()[-2000:]
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=30) == -signal.SIGKILL
        deadline = time.monotonic() + BOUND
        while survivor.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert survivor.returncode not in (None, 0)  # torch.distributed ends it: its peer is gone
    finally:
        for process in ranks:
            if process.poll() is None:
                process.kill()
            process.wait()
    names = sorted(p.name for p in work.iterdir() if "epoch" in p.name)
    assert names == [".epoch_2.partial", "epoch_1"]  # the half-assembled save was never published
    assert sorted(p.name for p in (work / "epoch_1").iterdir()) == [
        ".fengine-checkpoint", ".metadata", "__0_0.distcp", "__1_0.distcp", "fengine.pth",
    ]  # fmt: skip
    assert (work / "last_checkpoint").read_text().strip() == str(work / "epoch_1")
    resumed = Runner(**runner_kwargs(str(work), make_model(batch_norm=False), 2 * BATCH, resume=True))
    resumed.load_or_resume()
    per_epoch = N_TRAIN // (2 * BATCH)
    assert (resumed.epoch, resumed.iter) == (1, per_epoch)
    resumed.train()
    assert resumed.iter == 2 * per_epoch and (work / "epoch_2.pth").is_file()
