"""Hook registration (spec §1.3, §3.1, A1), dispatch, ``call_hook`` and ``run_hook``."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from runner_toys import ToyMetric, ToyModel, toy_kwargs

from fengine.core.events import Event
from fengine.core.priority import Priority, get_priority
from fengine.core.run import EventInfo
from fengine.hooks import EMAHook, Hook, IterTimerHook
from fengine.registry import HOOKS
from fengine.runner.hook_host import current_hook_name
from fengine.runner.runner import Runner

DEFAULT_ORDER = ["RuntimeInfoHook", "IterTimerHook", "DistSamplerSeedHook", "LoggerHook", "ParamSchedulerHook", "CheckpointHook"]


@HOOKS.register_module(force=True)
class H1(Hook):
    pass


class H2(Hook):
    priority = 55


class H3(Hook):
    pass


def _names(runner: Runner) -> list[str]:
    return [type(h).__name__ for h in runner.hooks]


def test_a1_order_ties_and_stored_priorities(tmp_path: Any) -> None:
    h3 = H3()
    custom = [EMAHook(priority="NORMAL"), {"type": "H1", "priority": "HIGHEST"}, H2(), h3]
    runner = Runner(ToyModel(), work_dir=str(tmp_path), custom_hooks=custom)
    runner.register_hook(H3(), priority=Priority.NORMAL)
    assert _names(runner) == [
        "H1", "RuntimeInfoHook", "IterTimerHook", "DistSamplerSeedHook", "EMAHook", "H3", "H3",
        "H2", "LoggerHook", "ParamSchedulerHook", "CheckpointHook",
    ]
    by_name = dict(zip(runner.hook_names, runner.hooks))
    assert by_name["H1"].priority == "HIGHEST"
    assert by_name["H2"].priority == 55
    assert by_name["H3_1"].priority is Priority.NORMAL
    assert by_name["H3"] is h3 and h3.priority == "NORMAL"


def test_seed_default_ema_priority_runs_before_normal_hooks(tmp_path: Any) -> None:
    runner = Runner(ToyModel(), work_dir=str(tmp_path), custom_hooks=[{"type": "EMAHook"}])
    assert _names(runner)[:3] == ["RuntimeInfoHook", "EMAHook", "IterTimerHook"]


def test_default_hooks_merge(tmp_path: Any) -> None:
    runner = Runner(ToyModel(), work_dir=str(tmp_path), default_hooks={"timer": None})
    assert _names(runner) == ["RuntimeInfoHook", "DistSamplerSeedHook", "LoggerHook", "ParamSchedulerHook", "CheckpointHook"]
    replaced = IterTimerHook()
    runner = Runner(ToyModel(), work_dir=str(tmp_path), default_hooks={"timer": replaced, "extra": H3()})
    assert _names(runner) == [*DEFAULT_ORDER[:3], "H3", *DEFAULT_ORDER[3:]]
    assert runner.hooks[1] is replaced
    with pytest.raises(KeyError, match=r"'foo'.*not a default hook"):
        Runner(ToyModel(), work_dir=str(tmp_path), default_hooks={"foo": None})


def test_register_hook_rejects_what_is_not_a_hook(tmp_path: Any) -> None:
    runner = Runner(ToyModel(), work_dir=str(tmp_path))
    with pytest.raises(TypeError, match="instance of Hook or dict"):
        runner.register_hook(["x"])  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="NoSuchHook is not in the fengine::hook registry"):
        runner.register_hook({"type": "NoSuchHook"})
    with pytest.raises(ValueError, match="between 0 and 100"):
        runner.register_hook(H3(), priority=101)
    with pytest.raises(KeyError, match="unknown priority name"):
        runner.register_hook({"type": "H1", "priority": "SOON"})
    with pytest.raises(TypeError, match="custom_hooks must be a list"):
        Runner(ToyModel(), work_dir=str(tmp_path), custom_hooks=H3())  # type: ignore[arg-type]


def test_priority_precedence_and_config_left_alone(tmp_path: Any) -> None:
    runner = Runner(ToyModel(), work_dir=str(tmp_path), default_hooks={k: None for k in DEFAULT_ORDER_KEYS})
    cfg = {"type": "H1", "priority": "LOW"}
    runner.register_hook(cfg)
    runner.register_hook(cfg, priority=5)
    runner.register_hook(H2())
    assert cfg == {"type": "H1", "priority": "LOW"}
    assert [h.priority for h in runner.hooks] == [5, 55, "LOW"]
    assert runner.hook_names == ["H1_1", "H2", "H1"]


def test_hooks_of_one_class_are_allowed_with_stable_unique_names(tmp_path: Any) -> None:
    """As in MMEngine, one class may be registered many times; each gets a state key of its own
    that a runner built the same way reproduces, and they all run."""

    def build(folder: str) -> Runner:
        return Runner(**toy_kwargs(tmp_path / folder, custom_hooks=[IterTimerHook(), {"type": "IterTimerHook", "priority": "LOW"}]))

    runner = build("a")
    names = ["RuntimeInfoHook", "IterTimerHook", "DistSamplerSeedHook", "IterTimerHook_1", "LoggerHook", "ParamSchedulerHook", "IterTimerHook_2", "CheckpointHook"]
    assert runner.hook_names == names
    assert build("b").hook_names == names
    runner.train()
    states = runner.hook_states()
    assert all(states[n].train_iters == runner.iter > 0 for n in ("IterTimerHook", "IterTimerHook_1", "IterTimerHook_2"))


def test_two_hooks_of_one_class_resume_into_their_own_states(tmp_path: Any) -> None:
    """The second hook of a class is ``Class_1``; a checkpoint holds each state under its name and
    a runner built the same way resumes each state into the hook in the same place."""

    def build(folder: str, values: list[float], **kwargs: Any) -> Runner:
        hooks = [
            {"type": "EarlyStoppingHook", "monitor": "acc", "rule": "greater", "patience": 9},
            {"type": "EarlyStoppingHook", "monitor": "acc", "rule": "less", "patience": 9},
        ]
        return Runner(**toy_kwargs(tmp_path / folder, custom_hooks=hooks, val_evaluator=ToyMetric(values), **kwargs))

    runner = build("a", [0.5, 0.75], train_cfg={"by_epoch": True, "max_epochs": 2, "val_interval": 1})
    assert [n for n in runner.hook_names if n.startswith("EarlyStopping")] == ["EarlyStoppingHook", "EarlyStoppingHook_1"]
    runner.train()
    saved = {n: runner.hook_states()[n] for n in ("EarlyStoppingHook", "EarlyStoppingHook_1")}
    assert (saved["EarlyStoppingHook"].best_score, saved["EarlyStoppingHook_1"].best_score) == (0.75, 0.5)
    resumed = build("b", [0.25], train_cfg={"by_epoch": True, "max_epochs": 3, "val_interval": 1},
                    load_from=str(tmp_path / "a" / "epoch_2.pth"), resume=True)
    resumed.load_or_resume()
    for name, state in saved.items():
        got = resumed.hook_states()[name]
        assert (got.best_score, got.wait_count, got.best_epoch) == (state.best_score, state.wait_count, state.best_epoch)
    resumed.train()  # the third evaluation (0.25) is a new best for the 'less' hook only
    states = resumed.hook_states()
    assert (states["EarlyStoppingHook"].best_score, states["EarlyStoppingHook"].wait_count) == (0.75, 1)
    assert (states["EarlyStoppingHook_1"].best_score, states["EarlyStoppingHook_1"].wait_count) == (0.25, 0)


@settings(max_examples=15, deadline=None)
@given(count=st.integers(1, 6))
def test_names_of_older_checkpoints_map_onto_todays(tmp_path_factory: Any, count: int) -> None:
    """Checkpoints written when the n-th hook of a class was ``Class#n`` resume under today's names."""
    runner = Runner(ToyModel(), work_dir=str(tmp_path_factory.mktemp("w")), default_hooks={k: None for k in DEFAULT_ORDER_KEYS})
    for _ in range(count):
        runner.register_hook(H3())
    older = ["H3"] + [f"H3#{n}" for n in range(2, count + 1)]
    assert [current_hook_name(name) for name in older] == runner.hook_names == ["H3"] + [f"H3_{n}" for n in range(1, count)]
    assert current_hook_name("H3_1") == "H3_1" and current_hook_name("Odd#name") == "Odd#name"


def test_mmengine_reset_of_hooks_then_register_again(tmp_path: Any) -> None:
    """MMEngine's tests assign ``runner._hooks = []`` and register again: the pipeline follows."""
    runner = Runner(**toy_kwargs(tmp_path))
    runner._hooks = []
    assert runner.hooks == [] and runner.hook_names == []
    runner.register_hook({"type": "IterTimerHook"})
    runner.register_hook({"type": "RuntimeInfoHook"})
    assert runner.hook_names == ["RuntimeInfoHook", "IterTimerHook"]
    runner._hooks = []
    runner.register_default_hooks()
    assert _names(runner) == DEFAULT_ORDER and runner.hook_names == DEFAULT_ORDER
    timer = IterTimerHook()
    runner._hooks = [timer, IterTimerHook()]
    assert runner.hook_names == ["IterTimerHook", "IterTimerHook_1"] and runner.hooks[0] is timer


def test_a_refused_hook_leaves_the_registration_unchanged(tmp_path: Any) -> None:
    runner = Runner(**toy_kwargs(tmp_path, custom_hooks=[EMAHook()]))
    before = (runner.hooks, runner.hook_names)
    with pytest.raises(ValueError, match="'EMAHook' and 'EMAHook_1' would both own the checkpoint's 'ema_state_dict'"):
        runner.register_hook(EMAHook(momentum=0.5))
    assert (runner.hooks, runner.hook_names) == before
    assert len(runner.hook_host.pipeline.hooks) == len(before[0])


class Exclusive(Hook):
    owns = frozenset({"the run's lucky number"})


def test_owned_state_is_data_on_any_hook_class(tmp_path: Any) -> None:
    runner = Runner(ToyModel(), work_dir=str(tmp_path), custom_hooks=[Exclusive(), H3(), H3()])
    assert runner.hook_host.fn_hooks[runner.hook_names.index("Exclusive")].owns == Exclusive.owns
    with pytest.raises(ValueError, match="hooks 'Exclusive' and 'Exclusive_1' would both own the run's lucky number"):
        runner.register_hook(Exclusive())
    assert Hook.owns == IterTimerHook.owns == frozenset()


DEFAULT_ORDER_KEYS = ("runtime_info", "timer", "sampler_seed", "logger", "param_scheduler", "checkpoint")


@settings(max_examples=30, deadline=None)
@given(st.lists(st.one_of(st.integers(0, 100), st.sampled_from(list(Priority)), st.sampled_from(["high", "LOW", "normal"])), max_size=8))
def test_call_order_is_a_stable_sort_by_priority(priorities: list[Any]) -> None:
    runner = _BARE_RUNNER
    runner._hooks = []
    hooks = [H3() for _ in priorities]
    for hook, priority in zip(hooks, priorities):
        runner.register_hook(hook, priority=priority)
    expected = sorted(range(len(hooks)), key=lambda i: get_priority(priorities[i]))
    assert [id(h) for h in runner.hooks] == [id(hooks[i]) for i in expected]


_BARE_RUNNER: Runner


@pytest.fixture(autouse=True, scope="module")
def _bare_runner(tmp_path_factory: Any) -> None:
    global _BARE_RUNNER
    _BARE_RUNNER = Runner(ToyModel(), work_dir=str(tmp_path_factory.mktemp("bare")))


def test_get_hooks_info_lists_stages_in_mmengine_format(tmp_path: Any) -> None:
    runner = Runner(ToyModel(), work_dir=str(tmp_path), default_hooks={k: None for k in DEFAULT_ORDER_KEYS})

    class OnIter(Hook):
        def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
            pass

    runner.register_hook(OnIter(), priority=55)
    runner.register_hook(OnIter(), priority="VERY_LOW")
    assert runner.get_hooks_info() == (
        "after_train_iter:\n"
        f"({55:<12}) {'OnIter':<35}\n"
        f"({'VERY_LOW':<12}) {'OnIter':<35}\n"
        " -------------------- "
    )


def test_call_hook_custom_events_and_signature_errors(tmp_path: Any) -> None:
    runner = Runner(ToyModel(), work_dir=str(tmp_path))
    seen: list[Any] = []

    class Custom(Hook):
        def my_event(self, runner: Any, x: int) -> None:
            seen.append((runner, x))

    class Broken(Hook):
        priority = "LOWEST"

        def my_event(self, runner: Any) -> None:
            pass

    runner.register_hook(Custom())
    runner.call_hook("my_event", x=5)
    assert seen == [(runner, 5)]
    runner.register_hook(Broken())
    with pytest.raises(TypeError, match=r"unexpected keyword argument 'x' in <.*Broken"):
        runner.call_hook("my_event", x=5)
    with pytest.raises(TypeError, match=r"unexpected keywords \['foo'\]"):
        runner.call_hook("before_train", foo=1)


def test_call_hook_standard_event_reaches_class_and_builtin_hooks(tmp_path: Any) -> None:
    runner = Runner(**toy_kwargs(tmp_path))
    seen: list[int] = []

    class Watch(Hook):
        def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
            seen.append(batch_idx)

    runner.register_hook(Watch())
    runner.train_loop  # noqa: B018 - builds the loop, as MMEngine's property does
    runner.optim_wrapper = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.call_hook("before_train_iter", batch_idx=3, data_batch=None)
    assert seen == [3]
    assert runner.message_hub.get_info("iter") == 0  # RuntimeInfoHook's effect was carried out
    assert runner.message_hub.get_scalar("train/lr").current() == 0.1


def test_events_no_hook_handles_do_not_read_the_clock(tmp_path: Any, monkeypatch: Any) -> None:
    runner = Runner(ToyModel(), work_dir=str(tmp_path), default_hooks={k: None for k in DEFAULT_ORDER_KEYS})
    monkeypatch.setattr(time, "time", lambda: pytest.fail("clock read for an unhandled event"))
    for event in Event:
        runner._fire(event)


def test_run_hook_for_registered_and_detached_hooks(tmp_path: Any) -> None:
    runner = Runner(ToyModel(), work_dir=str(tmp_path))
    timer = runner.hooks[1]
    assert isinstance(timer, IterTimerHook)
    timer.before_train_epoch(runner)
    state = runner.hook_states()["IterTimerHook"]
    assert state != IterTimerHook().to_fn_hook("x").init
    detached = IterTimerHook()
    detached.before_train_epoch(runner)
    assert runner.hook_states()["IterTimerHook"] is state
    assert "IterTimerHook@detached" not in runner.run_state.hook_states
    runner.run_hook(detached, Event.BEFORE_TRAIN_EPOCH, EventInfo(time=5.0))
    assert runner.hook_host.detached[detached] is not None
