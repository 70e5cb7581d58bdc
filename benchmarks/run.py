"""fengine's benchmark harness: ``python benchmarks/run.py`` (by hand, not in CI) writes RESULTS.md.

Every measurement runs in a fresh process with one thread (:mod:`worker`); contenders alternate
over rounds (the order rotates every round) and the tables give medians over the rounds, ratios
to the raw loop of the same workload (the median of the ratios taken within each round) and peak
RSS. Framework contenders that fengine's environment lacks (MMEngine, Lightning, Ignite) run with
the interpreter of ``--mmenv`` (default ``/tmp/mmenv/bin/python``), and are skipped with a note
where it is missing or cannot import them.

Options: ``--rounds N`` (default 5), ``--sections train,compile,scaling,shell``, ``--workloads W1,W2``,
``--only A,B`` (contenders whose name contains one of the substrings, plus the raw loop), ``--out FILE``,
``--stable-malloc`` (glibc keeps freed memory: the CNN's activations are otherwise returned to the
kernel and faulted in again every iteration, which dominates the spread of its figures),
``--baseline DIR`` (adds a ``(baseline)`` row per fengine contender, importing ``DIR/fengine``:
before/after comparisons in one alternated run, e.g. from ``git archive REV fengine``),
``--device cuda --amp bf16`` (the GPU rows: ``--sections train,compile --workloads W2,W3``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _common import (
    STABLE_MALLOC,
    machine_line,
    markdown_table,
    median,
    rotated,
    run_in_fresh_process,
)
from frameworks import FRAMEWORKS
from loops import LOOPS
from report import budget_notes, ratio_cell
from scaling import CHECKPOINT_CONTENDERS, OPTIMIZER_CONTENDERS
from shell import HOOKS

HERE = Path(__file__).resolve().parent
#: Extra environment of every worker (``--stable-malloc`` sets glibc's heap settings).
ENV: dict[str, str] = {}
#: ``--baseline``: a folder holding another version's ``fengine`` package, compared row by row.
BASELINE: list[str] = []
BASELINE_SUFFIX = " (baseline)"
WORKER = HERE / "worker.py"
EAGER = [
    "raw loop",
    "functional, pure",
    "functional, donated",
    "fengine Runner, quiet defaults",
    "MMEngine Runner, quiet defaults",
    "fengine Runner, stock defaults",
    "MMEngine Runner, stock defaults",
    "fengine Runner",
    "raw loop, fengine batched data",
    "fengine Runner, batched data",
    "MMEngine Runner",
    "Lightning",
    "Ignite",
]
COMPILED = [
    "raw loop",
    "raw loop, compiled",
    "functional, pure, compiled",
    "functional, donated, compiled",
    "fengine Runner, compiled",
]
IMPORTS = {"mmengine": "mmengine", "Lightning": "pytorch_lightning", "Ignite": "ignite"}


def interpreter_for(contender: str, mmenv: str, notes: list[str]) -> str | None:
    """The Python that runs ``contender``, or ``None`` (with a note) when none can."""
    if contender in LOOPS or FRAMEWORKS[contender][0] == "fengine":
        return sys.executable
    module = IMPORTS["mmengine" if contender.startswith("MMEngine") else contender]
    if not os.path.exists(mmenv):
        notes.append(f"{contender}: skipped, no interpreter at {mmenv} (pass --mmenv)")
        return None
    probe = subprocess.run([mmenv, "-c", f"import {module}"], capture_output=True, check=False)
    if probe.returncode != 0:
        notes.append(f"{contender}: skipped, `{module}` is not installed in {mmenv}")
        return None
    return mmenv


def alternate(jobs: dict[str, tuple[str, list[str]]], rounds: int) -> dict[str, list[dict[str, Any]]]:
    """Run every job once per round in a rotated order; the results by job name.

    A job named ``... (baseline)`` imports fengine from ``--baseline`` instead.
    """
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in jobs}
    for r in range(rounds):
        for name in rotated(list(jobs), r):
            python, args = jobs[name]
            env = {**ENV, "PYTHONPATH": BASELINE[0]} if name.endswith(BASELINE_SUFFIX) else ENV
            result = run_in_fresh_process(WORKER, args, python=python, env=env)
            results[name].append(result)
            print(f"round {r + 1}/{rounds} {name}: {result}", file=sys.stderr, flush=True)
    return results


def medians(runs: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The median of each measured quantity over ``runs``."""
    return {key: median([run[key] for run in runs]) for key in runs[0]}


def paired_ratios(runs: Sequence[dict[str, Any]], base: Sequence[dict[str, Any]]) -> dict[str, float]:
    """The median over rounds of each quantity's ratio to ``base`` measured in the same round.

    A shared machine drifts from round to round by more than the differences measured; a ratio
    taken within a round cancels the drift, a ratio of two medians does not.
    """
    return {key: median([run[key] / ref[key] for run, ref in zip(runs, base)]) for key in runs[0]}


def training_table(
    workloads: list[str], contenders: list[str], rounds: int, mmenv: str, notes: list[str]
) -> tuple[str, dict[str, dict[str, dict[str, float]]]]:
    """Per-iteration time of each contender on each workload, against the raw loop.

    Returns:
        The Markdown table and the medians by workload and contender.
    """
    pythons = {c: interpreter_for(c, mmenv, notes) for c in contenders}
    rows = []
    by_workload = {}
    for workload in workloads:
        jobs = {c: (p, ["train", workload, c]) for c, p in pythons.items() if p is not None}
        if BASELINE:
            jobs.update(
                {c + BASELINE_SUFFIX: (p, ["train", workload, c]) for c, p in pythons.items()
                 if p == sys.executable and c != "raw loop" and "compiled" not in c}
            )
        results = alternate(jobs, rounds)
        stats = {c: medians(runs) for c, runs in results.items()}
        by_workload[workload] = stats
        for contender, m in stats.items():
            ratio = paired_ratios(results[contender], results["raw loop"])
            cells = [
                f"{m[key]:.0f} ({ratio_cell(workload, contender, kind, ratio[key])})"
                for key, kind in (("wall_us", "time"), ("cpu_us", "time"), ("cpu_best_us", "time"), ("rss_mib", "rss"))
            ]
            rows.append([workload, contender, *cells, f"{m['faults']:.0f}", f"{m['first_epoch_s']:.2f}"])
    headers = [
        "workload", "contender", "wall µs/iter (× raw)", "CPU µs/iter (× raw)",
        "best-epoch CPU µs/iter (× raw)", "peak RSS MiB (× raw)", "page faults/iter", "first epoch s",
    ]
    return markdown_table(headers, rows), by_workload


def scaling_tables(rounds: int, mmenv: str, notes: list[str]) -> str:
    """Idle hooks, optimizer tensor counts and checkpoint I/O."""
    out = []
    engines = ["fengine"] + (["mmengine"] if interpreter_for("MMEngine Runner", mmenv, notes) else [])
    jobs = {
        f"{engine} {n}": (sys.executable if engine == "fengine" else mmenv, ["hooks", engine, str(n)])
        for engine in engines
        for n in (1, 10, 100)
    }
    stats = {k: medians(v) for k, v in alternate(jobs, rounds).items()}
    rows = [
        [engine, *(f"{stats[f'{engine} {n}']['cpu_us']:.0f}" for n in (1, 10, 100)),
         f"{stats[f'{engine} 100']['cpu_us'] / stats[f'{engine} 1']['cpu_us']:.2f}x"]
        for engine in engines
    ]
    out.append("**Idle hooks** (W1, no default hooks; N user hooks of which one handles `after_train_iter`, "
               "the others `before_train_epoch` only): CPU µs per iteration\n")
    out.append(markdown_table(["Runner", "N = 1", "N = 10", "N = 100", "100 / 1"], rows))
    jobs = {f"{c}|{n}": (sys.executable, ["optimizer", c, str(n)]) for c in OPTIMIZER_CONTENDERS for n in (10, 1000)}
    stats = {k: medians(v) for k, v in alternate(jobs, rounds).items()}
    base = {n: stats[f"{OPTIMIZER_CONTENDERS[0]}|{n}"]["us"] for n in (10, 1000)}
    rows = [
        [c, *(f"{stats[f'{c}|{n}']['us']:.0f} ({stats[f'{c}|{n}']['us'] / base[n]:.2f}x)" for n in (10, 1000)),
         f"{stats[f'{c}|1000']['us'] / stats[f'{c}|10']['us']:.2f}x"]
        for c in OPTIMIZER_CONTENDERS
    ]
    out.append("\n**Optimizer step**, SGD momentum over 1M parameters: µs per step (× torch)\n")
    out.append(markdown_table(["optimizer", "10 tensors", "1,000 tensors", "1,000 / 10"], rows))
    jobs = {c: (sys.executable, ["checkpoint", c]) for c in CHECKPOINT_CONTENDERS}
    stats = {k: medians(v) for k, v in alternate(jobs, rounds).items()}
    base_c = stats[CHECKPOINT_CONTENDERS[0]]
    rows = [
        [c, f"{m['mib']:.1f}", f"{m['save_ms']:.1f} ({m['save_ms'] / base_c['save_ms']:.2f}x)",
         f"{m['load_ms']:.1f} ({m['load_ms'] / base_c['load_ms']:.2f}x)"]
        for c, m in stats.items()
    ]
    out.append("\n**Checkpoint** of W3's model and optimizer state: ms (× torch)\n")
    out.append(markdown_table(["writer / reader", "MiB", "save ms", "load ms"], rows))
    return "\n".join(out)


def shell_tables(rounds: int, mmenv: str, notes: list[str]) -> str:
    """Each hook alone (µs per W1 iteration over the bare Runner), set-up time and host reads."""
    engines = {"fengine": sys.executable}
    if interpreter_for("MMEngine Runner", mmenv, notes):
        engines["mmengine"] = mmenv
    names = ["bare", *HOOKS]
    jobs = {f"{e}|{n}": (p, ["hook", e, n]) for e, p in engines.items() for n in names}
    jobs.update({f"{e}|setup": (p, ["setup", e]) for e, p in engines.items()})
    results = alternate(jobs, rounds)
    rows = []
    for name in names[1:]:
        cells = []
        for engine in engines:
            costs = [r["cpu_best_us"] - b["cpu_best_us"] for r, b in zip(results[f"{engine}|{name}"], results[f"{engine}|bare"])]
            cells.append(f"{median(costs):+.1f}")
        rows.append([name, *cells])
    counted = alternate({f"{e}|{n}": (p, ["calls", e, n]) for e, p in engines.items() for n in names}, 1)
    for row, name in zip(rows, names[1:]):
        row += [
            f"{counted[f'{e}|{name}'][0]['calls_per_iter'] - counted[f'{e}|bare'][0]['calls_per_iter']:+.1f}"
            for e in engines
        ]
    bare = [f"{median([r['cpu_us'] for r in results[f'{e}|bare']]):.0f}" for e in engines]
    out = ["**Each hook alone** (W1, no default hooks, the timing hook only): best-epoch CPU µs per iteration "
           "over the bare Runner of the same round (median of the rounds' differences; the bare "
           f"Runner itself: {', '.join(f'{e} {b} µs' for e, b in zip(engines, bare))})"
           "; and Python function calls per iteration over the bare Runner's (cProfile's count, "
           "which the machine's load does not change)\n",
           markdown_table(["hook", *(f"{e} µs" for e in engines), *(f"{e} calls" for e in engines)], rows)]
    rows = [
        [e, *(f"{median([r[k] for r in results[f'{e}|setup']]):.3f}" for k in ("import_s", "build_s", "train_s"))]
        for e in engines
    ]
    out.append("\n**Set-up** (W1, six default hooks; a fresh process): seconds\n")
    out.append(markdown_table(["engine", "import", "Runner(...)", "train() to the first batch"], rows))
    checks = [("fengine", "default"), ("fengine", "False"), *([("mmengine", "default")] if "mmengine" in engines else [])]
    jobs = {f"{e}|{c}": (engines[e], ["reads", e, c]) for e, c in checks}
    reads = {k: medians(v) for k, v in alternate(jobs, 1).items()}
    rows = [[e, c, f"{reads[f'{e}|{c}']['reads_per_iter']:.2f}"] for e, c in checks]
    out.append("\n**Host reads of tensor values** per iteration (200 W1 iterations, a log line every 50; "
               "`CHECK` is fengine's `train_cfg['check_finite']`)\n")
    out.append(markdown_table(["engine", "CHECK", "reads / iteration"], rows))
    return "\n".join(out)


def compile_verdict(stats: dict[str, dict[str, dict[str, float]]]) -> str:
    """Where ``torch.compile`` wins: the fastest compiled contender per workload against eager."""
    lines = []
    for workload, by_contender in stats.items():
        eager = by_contender["raw loop"]["cpu_us"]
        compiled = {c: m["cpu_us"] for c, m in by_contender.items() if "compiled" in c}
        if not compiled:
            continue
        best = min(compiled, key=compiled.__getitem__)
        ratio = compiled[best] / eager
        verdict = "wins" if ratio < 1 else "loses"
        lines.append(
            f"- {workload}: compile {verdict}: the fastest is {best} at {ratio:.2f}x the eager raw "
            f"loop (CPU time); the compiled Runner runs at "
            f"{by_contender.get('fengine Runner, compiled', {}).get('cpu_us', float('nan')) / eager:.2f}x."
        )
    return "Steady state against the eager raw loop:\n\n" + "\n".join(lines)


def main() -> None:
    """Parse the options, run the sections and write the Markdown report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--compile-rounds", type=int, default=3, help="rounds of the compile section")
    parser.add_argument("--sections", default="train,compile,scaling,shell")
    parser.add_argument("--workloads", default="W1,W2,W3")
    parser.add_argument("--only", default="")
    parser.add_argument("--mmenv", default="/tmp/mmenv/bin/python")
    parser.add_argument("--out", default=str(HERE / "RESULTS.md"))
    parser.add_argument(
        "--stable-malloc",
        action="store_true",
        help="keep freed memory in glibc's heap in every worker (no per-iteration page faults)",
    )
    parser.add_argument("--baseline", default="", help="folder with another fengine version to compare")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (models and batches there)")
    parser.add_argument("--amp", default="", choices=["", "bf16"], help="forward and loss under bf16 autocast")
    args = parser.parse_args()
    if args.device != "cpu" or args.amp:
        ENV.update({"FENGINE_BENCH_DEVICE": args.device, "FENGINE_BENCH_AMP": args.amp})
    if args.baseline:
        BASELINE.append(os.path.abspath(args.baseline))
    if args.stable_malloc:
        ENV.update(STABLE_MALLOC)
    sections, workloads, notes = args.sections.split(","), args.workloads.split(","), []

    def chosen(names: list[str]) -> list[str]:
        return [n for n in names if n == "raw loop" or any(part in n for part in args.only.split(","))]

    malloc = ", glibc heap kept (`--stable-malloc`)" if args.stable_malloc else ""
    malloc += f", device {args.device}" + (f", autocast {args.amp}" if args.amp else "")
    parts = [f"# Benchmark results\n\n{machine_line()}; one thread, every measurement in a fresh "
             f"process, {args.rounds} rounds alternated, medians (ratios: the median of each round's ratio "
             f"to the raw loop){malloc}. Produced by "
             "`python benchmarks/run.py`.\n"]
    if "train" in sections:
        table, _ = training_table(workloads, chosen(EAGER), args.rounds, args.mmenv, notes)
        parts.append("## Training, eager\n\n" + table)
    if "compile" in sections:
        table, stats = training_table(workloads, chosen(COMPILED), args.compile_rounds, args.mmenv, notes)
        parts.append(f"## Training, `torch.compile`\n\n{args.compile_rounds} rounds; the first epoch "
                     "includes compilation.\n\n" + table + "\n\n" + compile_verdict(stats))
    if args.device == "cpu":
        notes.append(
            "No GPU rows: this run had no GPU. On a CUDA machine: `python benchmarks/run.py "
            "--device cuda --amp bf16 --sections train,compile --workloads W2,W3`."
        )
    if "scaling" in sections:
        parts.append("## Scaling\n\n" + scaling_tables(args.rounds, args.mmenv, notes))
    if "shell" in sections:
        parts.append("## The Runner's own costs\n\n" + shell_tables(args.rounds, args.mmenv, notes))
    parts.append("## Notes\n\n" + "\n".join(f"- {n}" for n in [*budget_notes(), *dict.fromkeys(notes)]))
    text = "\n\n".join(parts) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
