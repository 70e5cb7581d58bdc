"""A rank that fails ends the run on every rank, with the error shown, instead of hanging.

Each rank is a plain subprocess with torchrun's variables (no launcher that would kill the
others): what ends the healthy rank is torch.distributed itself, through fengine's set-up.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from dist_toys import free_port, torchrun_env

HERE = os.path.dirname(os.path.abspath(__file__))
BOUND = 180.0  # seconds a rank may take to end (a watchdog for hangs: loaded machines run slowly)
HANG_TIMEOUT = 6  # the process group's timeout for the hanging pair


def _start_pair(
    folder: Path, fault: str, timeout: float
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    port, pair = free_port(), []
    code = f"import dist_toys; dist_toys.train_with_fault({str(folder / fault)!r}, {fault!r}, {timeout})"
    for rank in range(2):
        env = {**os.environ, **torchrun_env(rank, 2, port)}
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [HERE, os.environ.get("PYTHONPATH")]))
        log = folder / f"{fault}{rank}.log"
        with open(log, "wb") as handle:
            process = subprocess.Popen(
                [sys.executable, "-c", code], env=env, stdout=handle, stderr=subprocess.STDOUT
            )
        pair.append((process, log))
    return pair


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    folder = tmp_path_factory.mktemp("faults")
    started = time.monotonic()
    pairs = {
        "raise": _start_pair(folder, "raise", 60),
        "hang": _start_pair(folder, "hang", HANG_TIMEOUT),
    }
    ended: dict[tuple[str, int], float] = {}
    try:
        while time.monotonic() - started < BOUND:
            for fault, pair in pairs.items():
                for rank, (process, _) in enumerate(pair):
                    if (fault, rank) not in ended and process.poll() is not None:
                        ended[fault, rank] = time.monotonic() - started
            if all((f, r) in ended for f in pairs for r in range(2) if (f, r) != ("hang", 1)):
                break
            time.sleep(0.1)
    finally:
        for pair in pairs.values():
            for process, _ in pair:
                if process.poll() is None:
                    process.kill()  # only the sleeping rank should be left
                process.wait()
    return {
        fault: [
            {
                "ended": ended.get((fault, rank)),
                "returncode": process.returncode,
                "log": log.read_text(),
            }
            for rank, (process, log) in enumerate(pair)
        ]
        for fault, pair in pairs.items()
    }


def test_an_exception_in_one_rank_ends_the_other_with_both_errors_shown(outcomes):
    failing, healthy = outcomes["raise"][1], outcomes["raise"][0]
    assert failing["ended"] is not None and failing["returncode"] != 0
    assert "RuntimeError: rank 1 fails on purpose at forward call 2" in failing["log"]
    assert healthy["ended"] is not None, (
        f"rank 0 still ran {BOUND} s after the start:\n{healthy['log'][-2000:]}"
    )
    assert healthy["returncode"] != 0
    assert (
        "remote worker crashing" in healthy["log"] or "Connection closed by peer" in healthy["log"]
    )
    assert healthy["ended"] - failing["ended"] < 20


def test_a_hanging_rank_ends_the_other_after_the_configured_timeout(outcomes):
    waiting, sleeping = outcomes["hang"]
    assert waiting["ended"] is not None, f"rank 0 did not time out:\n{waiting['log'][-2000:]}"
    assert waiting["returncode"] != 0 and "Timed out" in waiting["log"]
    assert sleeping["ended"] is None  # it slept on until the test ended it
