"""ProfilerHook: argument checks, the start/step/export timeline, and a Chrome trace on disk."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.core.effects import LogText, ProfilerAction
from fengine.core.events import Event
from fengine.core.pipeline import HookError, Pipeline, dispatch
from fengine.core.run import EventInfo, RunState
from fengine.hooks.profiler_hook import ProfilerHook
from fengine.registry import HOOKS
from fengine.testing import check_hook


def actions(
    hook: ProfilerHook, run: RunState, script: list[tuple[Event, int]]
) -> list[tuple[int, str]]:
    """Dispatch ``(event, iter)`` pairs; the profiler actions with the index of their event."""
    pipeline = Pipeline.of([hook.to_fn_hook("P")])
    out = []
    for k, (event, it) in enumerate(script):
        run = dispatch(
            pipeline, event, attrs.evolve(run, iter=it, effects=()), EventInfo(batch_idx=it)
        )
        out += [(k, e.action) for e in run.effects if isinstance(e, ProfilerAction)]
    return out


def epoch_script(epochs: int, iters: int) -> list[tuple[Event, int]]:
    script = [(Event.BEFORE_RUN, 0)]
    for e in range(epochs):
        script += [(Event.AFTER_TRAIN_ITER, e * iters + i) for i in range(iters)]
        script.append((Event.AFTER_TRAIN_EPOCH, (e + 1) * iters))
    return script


@settings(max_examples=30)
@given(total=st.integers(1, 10), data=st.data())
def test_by_iteration_profiles_exactly_the_first_n_iterations(
    total: int, data: st.DataObject
) -> None:
    n = data.draw(st.integers(1, total))
    hook = ProfilerHook(by_epoch=False, profile_iters=n)
    script = [(Event.BEFORE_RUN, 0), *((Event.AFTER_TRAIN_ITER, i) for i in range(total))]
    script.append((Event.AFTER_TRAIN_EPOCH, total))
    got = actions(hook, RunState(max_epochs=1, max_iters=total, train_by_epoch=False), script)
    assert got == [(0, "start"), *((i + 1, "step") for i in range(n)), (n, "export")]


@settings(max_examples=20)
@given(epochs=st.integers(1, 4), iters=st.integers(1, 4))
def test_by_epoch_profiles_the_first_epoch(epochs: int, iters: int) -> None:
    got = actions(
        ProfilerHook(),
        RunState(max_epochs=epochs, max_iters=epochs * iters),
        epoch_script(epochs, iters),
    )
    assert got == [(0, "start"), *((i + 1, "step") for i in range(iters)), (iters + 1, "export")]


def test_start_options_and_log_lines() -> None:
    hook = ProfilerHook(
        activities=["CPU", torch.profiler.ProfilerActivity.CPU],
        schedule=dict(wait=0, warmup=0, active=1),
        on_trace_ready=dict(type="log_trace", sort_by="cpu_time_total"),
        record_shapes=True,
        json_trace_path="trace.json",
    )
    fn = hook.to_fn_hook("P")
    run, state = fn.on[Event.BEFORE_RUN](RunState(max_epochs=1, max_iters=2), fn.init, EventInfo())
    start, log = run.effects
    assert isinstance(log, LogText) and log.message == "profiler is profiling..."
    assert isinstance(start, ProfilerAction) and start.action == "start"
    assert dict(start.options) == {
        "activities": ("cpu",),
        "schedule": {"wait": 0, "warmup": 0, "active": 1},
        "on_trace_ready": {"type": "log_trace", "sort_by": "cpu_time_total"},
        "record_shapes": True,
        "profile_memory": False,
        "with_stack": False,
        "with_flops": False,
        "json_trace_path": "trace.json",
    }
    assert state.active and not state.closed
    # MMEngine's keywords: profile_times and the activity flags.
    mm = ProfilerHook(
        by_epoch=False, profile_times=3, activity_with_cpu=False, activity_with_cuda=True
    )
    assert mm.profile_iters == mm.profile_times == 3 and mm.options["activities"] == ("cuda",)


def test_runs_that_do_not_train_are_not_profiled_and_too_short_runs_are_errors() -> None:
    assert actions(ProfilerHook(), RunState(), [(Event.BEFORE_RUN, 0)]) == []
    with pytest.raises(HookError, match="profile_iters=3 exceeds the run's 2 iterations"):
        actions(
            ProfilerHook(by_epoch=False, profile_iters=3),
            RunState(max_epochs=1, max_iters=2),
            [(Event.BEFORE_RUN, 0)],
        )


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"profile_iters": 0}, ValueError, "profile_iters should be greater than 0, but got 0"),
        ({"profile_iters": 2}, ValueError, "by_epoch=True profiles the first epoch only"),
        (
            {"by_epoch": False, "profile_iters": 2, "profile_times": 3},
            ValueError,
            "are the same setting",
        ),
        ({"by_epoch": 1}, TypeError, "by_epoch must be a bool, got 1"),
        ({"schedule": [1]}, TypeError, "schedule should be a dict"),
        ({"schedule": {}}, TypeError, "wait"),
        ({"on_trace_ready": "x"}, ValueError, "should be a handler, or dict, or None"),
        (
            {"on_trace_ready": {"type": "x"}},
            ValueError,
            'trace_type should be "log_trace" or "tb_trace"',
        ),
        ({"activities": ["gpu"]}, ValueError, "activities entries must be 'cpu', 'cuda'"),
        ({"activities": "cpu"}, TypeError, "activities must be a list"),
        ({"activity_with_cpu": False}, ValueError, "needs at least one activity"),
    ],
)
def test_argument_errors(kwargs: dict[str, Any], error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        ProfilerHook(**kwargs)


def test_registered_with_mmengine_priority() -> None:
    assert HOOKS.get("ProfilerHook") is ProfilerHook
    assert ProfilerHook().priority == "VERY_LOW"


def test_default_hook_contract() -> None:
    check_hook(ProfilerHook(by_epoch=False, json_trace_path="trace.json"), max_examples=10)
    check_hook(ProfilerHook(), max_examples=10)


# -- end to end with the Runner ----------------------------------------------------------------

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runner"))
from runner_toys import toy_kwargs  # noqa: E402

from fengine.runner.runner import Runner  # noqa: E402


@pytest.mark.parametrize("by_epoch", [True, False])
def test_json_trace_is_a_chrome_trace(tmp_path: Path, by_epoch: bool) -> None:
    trace = tmp_path / "trace.json"
    hook = ProfilerHook(
        by_epoch=by_epoch, profile_iters=1 if by_epoch else 2, json_trace_path=str(trace)
    )
    Runner(**toy_kwargs(tmp_path / "run", custom_hooks=[hook])).train()
    events = json.loads(trace.read_text())["traceEvents"]
    names = {e.get("name", "") for e in events}
    assert any("aten::" in name for name in names)  # operators of the profiled steps were recorded


def test_on_trace_ready_callable_runs_once(tmp_path: Path) -> None:
    tables: list[str] = []
    hook = ProfilerHook(
        on_trace_ready=lambda prof: tables.append(prof.key_averages().table(row_limit=3))
    )
    Runner(**toy_kwargs(tmp_path, custom_hooks=[hook])).train()
    assert len(tables) == 1 and "Name" in tables[0]


def test_check_kineto_and_the_npu_profiler_name() -> None:
    from fengine.hooks import NPUProfilerHook
    from fengine.hooks.profiler_hook import check_kineto

    assert check_kineto() is torch.profiler.kineto_available()
    with pytest.raises(RuntimeError, match="Ascend NPUs, which fengine does not support; use ProfilerHook"):
        NPUProfilerHook(result_path="prof")
    with pytest.raises(RuntimeError, match="use ProfilerHook"):
        HOOKS.build({"type": "NPUProfilerHook"})
