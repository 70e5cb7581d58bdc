"""Each run of a work dir has its own timestamp, log dir, log file, scalars and config copy, even
when several start in one second (the clock is pinned here, so the test does not depend on it)."""

from __future__ import annotations

import json
import os
import time
import types
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from runner_toys import toy_kwargs

from fengine.runner import Runner, run_place
from fengine.runner.run_place import open_run_place

NOON = time.mktime((2026, 12, 4, 12, 0, 0, 0, 0, -1))
SECOND = time.strftime("%Y%m%d_%H%M%S", time.localtime(NOON))


@pytest.fixture
def pinned_clock(monkeypatch: Any) -> None:
    clock = types.SimpleNamespace(time=lambda: NOON, strftime=time.strftime, localtime=time.localtime)
    monkeypatch.setattr(run_place, "time", clock)


@settings(max_examples=10, deadline=None)
@given(taken=st.integers(0, 4), named=st.booleans())
def test_the_first_free_name_of_the_second_is_taken(tmp_path_factory: Any, taken: int, named: bool) -> None:
    work_dir = tmp_path_factory.mktemp("place")
    clock = types.SimpleNamespace(time=lambda: NOON, strftime=time.strftime, localtime=time.localtime)
    for n in range(1, taken + 1):
        os.makedirs(work_dir / (SECOND if n == 1 else f"{SECOND}_{n}"))
    real, run_place.time = run_place.time, clock  # type: ignore[assignment]
    try:
        place = open_run_place(str(work_dir), "exp" if named else None, False, 0)
    finally:
        run_place.time = real
    expected = SECOND if taken == 0 else f"{SECOND}_{taken + 1}"
    assert place.timestamp == expected
    assert place.log_dir == os.path.join(str(work_dir), expected) and os.path.isdir(place.log_dir)
    assert place.experiment_name.startswith(f"exp_{expected}" if named else expected)


def test_a_fresh_work_dir_is_numbered_too(tmp_path: Any, monkeypatch: Any, pinned_clock: None) -> None:
    monkeypatch.chdir(tmp_path)
    first = open_run_place(None, None, False, 0)
    second = open_run_place(None, None, False, 0)
    assert first.work_dir == str(tmp_path / "work_dirs" / SECOND)
    assert second.work_dir == str(tmp_path / "work_dirs" / f"{SECOND}_2")
    assert first.timestamp == second.timestamp == SECOND  # each in its own work dir


def _scalar_lines(runner: Runner) -> list[dict[str, Any]]:
    path = os.path.join(runner.log_dir, "vis_data", f"{runner.timestamp}.json")
    with open(path) as file:
        return [json.loads(line) for line in file]


def test_two_runs_of_one_work_dir_in_one_second_keep_their_files_apart(tmp_path: Any, pinned_clock: None) -> None:
    hooks = {"logger": {"type": "LoggerHook", "interval": 1}, "checkpoint": None}
    first = Runner(**toy_kwargs(tmp_path, default_hooks=hooks, train_cfg={"by_epoch": True, "max_epochs": 1}))
    first.train()
    second = Runner(**toy_kwargs(tmp_path, default_hooks=hooks, train_cfg={"by_epoch": True, "max_epochs": 2}))
    second.train()
    assert (first.timestamp, second.timestamp) == (SECOND, f"{SECOND}_2")
    assert first.log_dir != second.log_dir
    # Each run's scalars are its own: one epoch of 4 iterations against two.
    assert [line["step"] for line in _scalar_lines(first) if "loss" in line] == list(range(1, 5))
    assert [line["step"] for line in _scalar_lines(second) if "loss" in line] == list(range(1, 9))
    for runner in (first, second):
        with open(os.path.join(runner.log_dir, f"{runner.timestamp}.log")) as file:
            assert file.read().count(f"Exp name: {runner.experiment_name}") >= 1
        assert os.path.isfile(os.path.join(runner.work_dir, f"{runner.timestamp}.py"))  # its config copy
    copies = []
    for runner in (first, second):
        with open(os.path.join(runner.work_dir, f"{runner.timestamp}.py")) as file:
            copies.append(file.read())
    assert "max_epochs=1" in copies[0] and "max_epochs=2" in copies[1]
