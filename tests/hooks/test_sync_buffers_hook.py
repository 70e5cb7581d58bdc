"""SyncBuffersHook: buffers are synchronised before every validation, once, and only when distributed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.core.effects import SyncBuffers
from fengine.core.events import Event
from fengine.core.pipeline import Pipeline, dispatch
from fengine.core.run import EventInfo, RunState
from fengine.hooks import Hook
from fengine.hooks.sync_buffers_hook import SyncBuffersHook, SyncBuffersState
from fengine.registry import HOOKS
from fengine.testing import check_hook


def legal_run(
    by_epoch: bool, length: int, interval: int, iters: int, extra_vals: int
) -> list[Event]:
    """Train events that matter here, as MMEngine's loops order them, then standalone validations."""
    events: list[Event] = []
    if by_epoch:
        for epoch in range(1, length + 1):
            events += [Event.AFTER_TRAIN_ITER] * iters + [Event.AFTER_TRAIN_EPOCH]
            if epoch % interval == 0 or epoch == length:
                events += [Event.BEFORE_VAL_EPOCH, Event.AFTER_VAL_EPOCH]
    else:
        for it in range(1, length + 1):
            events.append(Event.AFTER_TRAIN_ITER)
            if it % interval == 0 or it == length:
                events += [Event.BEFORE_VAL_EPOCH, Event.AFTER_VAL_EPOCH]
        events.append(Event.AFTER_TRAIN_EPOCH)
    return events + [Event.BEFORE_VAL_EPOCH, Event.AFTER_VAL_EPOCH] * extra_vals


def play(events: list[Event], world_size: int) -> list[tuple[Event, int]]:
    """Each event with the number of SyncBuffers it emitted."""
    pipeline = Pipeline.of([SyncBuffersHook().to_fn_hook("S")])
    run = RunState(world_size=world_size)
    out = []
    for event in events:
        before = len(run.effects)
        run = dispatch(pipeline, event, run, EventInfo())
        assert all(isinstance(e, SyncBuffers) for e in run.effects)
        out.append((event, len(run.effects) - before))
    return out


RUNS = st.builds(
    legal_run,
    by_epoch=st.booleans(),
    length=st.integers(1, 6),
    interval=st.integers(1, 3),
    iters=st.integers(1, 3),
    extra_vals=st.integers(0, 2),
)


@settings(max_examples=50)
@given(events=RUNS)
def test_every_validation_sees_buffers_synchronised_after_the_last_train_step(
    events: list[Event],
) -> None:
    synced_since_step = True
    previous: Event | None = None
    for event, emitted in play(events, world_size=2):
        if event is Event.AFTER_TRAIN_ITER:
            synced_since_step = False
        synced_since_step = synced_since_step or emitted > 0
        if event is Event.BEFORE_VAL_EPOCH:
            assert synced_since_step
        # Never twice for the same trained weights: the epoch end and the validation share one.
        if event is Event.BEFORE_VAL_EPOCH and emitted:
            assert previous is not Event.AFTER_TRAIN_EPOCH
        previous = event


@settings(max_examples=20)
@given(events=RUNS)
def test_nothing_when_not_distributed(events: list[Event]) -> None:
    assert all(emitted == 0 for _, emitted in play(events, world_size=1))


def test_epoch_loop_and_iteration_loop() -> None:
    epoch_loop = play(legal_run(True, 2, 1, 1, 1), world_size=4)
    assert [(e.value, n) for e, n in epoch_loop if n] == [
        ("after_train_epoch", 1),
        ("after_train_epoch", 1),
        ("before_val_epoch", 1),  # the standalone runner.val() afterwards
    ]
    iter_loop = play(legal_run(False, 4, 2, 1, 0), world_size=2)
    assert [(e.value, n) for e, n in iter_loop if n] == [
        ("before_val_epoch", 1),
        ("before_val_epoch", 1),
        ("after_train_epoch", 1),
    ]


def test_state_and_facade() -> None:
    hook = SyncBuffersHook()
    assert HOOKS.get("SyncBuffersHook") is SyncBuffersHook and hook.priority == "NORMAL"
    single = RunState(world_size=1)
    fn = hook.to_fn_hook("S")
    out, state = fn.on[Event.AFTER_TRAIN_EPOCH](single, fn.init, EventInfo())
    assert out is single and state is fn.init  # nothing changes, nothing is allocated

    class Host:
        run_state = RunState(world_size=2)

        def run_hook(self, h: Hook, event: Event, info: EventInfo) -> None:
            self.run_state = dispatch(Pipeline.of([h.to_fn_hook("S")]), event, self.run_state, info)

    host = Host()
    hook.after_train_epoch(host)
    assert host.run_state.hook_states["S"] == SyncBuffersState(called_in_train=True)
    hook.before_val_epoch(host)
    assert host.run_state.hook_states["S"] == SyncBuffersState(called_in_train=False)
    assert host.run_state.effects == (SyncBuffers(),)


def test_default_hook_contract() -> None:
    check_hook(SyncBuffersHook(), max_examples=10)
