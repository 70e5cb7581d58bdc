"""The functional step (pure and donated) against a raw PyTorch loop, tiny MLP and small CNN.

Run by hand: ``python benchmarks/bench_functional.py [--rounds 5] [--compile]``.

Each (workload, contender) runs in a fresh process with ``torch.set_num_threads(1)``; the
contenders alternate over the rounds (rotated order). The table gives per-iteration medians over
rounds (each round itself the median of several timed epochs, after one warm-up epoch) of wall
and CPU time, the best epoch's CPU time over all rounds (the least disturbed by other processes
on a shared machine), their ratios to the raw loop, and peak RSS. Every contender trains the same
model from the same initial weights on the same ``DataLoader`` batches with SGD(lr=0.01,
momentum=0.9): the raw loop with ``torch.optim.SGD(foreach=True)``, the functional ones with
``fengine.core.optim.sgd``. ``--compile`` adds the donated step under ``torch.compile`` (its
first, compiling epoch is reported separately).

The CNN's activations are large enough that glibc hands their memory back to the kernel and
faults it in again every iteration (thousands of minor page faults per iteration, varying
several-fold from process to process): that, not the step, dominates the spread of the CNN
figures. ``--stable-malloc`` keeps freed memory in the heap in every worker
(``MALLOC_MMAP_THRESHOLD_``/``MALLOC_TRIM_THRESHOLD_``), so the ratios show the step alone.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from _common import (
    STABLE_MALLOC,
    emit_result,
    machine_line,
    markdown_table,
    median,
    peak_rss_mib,
    rotated,
    run_in_fresh_process,
    timed_epochs,
)
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

import fengine.core as fc

BATCH = 32
#: workload → (samples per epoch, timed epochs)
SIZES = {"mlp": (BATCH * 100, 15), "cnn": (BATCH * 16, 5)}


def build(workload: str) -> tuple[nn.Module, DataLoader[tuple[Tensor, ...]]]:
    """The model and the shuffled loader of a workload, from fixed seeds."""
    torch.manual_seed(0)
    samples = SIZES[workload][0]
    if workload == "mlp":
        model: nn.Module = nn.Sequential(
            nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)
        )
        inputs = torch.randn(samples, 32)
    else:
        model = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(64, 10),
        )
        inputs = torch.randn(samples, 3, 32, 32)
    targets = torch.randint(0, 10, (samples,))
    loader = DataLoader(
        TensorDataset(inputs, targets),
        batch_size=BATCH,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    return model, loader


def raw_loop(model: nn.Module, loader: DataLoader[tuple[Tensor, ...]]) -> Callable[[], int]:
    """One epoch of the textbook loop."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, foreach=True)
    model.train()

    def epoch() -> int:
        n = 0
        for x, y in loader:
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
            n += 1
        return n

    return epoch


def functional_loop(
    model: nn.Module, loader: DataLoader[tuple[Tensor, ...]], *, donate: bool, compile: bool = False
) -> Callable[[], int]:
    """One epoch of ``fengine.core``'s train step, the state carried from call to call."""
    tx = fc.optim.sgd(0.01, momentum=0.9)

    def loss_fn(view: fc.ModelView, batch: list[Tensor]) -> Tensor:
        x, y = batch
        return F.cross_entropy(view(x), y)

    step = fc.make_train_step(model, loss_fn, tx, compile=compile)
    cell = [fc.TrainState.create(model, tx)]

    def epoch() -> int:
        state, n = cell.pop(), 0
        for batch in loader:
            state, _ = step(state, batch, donate=donate)
            n += 1
        cell.append(state)
        return n

    return epoch


CONTENDERS: dict[str, Callable[[nn.Module, DataLoader[tuple[Tensor, ...]]], Callable[[], int]]] = {
    "raw loop": raw_loop,
    "functional, pure": lambda m, dl: functional_loop(m, dl, donate=False),
    "functional, donated": lambda m, dl: functional_loop(m, dl, donate=True),
    "functional, donated, compiled": lambda m, dl: functional_loop(
        m, dl, donate=True, compile=True
    ),
}


def worker(workload: str, contender: str) -> None:
    """Measure one contender on one workload in this (fresh) process and print the result."""
    torch.set_num_threads(1)
    model, loader = build(workload)
    run_epoch = CONTENDERS[contender](model, loader)
    start = time.perf_counter()
    run_epoch()
    first_epoch_s = time.perf_counter() - start
    result = timed_epochs(run_epoch, SIZES[workload][1])
    emit_result({**result, "first_epoch_s": first_epoch_s, "rss_mib": peak_rss_mib()})


def measure(
    workload: str, names: list[str], rounds: int, env: dict[str, str] | None
) -> dict[str, list[dict[str, float]]]:
    """Each contender's worker results over ``rounds`` alternated rounds of fresh processes."""
    runs: dict[str, list[dict[str, float]]] = {c: [] for c in names}
    for r in range(rounds):
        for contender in rotated(names, r):
            result = run_in_fresh_process(
                Path(__file__), ["--worker", workload, contender], env=env
            )
            runs[contender].append(result)
            print(f"{workload} round {r + 1}: {contender}: {result}", file=sys.stderr)
    return runs


def rows_for(workload: str, runs: dict[str, list[dict[str, float]]]) -> list[list[str]]:
    """Table rows: medians over rounds (bests for ``cpu_best_us``), with ratios to the raw loop."""
    keys = ("wall_us", "cpu_us", "rss_mib", "first_epoch_s", "faults")
    stats = {c: {k: median([x[k] for x in results]) for k in keys} for c, results in runs.items()}
    for contender, results in runs.items():
        stats[contender]["cpu_best_us"] = min(x["cpu_best_us"] for x in results)
    base = stats["raw loop"]

    def cell(m: dict[str, float], key: str) -> str:
        return f"{m[key]:.0f} ({m[key] / base[key]:.2f}x)"

    return [
        [
            workload,
            contender,
            cell(m, "wall_us"),
            cell(m, "cpu_us"),
            cell(m, "cpu_best_us"),
            cell(m, "rss_mib"),
            f"{m['faults']:.0f}",
            f"{m['first_epoch_s']:.2f}",
        ]
        for contender, m in stats.items()
    ]


HEADERS = [
    "workload",
    "contender",
    "wall µs/iter (ratio)",
    "CPU µs/iter (ratio)",
    "best CPU µs/iter (ratio)",
    "peak RSS MiB (ratio)",
    "page faults/iter",
    "first epoch s",
]


def main() -> None:
    """Alternate the contenders over fresh processes and print the Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workloads", default="mlp,cnn")
    parser.add_argument("--compile", action="store_true", help="add the compiled donated step")
    parser.add_argument(
        "--stable-malloc",
        action="store_true",
        help="keep freed memory in glibc's heap (no per-iteration page faults) in every worker",
    )
    parser.add_argument(
        "--worker", nargs=2, metavar=("WORKLOAD", "CONTENDER"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.worker:
        worker(*args.worker)
        return
    names = [c for c in CONTENDERS if args.compile or "compiled" not in c]
    env = STABLE_MALLOC if args.stable_malloc else None
    rows = []
    for workload in args.workloads.split(","):
        rows += rows_for(workload, measure(workload, names, args.rounds, env))
    malloc = ", glibc heap kept (--stable-malloc)" if args.stable_malloc else ""
    print(
        f"Functional step vs raw loop, {args.rounds} rounds, medians, 1 thread{malloc} ({machine_line()})\n"
    )
    print(markdown_table(HEADERS, rows))


if __name__ == "__main__":
    main()
