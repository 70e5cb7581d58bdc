"""The Runner trains through the pure step: one frozen ``TrainState`` per iteration, the module a view.

After every iteration ``runner.state`` is a new frozen record whose tensors are the model's own,
whose optimizer state is the optimizer's record (hyper-parameters as the schedulers set them) and
whose counters are the runner's; a checkpoint is that record in plain form plus MMEngine's keys.
Both paths (the pure step and a model's own ``train_step``) give the same numbers bit for bit.
"""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from runner_toys import ToyModel, toy_kwargs

from fengine.core import plain
from fengine.core.state import TrainState
from fengine.hooks import Hook
from fengine.model import BaseModel
from fengine.optim import OptimWrapper
from fengine.runner.runner import Runner
from fengine.runner.train_step import compat_reason

_MMENGINE_KEYS = ["meta", "state_dict", "message_hub", "optimizer", "param_schedulers"]


class StateRecorder(Hook):
    """Keeps ``runner.state`` and the module's tensors after every training iteration."""

    priority = "LOWEST"

    def __init__(self) -> None:
        self.seen: list[tuple[TrainState[Any], dict[str, torch.Tensor], int, int, float]] = []
        self.at_epoch_end: list[dict[str, Any]] = []

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        lr = runner.optim_wrapper.optimizer.param_groups[0]["lr"]
        self.seen.append((runner.state, runner.model.state_dict(keep_vars=True), runner.iter, runner.epoch, lr))

    def after_train_epoch(self, runner: Any) -> None:
        self.at_epoch_end.append(runner.hook_states())  # last of the event, as a save writes them


class OwnStep(ToyModel):
    """The toy model with ``train_step`` overridden (same body): the compatibility path."""

    def train_step(self, data: Any, optim_wrapper: Any) -> Any:
        return BaseModel.train_step(self, data, optim_wrapper)


def _runner(tmp_path: Any, model: Any, optimizer: dict[str, Any], **overrides: Any) -> tuple[Runner, StateRecorder]:
    recorder = StateRecorder()
    kwargs = toy_kwargs(
        tmp_path,
        model=model,
        optim_wrapper=overrides.pop("optim_wrapper", {"optimizer": optimizer}),
        param_scheduler={"type": "MultiStepLR", "milestones": [1], "gamma": 0.5},
        custom_hooks=[recorder],
        default_hooks={"checkpoint": {"type": "CheckpointHook", "interval": 1}, "logger": {"type": "LoggerHook", "interval": 2}},
        **overrides,
    )
    return Runner(**kwargs), recorder


def test_each_iteration_replaces_the_frozen_record_whose_tensors_are_the_models(tmp_path: Any) -> None:
    torch.manual_seed(0)
    runner, recorder = _runner(tmp_path, ToyModel(), {"type": "SGD", "lr": 0.1, "momentum": 0.9})
    assert compat_reason(runner.model, runner.build_optim_wrapper(runner.optim_wrapper), True, False) is None
    runner.train()
    states = [seen[0] for seen in recorder.seen]
    assert len(states) == 8 and len({id(s) for s in states}) == 8  # a new record every iteration
    for state, tensors, iteration, epoch, lr in recorder.seen:
        assert isinstance(state, TrainState)
        with pytest.raises(attrs.exceptions.FrozenInstanceError):
            state.iter = 0  # type: ignore[misc]
        # Counters of the record are the runner's (the iteration counts after the hooks).
        assert (state.iter, state.epoch, state.step) == (iteration, epoch, iteration + 1)
        # The module's parameters and buffers are the record's very tensors.
        for name, tensor in {**state.params, **state.buffers}.items():
            assert tensor is tensors[name]
        # The optimizer state is the optimizer's record, with the lr the scheduler set.
        assert state.opt_state.groups[0].hyper.lr == lr
    # After the schedulers' last step the record holds their new lr too.
    assert runner.state.opt_state is runner.optim_wrapper.optimizer.opt_state
    assert runner.state.opt_state.groups[0].hyper.lr == runner.optim_wrapper.optimizer.param_groups[0]["lr"] == 0.05


def test_a_checkpoint_is_the_records_plain_form_plus_mmengines_keys(tmp_path: Any) -> None:
    torch.manual_seed(0)
    runner, recorder = _runner(tmp_path, ToyModel(), {"type": "Adam", "lr": 0.01})
    runner.train()
    raw = plain.load(str(tmp_path / "epoch_2.pth"), decode=False)
    fields = [f.name for f in attrs.fields(TrainState)]
    assert list(raw) == [*_MMENGINE_KEYS, *fields, "data_position"]
    record = TrainState.from_dict({name: raw[name] for name in fields}, "epoch_2.pth")
    state = runner.state
    # The record as the resumed run starts from it: the runner's state after the last iteration.
    assert (record.epoch, record.iter, record.step) == (2, 8, 8) == (runner.epoch, runner.iter, state.step)
    assert record.inner_iter == 0 and record.rng is not None
    assert set(record.hook_states) == set(runner.hook_names)
    assert record.hook_states == recorder.at_epoch_end[-1]
    for name, tensor in {**state.params, **state.buffers}.items():
        stored = record.params.get(name, record.buffers.get(name))
        assert torch.equal(stored, tensor) and torch.equal(raw["state_dict"][name], tensor)
    saved = record.opt_state
    live = runner.optim_wrapper.optimizer.opt_state
    assert type(saved) is type(live) and saved.names == live.names
    assert [g.hyper for g in saved.groups] == [g.hyper for g in live.groups]
    for ours, theirs in zip(saved.exp_avg, live.exp_avg):
        assert torch.equal(ours, theirs)
    # MMEngine's optimizer key is the same state in torch's format.
    torch_state = runner.optim_wrapper.state_dict()["state"]
    for i, entry in raw["optimizer"]["state"].items():
        assert torch.equal(entry["exp_avg"], torch_state[i]["exp_avg"])


@settings(max_examples=6, deadline=None)
@given(
    optimizer=st.sampled_from(
        [
            {"type": "SGD", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-3},
            {"type": "AdamW", "lr": 0.02, "weight_decay": 0.1},
            {"type": "Adam", "lr": 0.01, "amsgrad": True},
        ]
    ),
    clip=st.sampled_from([None, {"max_norm": 0.5}, {"type": "value", "clip_value": 0.05}]),
)
def test_the_pure_step_and_the_models_own_train_step_agree_bit_for_bit(
    tmp_path_factory: Any, optimizer: dict[str, Any], clip: dict[str, Any] | None
) -> None:
    finals = []
    for model_cls in (ToyModel, OwnStep):
        torch.manual_seed(0)
        wrapper = {"optimizer": optimizer, **({"clip_grad": clip} if clip else {})}
        runner, recorder = _runner(tmp_path_factory.mktemp("run"), model_cls(), optimizer, optim_wrapper=wrapper)
        runner.train()
        finals.append((runner.model.state_dict(), runner.optim_wrapper.state_dict(), recorder.seen, runner.message_hub))
    (pure_w, pure_o, pure_seen, pure_hub), (own_w, own_o, own_seen, own_hub) = finals
    for name in pure_w:
        assert torch.equal(pure_w[name], own_w[name]), name
    for i, entry in pure_o["state"].items():
        for key, value in entry.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(own_o["state"][i][key])), (i, key)
    assert [s[4] for s in pure_seen] == [s[4] for s in own_seen]  # the lrs
    assert pure_hub.get_scalar("train/loss").data[0].tolist() == own_hub.get_scalar("train/loss").data[0].tolist()
    if clip and "max_norm" in clip:
        assert pure_hub.get_scalar("train/grad_norm").data[0].tolist() == own_hub.get_scalar("train/grad_norm").data[0].tolist()
    # The compatibility path keeps the record too: counters and the optimizer's record.
    assert [s[0].step for s in own_seen] == [s[0].step for s in pure_seen] == list(range(1, 9))


def test_an_optimizer_over_other_parameters_steps_nothing_of_the_model_on_either_path(tmp_path: Any) -> None:
    # MMEngine's tests build OptimWrapper(torch.optim.Adam(OtherModel().parameters())): the model
    # trains with an optimizer that holds none of its parameters, so its weights stay put.
    finals = []
    for model_cls in (ToyModel, OwnStep):
        torch.manual_seed(0)
        model, other = model_cls(), ToyModel()
        before = {k: v.clone() for k, v in model.state_dict().items()}
        wrapper = OptimWrapper(torch.optim.Adam(other.parameters()))
        runner = Runner(**toy_kwargs(tmp_path / model_cls.__name__, model=model, optim_wrapper=wrapper))
        runner.train()
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        finals.append({n: p.grad for n, p in model.named_parameters()})
    for name, grad in finals[0].items():  # the model's gradients accumulate as backward leaves them
        assert grad is not None and torch.equal(grad, finals[1][name])
