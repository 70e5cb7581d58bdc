"""Bad arguments fail at construction, with the key and the accepted values named (spec §3.2)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from runner_toys import ToyMetric, ToyModel, loader, toy_kwargs

from fengine.registry import MODELS, ConfigError
from fengine.runner.runner import Runner

_DATA = {"dataset": {"type": "ToyDataset"}, "sampler": {"type": "DefaultSampler", "shuffle": False}, "batch_size": 3}

# (overrides of the toy runner's arguments, exception type, message pattern)
BAD: list[tuple[dict[str, Any], type[BaseException], str]] = [
    ({"train_cfg": None}, ValueError, "train_dataloader, train_cfg, optim_wrapper should be either all None.*train_cfg is None"),
    ({"val_evaluator": None}, ValueError, "val_evaluator is None"),
    ({"test_dataloader": loader()}, ValueError, "test_cfg, test_evaluator are None"),
    ({"train_dataloader": None, "train_cfg": None, "optim_wrapper": None, "param_scheduler": {"type": "MultiStepLR", "milestones": [1]}}, ValueError, "param_scheduler should be None when optim_wrapper is None"),
    ({"train_cfg": {"by_epoch": True, "max_epoch": 3}}, ValueError, r"unknown keys \['max_epoch'\].*max_epochs"),
    ({"train_cfg": {"by_epoch": True, "max_epochs": 1.5}}, TypeError, "`max_epochs` should be an integer number, got 1.5"),
    ({"train_cfg": {"by_epoch": True, "max_epochs": -1}}, ValueError, r"`max_epochs` must be >= 1 \(0 would train nothing\), got -1"),
    ({"train_cfg": {"by_epoch": True, "max_epochs": 2, "val_interval": 0}}, ValueError, "`val_interval` must be > 0, got 0"),
    ({"train_cfg": {"by_epoch": True, "max_epochs": 2, "val_begin": "1"}}, TypeError, "`val_begin` must be an int"),
    ({"train_cfg": {"by_epoch": "yes", "max_epochs": 2}}, TypeError, "`by_epoch` must be a bool"),
    ({"train_cfg": {"by_epoch": False, "max_epochs": 2}}, ValueError, r"unknown keys \['max_epochs'\] for an iteration-based loop"),
    ({"train_cfg": {"by_epoch": False}}, ValueError, "train_cfg needs `max_iters`"),
    ({"train_cfg": {"type": "EpochBasedTrainLoop", "by_epoch": True, "max_epochs": 2}}, ValueError, "Only one of `type` or `by_epoch`"),
    ({"train_cfg": {"type": "EpochBasedTrainLop", "max_epochs": 2}}, KeyError, "train_cfg: EpochBasedTrainLop is not in the fengine::[a-z_ ]+ registry.*did you mean 'EpochBasedTrainLoop'"),
    ({"train_cfg": 3}, TypeError, "train_cfg should be a dict"),
    ({"train_cfg": {"by_epoch": True, "max_epochs": 2, "dynamic_intervals": [(3, 1), (2, 1)]}}, ValueError, "strictly increasing milestones"),
    ({"train_cfg": {"by_epoch": True, "max_epochs": 2, "dynamic_intervals": [3, 1]}}, TypeError, "list of \\(milestone, interval\\) int pairs"),
    ({"train_cfg": {"by_epoch": True, "max_epochs": 2, "check_finite": "no"}}, TypeError, "`check_finite` must be a bool"),
    ({"train_dataloader": {"batch_size": 3, "sampler": {"type": "DefaultSampler"}}}, KeyError, "train_dataloader config needs a `dataset`"),
    ({"train_dataloader": {"dataset": {"type": "ToyDataset"}}}, KeyError, "needs a `sampler`"),
    ({"train_dataloader": {**_DATA, "batchsize": 3}}, ValueError, r"train_dataloader: unknown keys \['batchsize'\]"),
    ({"val_dataloader": {**_DATA, "batch_size": 0}}, ValueError, "val_dataloader: `batch_size` must be > 0, got 0"),
    ({"val_dataloader": {**_DATA, "batch_size": "3"}}, TypeError, "`batch_size` must be an int"),
    ({"train_dataloader": {**_DATA, "dataset": {"type": "ToyDatset"}}}, KeyError, "train_dataloader.dataset: ToyDatset is not in the fengine::[a-z_ ]+ registry.*'ToyDataset'"),
    ({"train_dataloader": {**_DATA, "sampler": {"type": "DefaultSampeler"}}}, KeyError, "train_dataloader.sampler.*'DefaultSampler'"),
    ({"train_dataloader": {**_DATA, "collate_fn": 3}}, TypeError, "`collate_fn` must be a callable"),
    ({"train_dataloader": 3}, TypeError, "train_dataloader should be a DataLoader or a config dict"),
    ({"val_evaluator": {"type": "ToyMetrc"}}, KeyError, "val_evaluator: ToyMetrc is not in the fengine::[a-z_ ]+ registry.*'ToyMetric'"),
    ({"val_evaluator": [{"type": "ToyMetric"}, {"type": "Nope"}]}, KeyError, r"val_evaluator\[1\]"),
    ({"val_evaluator": 3}, TypeError, "val_evaluator should be an Evaluator"),
    ({"optim_wrapper": {"lr": 0.1}}, KeyError, "optim_wrapper config needs an `optimizer`"),
    ({"optim_wrapper": {"optimizer": {"type": "SDG", "lr": 0.1}}}, KeyError, "optim_wrapper.optimizer: SDG is not in the fengine::[a-z_ ]+ registry.*'SGD'"),
    ({"optim_wrapper": 3}, TypeError, "optim_wrapper should be an OptimWrapper"),
    ({"param_scheduler": {"type": "MultiStepLRR", "milestones": [1]}}, KeyError, r"param_scheduler\[0\]: MultiStepLRR is not.*'MultiStepLR'"),
    ({"param_scheduler": [{"milestones": [1]}]}, ConfigError, r"param_scheduler\[0\] needs a `type`"),
    ({"randomness": {"seed": 1, "deterministc": True}}, ValueError, r"randomness: unknown keys \['deterministc'\]"),
    ({"randomness": {"seed": "1"}}, TypeError, "`seed` must be an int or None"),
    ({"launcher": "pbs"}, ValueError, r"launcher must be one of \['none', 'pytorch', 'slurm', 'mpi'\].*got 'pbs'"),
    ({"resume": "yes"}, TypeError, "resume must be a bool"),
    ({"model": 3}, TypeError, "model should be a nn.Module object or dict"),
    ({"model": {"type": "ToyModl"}}, KeyError, "ToyModl is not in the fengine::[a-z_ ]+ registry.*'ToyModel'"),
    ({"default_hooks": {"logger": {"type": "LogerHook"}}}, KeyError, "LogerHook is not in the fengine::[a-z_ ]+ registry.*'LoggerHook'"),
    ({"default_hooks": {"bogus": None}}, KeyError, "'bogus' is not a default hook"),
    ({"custom_hooks": [object()]}, TypeError, "hook should be an instance of Hook or dict"),
]


@pytest.mark.parametrize(("overrides", "error", "pattern"), BAD)
def test_bad_arguments_fail_at_construction(tmp_path: Any, overrides: dict[str, Any], error: type[BaseException], pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        Runner(**toy_kwargs(tmp_path, **overrides))


def test_checks_run_before_anything_is_built(tmp_path: Any) -> None:
    """A bad evaluator is reported before the model config is built or the work dir created."""
    built: list[str] = []

    @MODELS.register_module(force=True)
    class SpyModel(ToyModel):
        def __init__(self) -> None:
            built.append("model")
            super().__init__()

    work_dir = tmp_path / "never"
    with pytest.raises(KeyError):
        Runner(**toy_kwargs(work_dir, model={"type": "SpyModel"}, val_evaluator={"type": "Nope"}))
    assert built == [] and not work_dir.exists()


def test_config_dicts_build_lazily_and_train(tmp_path: Any) -> None:
    """The same run from config dicts only (``from_cfg``): nothing unusual, MMEngine's keys."""
    cfg = {
        "model": {"type": "ToyModel"},
        "work_dir": str(tmp_path),
        "train_dataloader": {**_DATA, "sampler": {"type": "DefaultSampler", "shuffle": True}},
        "val_dataloader": _DATA,
        "train_cfg": {"by_epoch": True, "max_epochs": 2},
        "val_cfg": {},
        "val_evaluator": {"type": "ToyMetric"},
        "optim_wrapper": {"optimizer": {"type": "SGD", "lr": 0.01}},
        "param_scheduler": {"type": "MultiStepLR", "milestones": [1], "by_epoch": True},
        "custom_hooks": [{"type": "EMAHook"}],
        "randomness": {"seed": 3},
    }
    runner = Runner.from_cfg(cfg)
    assert isinstance(runner._train_loop, dict) and isinstance(runner.optim_wrapper, dict)
    model = runner.train()
    assert model is runner.model and (runner.epoch, runner.iter) == (2, 8)
    assert runner.train_dataloader.batch_size == 3 and len(runner.train_dataloader) == 4
    assert [type(s).__name__ for s in runner.param_schedulers] == ["MultiStepLR"]
    assert isinstance(runner.val_evaluator.metrics[0], ToyMetric)
    assert cfg["model"] == {"type": "ToyModel"}  # from_cfg copies


def test_from_cfg_needs_a_model() -> None:
    with pytest.raises(KeyError, match="needs a `model`"):
        Runner.from_cfg({"work_dir": "x"})


def test_missing_stage_components(tmp_path: Any) -> None:
    runner = Runner(ToyModel(), work_dir=str(tmp_path))
    for call in (runner.train, runner.val, runner.test):
        with pytest.raises(RuntimeError, match="needs"):
            call()
    with pytest.raises(TypeError, match="has no `train_step`"):
        Runner(**toy_kwargs(tmp_path, model=torch.nn.Linear(2, 1))).train()


def test_a_preprocessor_beside_a_model_object_is_checked_and_warned_about(tmp_path: Any) -> None:
    """MMEngine ignores ``data_preprocessor`` when the model is an object: fengine says so."""
    model = ToyModel()
    with pytest.warns(UserWarning, match=r"data_preprocessor=\{'type': 'BaseDataPreprocessor'\} is ignored: the model is given as an ToyModel object"):
        runner = Runner(**toy_kwargs(tmp_path, model=model, data_preprocessor={"type": "BaseDataPreprocessor"}))
    assert runner.model.data_preprocessor is model.data_preprocessor
    with pytest.raises(KeyError, match=r"data_preprocessor: NoSuch is not in the fengine::[a-z_ ]+ registry"):
        Runner(**toy_kwargs(tmp_path, model=ToyModel(), data_preprocessor={"type": "NoSuch"}))
