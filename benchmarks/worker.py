"""One measurement in a fresh process: ``python worker.py KIND ARGS...`` prints one ``RESULT`` line.

Kinds: ``train WORKLOAD CONTENDER``, ``hooks ENGINE COUNT``, ``optimizer CONTENDER TENSORS``,
``checkpoint CONTENDER``, ``hook ENGINE NAME``, ``calls ENGINE NAME``, ``setup ENGINE``,
``reads ENGINE [CHECK]``. Runs with one thread. Imports only what the contender needs, so the
framework contenders run in an environment without fengine (MMEngine's, Lightning's).
"""

from __future__ import annotations

import sys
import time

import torch
from _common import emit_result, peak_rss_mib, timed_epochs


def train(workload: str, contender: str) -> dict[str, float]:
    """Time ``contender`` on ``workload``: one warm-up epoch, then the median of the timed ones."""
    from workloads import WORKLOADS

    try:
        from loops import LOOPS
    except ImportError:  # an environment without fengine runs only the framework contenders
        LOOPS = {}
    if contender in LOOPS:
        run_epoch = LOOPS[contender](workload)
        start = time.perf_counter()
        run_epoch()
        first = time.perf_counter() - start
        return {**timed_epochs(run_epoch, WORKLOADS[workload].timed_epochs), "first_epoch_s": first}
    from frameworks import FRAMEWORKS

    result: dict[str, float] = FRAMEWORKS[contender][1](workload)
    return result


def main(argv: list[str]) -> None:
    """Run the measurement ``argv`` names and print its result with the peak RSS."""
    torch.set_num_threads(1)
    kind, *args = argv
    if kind == "train":
        result = train(*args)
    elif kind == "hooks":
        from scaling import hooks

        result = hooks(args[0], int(args[1]))
    elif kind == "optimizer":
        from scaling import optimizer

        result = optimizer(args[0], int(args[1]))
    elif kind == "checkpoint":
        from scaling import checkpoint

        result = checkpoint(args[0])
    elif kind in ("hook", "calls", "setup", "reads"):
        import shell

        result = getattr(shell, kind)(*args)
    else:
        raise SystemExit(
            f"unknown measurement kind {kind!r}; known: train, hooks, optimizer, checkpoint, "
            "hook, calls, setup, reads"
        )
    emit_result({**result, "rss_mib": peak_rss_mib()})


if __name__ == "__main__":
    main(sys.argv[1:])
