"""The Runner's public ``build_*`` methods and the error kinds of bad configs (MMEngine's contract)."""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from runner_toys import ToyModel, loader, toy_kwargs

from fengine.logging import MessageHub, MMLogger
from fengine.optim import OptimWrapper, OptimWrapperDict
from fengine.optim.scheduler import MultiStepLR
from fengine.runner import EpochBasedTrainLoop, Runner
from fengine.visualization import Visualizer


@pytest.fixture
def runner(tmp_path: Any) -> Runner:
    return Runner(**toy_kwargs(tmp_path, experiment_name="builders"))


def test_build_logger_defaults_to_the_experiment_and_its_log_file(runner: Runner) -> None:
    logger = runner.build_logger()
    assert isinstance(logger, MMLogger)
    assert logger.instance_name == runner.experiment_name
    assert logger is runner.logger
    other = runner.build_logger(name="builders-other", log_file=os.path.join(runner.log_dir, "other.log"))
    assert other.instance_name == "builders-other"
    other.info("a line for the other file")
    with open(os.path.join(runner.log_dir, "other.log")) as file:
        assert "a line for the other file" in file.read()


def test_private_experiment_name_is_the_public_one(runner: Runner) -> None:
    assert runner._experiment_name == runner.experiment_name
    runner._experiment_name = "builders-renamed"
    assert runner.experiment_name == "builders-renamed"
    assert runner.build_logger().instance_name == "builders-renamed"
    assert runner.build_message_hub().instance_name == "builders-renamed"
    assert runner.build_visualizer().instance_name == "builders-renamed"


def test_build_message_hub(runner: Runner) -> None:
    assert runner.build_message_hub() is runner.message_hub
    hub = runner.build_message_hub({"name": "builders-hub"})
    assert isinstance(hub, MessageHub) and hub.instance_name == "builders-hub"
    assert hub is not runner.message_hub
    with pytest.raises(TypeError, match="message_hub should be dict or None, but got 'x'"):
        runner.build_message_hub("x")  # type: ignore[arg-type]


def test_build_visualizer(runner: Runner) -> None:
    assert runner.build_visualizer(runner.visualizer) is runner.visualizer
    assert runner.build_visualizer() is runner.visualizer
    built = runner.build_visualizer({"type": "Visualizer", "name": "builders-vis"})
    assert isinstance(built, Visualizer) and built.instance_name == "builders-vis"
    with pytest.raises(TypeError, match="visualizer should be Visualizer object, a dict or None, but got 'x'"):
        runner.build_visualizer("x")


def test_a_dict_of_built_wrappers_is_an_optim_wrapper_dict(runner: Runner) -> None:
    model = runner.model
    first = OptimWrapper(torch.optim.SGD(model.linear1.parameters(), lr=0.01))  # type: ignore[union-attr]
    second = OptimWrapper(torch.optim.Adam(model.linear2.parameters(), lr=0.02))  # type: ignore[union-attr]
    built = runner.build_optim_wrapper({"linear1": first, "linear2": second})
    assert isinstance(built, OptimWrapperDict)
    assert built["linear1"] is first and built["linear2"] is second
    with pytest.raises(ValueError, match=r"each item mush be an optimizer object .* linear2=\{'type'"):
        runner.build_optim_wrapper({"linear1": first, "linear2": {"type": "OptimWrapper", "optimizer": {"type": "SGD", "lr": 0.1}}})


def test_an_optimizer_object_in_the_config_is_wrapped(runner: Runner) -> None:
    optimizer = torch.optim.SGD(runner.model.parameters(), lr=0.1)
    built = runner.build_optim_wrapper({"optimizer": optimizer, "accumulative_counts": 2})
    assert type(built) is OptimWrapper and built.optimizer is optimizer
    assert built._accumulative_counts == 2


def test_a_runner_takes_a_dict_of_built_wrappers_and_schedulers_by_name(tmp_path: Any) -> None:
    model = ToyModel()
    wrappers = {
        "linear1": OptimWrapper(torch.optim.SGD(model.linear1.parameters(), lr=0.1)),
        "linear2": OptimWrapper(torch.optim.SGD(model.linear2.parameters(), lr=0.2)),
    }
    schedulers = {
        "linear1": {"type": "MultiStepLR", "milestones": [1], "gamma": 0.5},
        "linear2": [{"type": "MultiStepLR", "milestones": [1], "gamma": 0.1}],
    }
    runner = Runner(**toy_kwargs(tmp_path, model=model, optim_wrapper=wrappers, param_scheduler=schedulers))
    built = runner.build_optim_wrapper(runner.optim_wrapper)
    runner.optim_wrapper = built
    by_name = runner.build_param_scheduler(schedulers)
    assert sorted(by_name) == ["linear1", "linear2"]
    for name, gamma, lr in (("linear1", 0.5, 0.1), ("linear2", 0.1, 0.2)):
        (scheduler,) = by_name[name]
        assert isinstance(scheduler, MultiStepLR) and scheduler.optimizer is wrappers[name]
        scheduler.step()
        assert wrappers[name].optimizer.param_groups[0]["lr"] == pytest.approx(lr * gamma)


def test_schedulers_before_the_wrapper_is_built_are_refused(runner: Runner) -> None:
    runner.optim_wrapper = {"optimizer": {"type": "SGD", "lr": 0.1}}
    with pytest.raises(AssertionError, match="build_optim_wrapper should be called before build_param_scheduler"):
        runner.build_param_scheduler({"type": "MultiStepLR", "milestones": [1]})
    with pytest.raises(TypeError):  # the same error is a TypeError too
        runner.build_param_scheduler({"type": "MultiStepLR", "milestones": [1]})


def test_val_with_an_unbuilt_scheduler_config(tmp_path: Any) -> None:
    runner = Runner(**toy_kwargs(tmp_path, param_scheduler={"type": "MultiStepLR", "milestones": [1]}))
    assert runner.val() == {"acc": 1}
    assert runner.param_schedulers == {"type": "MultiStepLR", "milestones": [1]}


def test_type_with_by_epoch_is_refused_when_built_and_when_checked(runner: Runner, tmp_path: Any) -> None:
    cfg = {"type": "EpochBasedTrainLoop", "by_epoch": True, "max_epochs": 3}
    for error in (RuntimeError, ValueError):
        with pytest.raises(error, match=r"Only one of `type` or `by_epoch` .* type='EpochBasedTrainLoop' and by_epoch=True"):
            runner.build_train_loop(cfg)
    with pytest.raises(RuntimeError, match="Only one of"):
        Runner(**toy_kwargs(tmp_path / "second", train_cfg=cfg))
    assert isinstance(runner.build_train_loop({"type": "EpochBasedTrainLoop", "max_epochs": 3}), EpochBasedTrainLoop)


@settings(max_examples=20, deadline=None)
@given(bad=st.one_of(st.text(min_size=1, max_size=8), st.integers(), st.floats(allow_nan=False)))
def test_bad_scheduler_entries_raise_mmengine_kinds(tmp_path_factory: Any, bad: Any) -> None:
    work_dir = tmp_path_factory.mktemp("bad")
    with pytest.raises(TypeError, match=r"`param_scheduler` should be a scheduler, .* but param_scheduler\[0\] is"):
        Runner(**toy_kwargs(work_dir, param_scheduler=bad))
    with pytest.raises(AssertionError, match=r"Each value of `param_scheduler` .* param_scheduler\['linear1'\]\[0\] is"):
        Runner(**toy_kwargs(work_dir, param_scheduler={"linear1": bad}))


def test_auto_scale_lr_without_base_batch_size(runner: Runner) -> None:
    wrapper = OptimWrapper(torch.optim.SGD(runner.model.parameters(), lr=0.01))
    for error in (AssertionError, KeyError):
        with pytest.raises(error, match="auto_scale_lr needs `base_batch_size`"):
            runner.scale_lr(wrapper, {"enable": True})
    runner.scale_lr(wrapper, {"enable": True, "base_batch_size": 6})
    assert wrapper.optimizer.param_groups[0]["lr"] == pytest.approx(0.01 * 3 / 6)


def test_training_with_validation_needs_a_val_step(tmp_path: Any) -> None:
    class NoValStep(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(1, 1)

        def train_step(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
            return {"loss": torch.tensor(1.0)}

    runner = Runner(**toy_kwargs(tmp_path, model=NoValStep(), train_dataloader=loader()))
    for error in (AssertionError, TypeError):
        with pytest.raises(error, match=r"NoValStep has no `val_step`\. If you want to validate during training"):
            runner.train()
