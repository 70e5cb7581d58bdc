"""Shared pieces of the hand-run benchmarks: fresh-process runs, alternation, medians, Markdown.

Every measurement runs in its own Python process (no warm caches or allocator state carried
from one contender to the next); the parent alternates contenders round by round and reports
medians, so slow drifts of a shared machine hit every contender alike.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

RESULT_PREFIX = "RESULT "


def emit_result(result: dict[str, Any]) -> None:
    """Print a worker's result where :func:`run_in_fresh_process` finds it."""
    print(RESULT_PREFIX + json.dumps(result), flush=True)


#: glibc settings that keep freed memory in the heap: no ``mmap``/``munmap`` and no trimming, so
#: large activation buffers are not faulted in afresh on every iteration.
STABLE_MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 30)}


def run_in_fresh_process(
    script: Path,
    args: Sequence[str],
    timeout: float = 900.0,
    env: Mapping[str, str] | None = None,
    python: str = sys.executable,
) -> dict[str, Any]:
    """Run ``python script *args`` and return the result its worker printed with :func:`emit_result`.

    ``env`` adds variables to the inherited environment; ``python`` is the interpreter (another
    environment's, for contenders fengine's does not have).

    Raises:
        RuntimeError: the worker failed or printed no result (its output is included).
    """
    proc = subprocess.run(
        [python, str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_PREFIX):
            result: dict[str, Any] = json.loads(line[len(RESULT_PREFIX) :])
            return result
    raise RuntimeError(
        f"worker {args} failed (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    )


def rotated(items: Sequence[str], round_index: int) -> list[str]:
    """``items`` rotated by ``round_index``, so every contender takes every position in turn."""
    k = round_index % len(items)
    return [*items[k:], *items[:k]]


def peak_rss_mib() -> float:
    """This process's peak resident set size in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median(values: Sequence[float]) -> float:
    """The median of ``values``."""
    return statistics.median(values)


def timed_epochs(run_epoch: Callable[[], int], epochs: int) -> dict[str, float]:
    """Run ``run_epoch`` ``epochs`` times; per iteration: median wall and CPU µs, the best epoch's
    CPU µs (the least disturbed by other processes on a shared machine), mean minor page faults.

    ``run_epoch`` returns the number of iterations it ran.
    """
    wall, cpu, iters = [], [], 0
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(epochs):
        w0, c0 = time.perf_counter(), time.process_time()
        n = run_epoch()
        wall.append((time.perf_counter() - w0) / n * 1e6)
        cpu.append((time.process_time() - c0) / n * 1e6)
        iters += n
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    return {
        "wall_us": median(wall),
        "cpu_us": median(cpu),
        "cpu_best_us": min(cpu),
        "faults": faults / iters,
    }


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine_line() -> str:
    """Date, CPU, Python and torch versions, for the table's caption."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    today = datetime.date.today().isoformat()
    return f"{today}, {cpu}, Python {platform.python_version()}, torch {torch.__version__}"
