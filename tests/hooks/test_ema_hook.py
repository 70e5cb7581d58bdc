"""EMAHook: MMEngine's timeline (A7), checkpoint layout and resume rules, properties of the pure part."""

from __future__ import annotations

import io
import itertools
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from fengine.core import ema as fc_ema
from fengine.core.effects import AddToCheckpoint, Effect, LoadWeights, LogText
from fengine.core.events import Event
from fengine.core.pipeline import FnHook, HookError, Pipeline, dispatch
from fengine.core.plain import from_plain, to_plain
from fengine.core.run import EventInfo, RunState
from fengine.hooks import Hook
from fengine.hooks.ema_hook import EMAHook, EMAHookState, ema_fn_hook, swap_state_dicts
from fengine.model.averaged_model import BaseAveragedModel
from fengine.registry import HOOKS, MODELS, RegistryError
from fengine.testing import check_hook


class Toy(nn.Module):
    f: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.0))
        self.register_buffer("f", torch.tensor(0.0))

    def set(self, value: float) -> None:
        with torch.no_grad():
            self.w.fill_(value)
            self.f.fill_(10 * value)


class Shell:
    """The runner's part for one model: counters, dispatch, LoadWeights and AddToCheckpoint."""

    def __init__(self, model: nn.Module, **run: Any) -> None:
        self.model = model
        self.run_state = RunState(
            params=dict(model.named_parameters()), buffers=dict(model.named_buffers()), **run
        )
        self.effects: list[Effect] = []

    def run_hook(self, hook: Hook, event: Event, info: EventInfo) -> None:
        self.dispatch(Pipeline.of([hook.to_fn_hook(type(hook).__name__)]), event, info)

    def dispatch(self, pipeline: Pipeline, event: Event, info: EventInfo) -> None:
        run = dispatch(pipeline, event, self.run_state, info)
        for effect in run.effects:
            self.effects.append(effect)
            if isinstance(effect, LoadWeights):
                live = self.model.state_dict()
                with torch.no_grad():
                    for name, value in effect.tensors.items():
                        live[name].copy_(value)
            elif isinstance(effect, AddToCheckpoint):
                assert info.checkpoint is not None
                info.checkpoint[effect.key] = effect.value  # type: ignore[index]
        self.run_state = attrs.evolve(run, effects=())

    def hook_state(self) -> EMAHookState:
        (state,) = self.run_state.hook_states.values()
        assert isinstance(state, EMAHookState)
        return state

    def at(self, **counters: int) -> Shell:
        self.run_state = attrs.evolve(self.run_state, **counters)
        return self


def test_a7_timeline() -> None:
    model, hook = Toy(), EMAHook(momentum=0.5, begin_iter=2)
    runner = Shell(model, max_iters=4)
    hook.before_run(runner)
    hook.before_train(runner)
    averages, steps = [], []
    for i, value in enumerate([1.0, 3.0, 5.0, 7.0]):
        model.set(value)
        hook.after_train_iter(runner.at(iter=i), batch_idx=i)
        ema = runner.hook_state().ema
        assert ema is not None
        averages.append(ema.params["w"].item())
        steps.append(ema.steps)
    assert averages == [1.0, 3.0, 4.0, 5.5]
    assert steps == [0, 1, 2, 3]
    hook.before_val_epoch(runner)
    assert model.w.item() == 5.5
    hook.after_val_epoch(runner, metrics={"acc": 1.0})
    assert model.w.item() == 7.0
    checkpoint: dict[str, Any] = {
        "meta": {},
        "state_dict": {k: v.clone() for k, v in model.state_dict().items()},
    }
    hook.before_save_checkpoint(runner, checkpoint)
    assert list(checkpoint) == ["meta", "state_dict", "ema_state_dict"]
    assert checkpoint["state_dict"]["w"].item() == 5.5
    assert checkpoint["ema_state_dict"]["module.w"].item() == 7.0
    assert list(checkpoint["ema_state_dict"]) == ["steps", "module.w", "module.f"]
    assert int(checkpoint["ema_state_dict"]["steps"]) == 3
    # Buffers are copied (update_buffers=False), so they are equal on both sides.
    assert (
        checkpoint["state_dict"]["f"].item()
        == checkpoint["ema_state_dict"]["module.f"].item()
        == 70.0
    )


def saved_checkpoint() -> tuple[dict[str, Any], Toy]:
    model, hook = Toy(), EMAHook(momentum=0.5)
    runner = Shell(model, max_iters=3)
    hook.before_run(runner)
    for i, value in enumerate([1.0, 3.0, 5.0]):
        model.set(value)
        hook.after_train_iter(runner.at(iter=i), batch_idx=i)
    checkpoint: dict[str, Any] = {
        "state_dict": {k: v.clone() for k, v in model.state_dict().items()}
    }
    hook.before_save_checkpoint(runner, checkpoint)
    return checkpoint, model


def test_resume_swaps_back_and_restores_the_average() -> None:
    checkpoint, _ = saved_checkpoint()
    assert checkpoint["state_dict"]["w"].item() == 3.5  # EMA of 1, 3, 5
    model, hook = Toy(), EMAHook(momentum=0.5)
    runner = Shell(model, resumed=True)
    hook.before_run(runner)
    hook.after_load_checkpoint(runner, checkpoint)
    assert checkpoint["state_dict"]["w"].item() == 5.0  # the model will load the raw weights
    assert checkpoint["ema_state_dict"]["module.w"].item() == 3.5
    ema = runner.hook_state().ema
    assert ema is not None and ema.steps == 3 and ema.params["w"].item() == 3.5
    model.set(7.0)
    hook.after_train_iter(runner.at(iter=3), batch_idx=3)
    assert runner.hook_state().ema.params["w"].item() == 5.25  # type: ignore[union-attr]


def test_load_without_resume_starts_the_average_from_the_saved_average() -> None:
    checkpoint, _ = saved_checkpoint()
    model, hook = Toy(), EMAHook(momentum=0.5)
    runner = Shell(model, resumed=False)
    hook.before_run(runner)
    hook.after_load_checkpoint(runner, checkpoint)
    assert checkpoint["state_dict"]["w"].item() == 3.5  # untouched: the model gets the average
    assert not runner.effects
    ema = runner.hook_state().ema
    assert ema is not None and ema.steps == 0 and ema.params["w"].item() == 3.5


def test_resume_without_ema_state_dict_warns_and_copies() -> None:
    model, hook = Toy(), EMAHook(momentum=0.5)
    runner = Shell(model, resumed=True)
    hook.before_run(runner)
    hook.after_load_checkpoint(
        runner, {"state_dict": {"w": torch.tensor(2.0), "f": torch.tensor(1.0)}}
    )
    (warning,) = runner.effects
    assert isinstance(warning, LogText) and warning.level == 30
    assert "There is no `ema_state_dict` in checkpoint" in warning.message
    assert runner.hook_state().ema.params["w"].item() == 2.0  # type: ignore[union-attr]
    strict = EMAHook(momentum=0.5, strict_load=True)
    strict_runner = Shell(Toy())
    strict.before_run(strict_runner)
    with pytest.raises(HookError, match=r"missing keys \['f'\]"):
        strict.after_load_checkpoint(strict_runner, {"state_dict": {"w": torch.tensor(2.0)}})


def test_begin_epoch_copies_until_the_epoch_starts() -> None:
    model, hook = Toy(), EMAHook(momentum=0.5, begin_epoch=2)
    assert hook.enabled_by_epoch
    runner = Shell(model, max_epochs=3)
    for epoch, value in [(0, 1.0), (0, 3.0), (1, 5.0), (1, 7.0)]:
        model.set(value)
        hook.after_train_iter(runner.at(epoch=epoch), batch_idx=0)
    ema = runner.hook_state().ema
    assert ema is not None and ema.steps == 2 and ema.params["w"].item() == 6.0  # copy 5, lerp 7


def test_update_buffers_swaps_buffers_too() -> None:
    for update_buffers, expected_f in [(False, 30.0), (True, 20.0)]:
        model, hook = Toy(), EMAHook(momentum=0.5, update_buffers=update_buffers)
        runner = Shell(model)
        for i, value in enumerate([1.0, 3.0]):
            model.set(value)
            hook.after_train_iter(runner.at(iter=i), batch_idx=i)
        hook.before_test_epoch(runner)
        assert (model.w.item(), model.f.item()) == (2.0, expected_f)
        hook.after_test_epoch(runner)
        assert (model.w.item(), model.f.item()) == (3.0, 30.0)


def test_checkpoint_during_validation_keeps_raw_weights_in_ema_state_dict() -> None:
    model, hook = Toy(), EMAHook(momentum=0.5)
    runner = Shell(model)
    for i, value in enumerate([1.0, 3.0]):
        model.set(value)
        hook.after_train_iter(runner.at(iter=i), batch_idx=i)
    hook.before_val_epoch(runner)
    checkpoint: dict[str, Any] = {
        "state_dict": {k: v.clone() for k, v in model.state_dict().items()}
    }
    hook.before_save_checkpoint(runner, checkpoint)
    assert checkpoint["state_dict"]["w"].item() == 2.0
    assert checkpoint["ema_state_dict"]["module.w"].item() == 3.0


def test_arguments() -> None:
    assert HOOKS.get("EMAHook") is EMAHook
    assert EMAHook().priority == 49 and EMAHook(priority="LOW").priority == "LOW"
    assert EMAHook().averager == fc_ema.ExponentialMovingAverage(momentum=0.0002)
    annealed = EMAHook("MomentumAnnealingEMA", momentum=0.01, gamma=10, interval=2)
    assert annealed.averager == fc_ema.MomentumAnnealingEMA(momentum=0.01, gamma=10, interval=2)
    assert EMAHook("StochasticWeightAverage").averager == fc_ema.StochasticWeightAverage()
    with pytest.raises(ValueError, match="should not be both set"):
        EMAHook(begin_iter=1, begin_epoch=1)
    with pytest.raises(ValueError, match="`begin_iter` must be an int >= 0, got -1"):
        EMAHook(begin_iter=-1)
    with pytest.raises(ValueError, match="momentum must be in range"):
        EMAHook(momentum=1.5)
    with pytest.raises(TypeError, match=r"takes no momentum, got momentum=0.1"):
        EMAHook("StochasticWeightAverage", momentum=0.1)
    with pytest.raises(TypeError, match=r"does not take \['foo'\]"):
        EMAHook(foo=1)
    with pytest.raises(RegistryError, match="Nope is not in the fengine::model registry"):
        EMAHook("Nope")


class Midpoint(BaseAveragedModel):
    def avg_func(self, averaged_param: Tensor, source_param: Tensor, steps: int) -> None:
        averaged_param.add_(source_param).mul_(0.5)


def test_registered_custom_type() -> None:
    MODELS.register_module(module=Midpoint, force=True)
    hook = EMAHook("Midpoint")
    assert isinstance(hook.averager, fc_ema.CustomAverage)
    model = Toy()
    runner = Shell(model)
    for i, value in enumerate([2.0, 4.0, 8.0]):
        model.set(value)
        hook.after_train_iter(runner.at(iter=i), batch_idx=i)
    assert runner.hook_state().ema.params["w"].item() == 5.5  # type: ignore[union-attr]


def test_begin_beyond_the_run_is_an_error() -> None:
    runner = Shell(Toy(), max_iters=3, max_epochs=1)
    with pytest.raises(HookError, match="begin_iter=4 exceeds max_iters=3"):
        EMAHook(begin_iter=4).before_train(runner)
    with pytest.raises(HookError, match="begin_epoch=2 exceeds max_epochs=1"):
        EMAHook(begin_epoch=2).before_train(runner)


def test_swap_state_dicts_is_an_involution() -> None:
    sd = {"a": torch.tensor(1.0), "b": torch.tensor(2.0)}
    esd = {"steps": torch.tensor(4), "module.a": torch.tensor(3.0), "module.z": torch.tensor(9.0)}
    model, averaged = swap_state_dicts(sd, esd)
    assert model["a"].item() == 3.0 and averaged["module.a"].item() == 1.0
    assert model["b"] is sd["b"] and averaged["module.z"] is esd["module.z"]
    back = swap_state_dicts(model, averaged)
    assert back[0]["a"] is sd["a"] and back[1]["module.a"] is esd["module.a"]
    assert sd["a"].item() == 1.0  # inputs untouched


# -- properties over event sequences --------------------------------------------------------------

EVENTS = st.lists(
    st.one_of(
        st.floats(-5, 5, allow_nan=False).map(lambda v: ("iter", v)),
        st.sampled_from([("val", 0.0), ("test", 0.0), ("save", 0.0)]),
    ),
    max_size=20,
)


@settings(max_examples=40)
@given(
    script=EVENTS,
    k=st.integers(1, 15),
    begin_iter=st.integers(0, 4),
    donate=st.booleans(),
)
def test_average_matches_closed_form_and_training_weights_are_untouched(
    script: list[tuple[str, float]], k: int, begin_iter: int, donate: bool
) -> None:
    momentum = k / 16
    model = Toy()
    fn = ema_fn_hook(
        "EMAHook", fc_ema.ExponentialMovingAverage(momentum), begin_iter=begin_iter, donate=donate
    )
    shell = Shell(model, max_iters=100)
    pipeline = Pipeline.of([fn])
    shell.dispatch(pipeline, Event.BEFORE_RUN, EventInfo())
    trained: list[float] = []
    for kind, value in script:
        before = shell.run_state.hook_states["EMAHook"]
        versions = [t._version for t in (*before.ema.params.values(), *before.ema.buffers.values())]
        if kind == "iter":
            model.set(value)
            shell.dispatch(pipeline, Event.AFTER_TRAIN_ITER, EventInfo(batch_idx=len(trained)))
            trained.append(model.w.item())
            shell.at(iter=len(trained))
        elif kind == "save":
            checkpoint: dict[str, Any] = {"state_dict": dict(model.state_dict())}
            raw = model.w.item()
            shell.dispatch(pipeline, Event.BEFORE_SAVE_CHECKPOINT, EventInfo(checkpoint=checkpoint))
            assert checkpoint["ema_state_dict"]["module.w"].item() == raw
            assert checkpoint["state_dict"]["w"].item() == shell.hook_state().ema.params["w"].item()  # type: ignore[union-attr]
        else:
            raw = model.w.item()
            before_event, after_event = (
                (Event.BEFORE_VAL_EPOCH, Event.AFTER_VAL_EPOCH)
                if kind == "val"
                else (Event.BEFORE_TEST_EPOCH, Event.AFTER_TEST_EPOCH)
            )
            shell.dispatch(pipeline, before_event, EventInfo())
            assert model.w.item() == shell.hook_state().ema.params["w"].item()  # type: ignore[union-attr]
            shell.dispatch(pipeline, after_event, EventInfo())
            assert model.w.item() == raw
        if not donate:
            assert [
                t._version for t in (*before.ema.params.values(), *before.ema.buffers.values())
            ] == versions
    ema = shell.hook_state().ema
    assert ema is not None
    # Before begin_iter the average is a copy; from then on it averages what followed.
    started = trained[max(begin_iter - 1, 0) :]
    assert ema.steps == len(started)
    if started:
        expected = started[0]
        for value in started[1:]:
            expected = torch.tensor(expected).lerp(torch.tensor(value), momentum).item()
        assert ema.params["w"].item() == pytest.approx(expected, rel=1e-6, abs=1e-6)
    assert ema.buffers["f"].item() == model.f.item()  # buffers follow the source


@settings(max_examples=20)
@given(values=st.lists(st.floats(-5, 5, allow_nan=False), min_size=1, max_size=8))
def test_donated_hook_equals_pure_hook(values: list[float]) -> None:
    results = []
    for donate in (False, True):
        model = Toy()
        fn: FnHook[EMAHookState] = ema_fn_hook(
            "EMAHook", fc_ema.MomentumAnnealingEMA(0.1, gamma=3), donate=donate
        )
        shell = Shell(model)
        for i, value in enumerate(values):
            model.set(value)
            shell.at(iter=i).dispatch(
                Pipeline.of([fn]), Event.AFTER_TRAIN_ITER, EventInfo(batch_idx=i)
            )
        results.append(shell.hook_state().ema.params["w"])  # type: ignore[union-attr]
    assert torch.equal(results[0], results[1])


def test_default_hook_contract() -> None:
    # The pure (non-donated) handlers; the façade donates, which the contract forbids by design.
    averager = fc_ema.ExponentialMovingAverage(momentum=0.5, update_buffers=True)
    check_hook(ema_fn_hook("EMAHook", averager), max_examples=15)


class Net(nn.Module):
    """A parameter, a floating-point buffer and an integer one (like BatchNorm's)."""

    f: Tensor
    n: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2))
        self.register_buffer("f", torch.zeros(2))
        self.register_buffer("n", torch.tensor(0))

    def train_to(self, values: list[float]) -> None:
        with torch.no_grad():
            self.w.copy_(torch.tensor(values))
            self.f.copy_(torch.tensor(values) * 10)
            self.n.add_(1)


ITER = st.lists(st.floats(-5, 5, allow_nan=False, width=32), min_size=2, max_size=2).map(
    lambda v: ("iter", v)
)
OTHER = st.sampled_from(["val", "save", "load", "refresh", "restore"]).map(lambda e: (e, None))
HOOK_SCRIPT = st.lists(st.one_of(ITER, ITER, OTHER), min_size=4, max_size=24)


def restore_hook_state(shell: Shell) -> None:
    """The hook's state through a checkpoint (``to_plain``, save, load, ``from_plain``)."""
    buffer = io.BytesIO()
    torch.save(to_plain(dict(shell.run_state.hook_states)), buffer)
    buffer.seek(0)
    states = from_plain(torch.load(buffer, weights_only=True))
    shell.run_state = attrs.evolve(shell.run_state, hook_states=states)


@settings(max_examples=50, deadline=None)
@given(
    script=HOOK_SCRIPT,
    averager=st.one_of(
        st.builds(
            fc_ema.ExponentialMovingAverage,
            momentum=st.floats(1e-3, 0.9),
            interval=st.integers(1, 3),
            update_buffers=st.booleans(),
        ),
        st.builds(
            fc_ema.MomentumAnnealingEMA,
            momentum=st.floats(1e-3, 0.9),
            gamma=st.floats(0.5, 50),
            interval=st.integers(1, 3),
            update_buffers=st.booleans(),
        ),
        st.builds(
            fc_ema.StochasticWeightAverage,
            interval=st.integers(1, 3),
            update_buffers=st.booleans(),
        ),
    ),
    begin=st.tuples(st.sampled_from(["iter", "epoch"]), st.integers(0, 4)),
    resumed=st.booleans(),
)
def test_donated_hook_equals_pure_hook_over_runs(
    script: list[tuple[str, Any]],
    averager: fc_ema.Averager,
    begin: tuple[str, int],
    resumed: bool,
) -> None:
    # The donated handlers reuse the average's tensors aligned with the model's from one
    # iteration to the next; swaps, loads, new references and restored states must not fool it.
    kind, at = begin
    shells, pipelines = [], []
    for donate in (False, True):
        fn = ema_fn_hook(
            "EMAHook",
            averager,
            begin_iter=at if kind == "iter" else 0,
            begin_epoch=at if kind == "epoch" else 0,
            donate=donate,
        )
        shell, pipeline = (
            Shell(Net(), max_iters=100, max_epochs=100, resumed=resumed),
            Pipeline.of([fn]),
        )
        shell.dispatch(pipeline, Event.BEFORE_RUN, EventInfo())
        shells.append(shell)
        pipelines.append(pipeline)
    saved: list[dict[str, Any]] = []
    done = reused = 0
    for event, values in script:
        for shell, pipeline in zip(shells, pipelines):
            model = shell.model
            assert isinstance(model, Net)
            before = shell.hook_state().ema
            tensors = [] if before is None else [*before.params.values(), *before.buffers.values()]
            versions = [t._version for t in tensors]
            if event == "iter":
                model.train_to(values)
                shell.dispatch(pipeline, Event.AFTER_TRAIN_ITER, EventInfo(batch_idx=done))
            elif event == "val":
                shell.dispatch(pipeline, Event.BEFORE_VAL_EPOCH, EventInfo())
                shell.dispatch(pipeline, Event.AFTER_VAL_EPOCH, EventInfo())
            elif event == "save":
                checkpoint: dict[str, Any] = {
                    "state_dict": {k: v.clone() for k, v in model.state_dict().items()}
                }
                shell.dispatch(
                    pipeline, Event.BEFORE_SAVE_CHECKPOINT, EventInfo(checkpoint=checkpoint)
                )
                if shell is shells[0]:
                    saved.append(checkpoint)
            elif event == "load" and saved:
                checkpoint = {k: dict(v) for k, v in saved[-1].items()}
                shell.dispatch(
                    pipeline, Event.AFTER_LOAD_CHECKPOINT, EventInfo(checkpoint=checkpoint)
                )
                model.load_state_dict(checkpoint["state_dict"])
            elif event == "refresh":  # the runner rebuilds its references to the model
                shell.run_state = attrs.evolve(
                    shell.run_state,
                    params=dict(model.named_parameters()),
                    buffers=dict(model.named_buffers()),
                )
            elif event == "restore":
                restore_hook_state(shell)
            if shell is shells[0]:  # the pure hook writes nothing
                assert [t._version for t in tensors] == versions
            elif event == "iter" and before is not None:
                after = shell.hook_state().ema
                assert after is not None
                reused += after._plan is getattr(before, "_plan", None)
        if event == "iter":
            done += 1
            for shell in shells:
                shell.at(iter=done, epoch=done // 3)
        pure, donated = (shell.hook_state().ema for shell in shells)
        assert pure is not None and donated is not None and pure.steps == donated.steps
        merged_pure, merged_donated = ({**ema.params, **ema.buffers} for ema in (pure, donated))
        for name, value in merged_pure.items():
            assert torch.equal(value, merged_donated[name]), (event, name)
        assert all(
            torch.equal(a, b)
            for a, b in zip(
                shells[0].model.state_dict().values(), shells[1].model.state_dict().values()
            )
        )
    # The steady state was exercised: the aligned tensors are rebuilt at most once between two
    # iterations in a row (when averaging begins after the copies before begin_iter/epoch).
    assert reused >= sum(a[0] == b[0] == "iter" for a, b in itertools.pairwise(script)) - 1


# -- end to end with the Runner (spec A8) ----------------------------------------------------------

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runner"))
from runner_toys import toy_kwargs  # noqa: E402

from fengine.runner.runner import Runner  # noqa: E402


class WeightLog(Hook):
    """Snapshots of the model's weights after each train iteration and at each validation."""

    priority = "LOWEST"

    def __init__(self) -> None:
        self.trained: list[dict[str, Tensor]] = []
        self.validated: list[dict[str, Tensor]] = []
        self.at_train_start: dict[str, Tensor] = {}

    @staticmethod
    def snapshot(runner: Any) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in runner.model.state_dict().items()}

    def before_train(self, runner: Any) -> None:
        self.at_train_start = self.snapshot(runner)

    def after_train_iter(
        self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None
    ) -> None:
        self.trained.append(self.snapshot(runner))

    def before_val_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        if batch_idx == 0:
            self.validated.append(self.snapshot(runner))


def ema_of(snapshots: list[dict[str, Tensor]], momentum: float) -> dict[str, Tensor]:
    average = {k: v.clone() for k, v in snapshots[0].items()}
    for snapshot in snapshots[1:]:
        average = {k: v.lerp(snapshot[k], momentum) for k, v in average.items()}
    return average


def test_a8_checkpoint_resume_and_load(tmp_path: Path) -> None:
    log = WeightLog()
    runner = Runner(**toy_kwargs(tmp_path / "a", custom_hooks=[EMAHook(momentum=0.5), log]))
    runner.train()
    checkpoint = torch.load(tmp_path / "a" / "epoch_2.pth", weights_only=False)
    assert list(checkpoint)[:5] == [
        "meta",
        "state_dict",
        "message_hub",
        "optimizer",
        "ema_state_dict",
    ]
    ema = checkpoint["ema_state_dict"]
    assert int(ema["steps"]) == 8
    expected = ema_of(log.trained, 0.5)
    final = log.trained[-1]
    for name, value in expected.items():
        assert torch.equal(checkpoint["state_dict"][name], value), name  # deployable average
        assert torch.equal(ema[f"module.{name}"], final[name])  # the raw training weights
        assert torch.equal(runner.model.state_dict()[name], final[name])  # training kept them
        # Each validation ran on the average of the iterations so far.
        assert torch.equal(log.validated[0][name], ema_of(log.trained[:4], 0.5)[name])
        assert torch.equal(log.validated[1][name], value)

    resumed_log = WeightLog()
    resumed = Runner(
        **toy_kwargs(
            tmp_path / "b",
            train_cfg={"by_epoch": True, "max_epochs": 3, "val_interval": 1},
            custom_hooks=[EMAHook(momentum=0.5), resumed_log],
            load_from=str(tmp_path / "a" / "epoch_2.pth"),
            resume=True,
        )
    )
    resumed.train()
    assert all(
        torch.equal(resumed_log.at_train_start[k], final[k]) for k in final
    )  # raw weights back
    third = torch.load(tmp_path / "b" / "epoch_3.pth", weights_only=False)
    assert int(third["ema_state_dict"]["steps"]) == 12
    assert (third["meta"]["epoch"], third["meta"]["iter"]) == (3, 12)
    continued = ema_of([expected, *resumed_log.trained], 0.5)
    assert all(torch.equal(third["state_dict"][k], v) for k, v in continued.items())

    loaded_log = WeightLog()
    loader_only = Runner(
        **toy_kwargs(
            tmp_path / "c",
            custom_hooks=[EMAHook(momentum=0.5), loaded_log],
            load_from=str(tmp_path / "a" / "epoch_2.pth"),
        )
    )
    loader_only.val()
    assert all(torch.equal(loader_only.model.state_dict()[k], v) for k, v in expected.items())
    assert all(torch.equal(loaded_log.validated[0][k], v) for k, v in expected.items())
