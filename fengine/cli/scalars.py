"""Reading a run's ``vis_data/scalars.json`` into named curves.

The file holds one JSON object per line, as ``LocalVisBackend`` writes them. Training records
carry the ``iter`` counter and are plotted against the iteration; validation records carry only
``step`` (the epoch in an epoch-based run, the iteration otherwise) and their keys are named
``val/<key>``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import attrs

SCALARS = os.path.join("vis_data", "scalars.json")
# Bookkeeping fields of every record: counters and timings, not curves worth plotting by default.
_COUNTERS = frozenset({"step", "epoch", "iter"})
_TIMINGS = frozenset({"time", "data_time", "memory"})


@attrs.frozen
class Curve:
    """One scalar over a run: ``values[i]`` was recorded at ``steps[i]`` (in ``unit``)."""

    name: str
    unit: str
    steps: tuple[float, ...]
    values: tuple[float, ...]


def _newest_first(work_dir: str) -> list[str]:
    runs = [
        os.path.join(work_dir, name, SCALARS)
        for name in os.listdir(work_dir)
        if os.path.isfile(os.path.join(work_dir, name, SCALARS))
    ]
    return sorted(
        runs,
        key=lambda p: (os.path.basename(os.path.dirname(os.path.dirname(p))), os.path.getmtime(p)),
        reverse=True,
    )


def _has_training(path: str) -> bool:
    with open(path, encoding="utf-8") as handle:
        return any('"iter"' in line for line in handle)


def find_scalars(path: str) -> str:
    """The scalars file of ``path``: the file itself, a run's log folder, or a work dir.

    For a work dir, the newest ``<work_dir>/<timestamp>/vis_data/scalars.json`` that holds
    training records (a ``test`` run's folder holds none), else the newest of all.

    Args:
        path: a ``scalars.json``, a ``<work_dir>/<timestamp>`` folder or a work dir.

    Returns:
        The file's path.

    Raises:
        FileNotFoundError: nothing there; the message says what was looked for.
    """
    if os.path.isfile(path):
        return path
    if os.path.isfile(os.path.join(path, SCALARS)):
        return os.path.join(path, SCALARS)
    candidates = _newest_first(path) if os.path.isdir(path) else []
    if not candidates:
        raise FileNotFoundError(
            f"no scalars under {path!r}: expected <work_dir>/<timestamp>/{SCALARS} "
            "(written by a training run), a run folder, or the scalars.json file itself"
        )
    return next((c for c in candidates if _has_training(c)), candidates[0])


def read_curves(path: str) -> dict[str, Curve]:
    """Every numeric key of a scalars file as a curve, training keys first.

    Args:
        path: the ``scalars.json`` file.

    Returns:
        Curves by name: training keys as they are (``loss``, ``lr``, ...), validation keys as
        ``val/<key>``. Counters (``step``, ``epoch``, ``iter``) are not curves.

    Raises:
        ValueError: a line is not a JSON object; the message names the file and line.
    """
    records = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}:{number} is not a JSON line: {error}") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path}:{number} is not a JSON object: {line.strip()[:80]}")
            records.append(record)
    by_epoch = any("epoch" in r for r in records if "iter" in r)
    points: dict[str, tuple[str, list[float], list[float]]] = {}
    for record in records:
        train = "iter" in record
        step = record["iter"] if train else record.get("step", len(points))
        unit = "iteration" if train or not by_epoch else "epoch"
        for key, value in record.items():
            if key in _COUNTERS or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            name = key if train else f"val/{key}"
            _, steps, values = points.setdefault(name, (unit, [], []))
            steps.append(float(step))
            values.append(float(value))
    ordered = sorted(points, key=lambda n: n.startswith("val/"))
    return {n: Curve(n, points[n][0], tuple(points[n][1]), tuple(points[n][2])) for n in ordered}


def default_keys(curves: dict[str, Curve]) -> list[str]:
    """The curves worth a first look: losses, then learning rates, then validation metrics."""
    groups: list[list[str]] = [[], [], []]
    for name in curves:
        if name.startswith("val/"):
            if name[4:] not in _TIMINGS:
                groups[2].append(name)
        elif "loss" in name:
            groups[0].append(name)
        elif name == "lr" or name.endswith("_lr") or name.endswith("/lr"):
            groups[1].append(name)
    return groups[0] + groups[1] + groups[2]


def select(curves: dict[str, Curve], keys: Sequence[str]) -> list[Curve]:
    """The curves named by ``keys``; a bare validation name (``accuracy``) finds ``val/accuracy``.

    Args:
        curves: all curves of a run.
        keys: the names asked for.

    Returns:
        The curves in the order asked.

    Raises:
        KeyError: a name matches no curve; the message lists the available ones.
    """
    chosen = []
    for key in keys:
        name = key if key in curves else f"val/{key}"
        if name not in curves:
            raise KeyError(f"no curve named {key!r} in the scalars; available: {', '.join(curves)}")
        chosen.append(curves[name])
    return chosen
