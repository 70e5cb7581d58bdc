"""Bad input gives a specific, readable error before any work is lost.

Each case names the offending key or value and, where there is a choice, what is accepted. A case
either fails when the Runner is built (nothing was built or trained) or when ``train()`` starts:
then before the first iteration completes (no checkpoint written), except the non-finite loss,
which is reported at the iteration that produced it.

More construction-time cases (44: loop, dataloader, evaluator, optimizer, scheduler, hook and
launcher arguments) are in ``tests/runner/test_config_checks.py``; this table adds the runtime
ones and the checkpoint ones, and repeats a few construction cases for the run used here.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from resume_toys import ResumeNet, resume_kwargs
from torch import nn
from torch.utils.data import Dataset

from fengine.hooks import Hook
from fengine.model import ImgDataPreprocessor
from fengine.registry import DATASETS
from fengine.runner import NonFiniteLossError
from fengine.runner.checkpoint import CheckpointError, read_checkpoint
from fengine.runner.runner import Runner


class Opaque:
    """An arbitrary class: unpickling it would run code, so safe loading refuses it."""


class ReturnsTensor(ResumeNet):
    def forward(self, inputs: torch.Tensor, targets: Any = None, mode: str = "tensor") -> Any:
        return super().forward(inputs, targets, "tensor")


class ReturnsNoLoss(ResumeNet):
    def forward(self, inputs: torch.Tensor, targets: Any = None, mode: str = "tensor") -> Any:
        out = super().forward(inputs, targets, "tensor")
        return {"mse": out.mean()} if mode == "loss" else out


class ReturnsText(ResumeNet):
    def forward(self, inputs: torch.Tensor, targets: Any = None, mode: str = "tensor") -> Any:
        return {"loss": "small"} if mode == "loss" else super().forward(inputs, targets, mode)


class NanAt(ResumeNet):
    """Adds an auxiliary loss term that is NaN at the ``at``-th training forward."""

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at, self.calls = at, 0

    def forward(self, inputs: torch.Tensor, targets: Any = None, mode: str = "tensor") -> Any:
        out = super().forward(inputs, targets, mode)
        if mode != "loss":
            return out
        self.calls += 1
        bad = torch.tensor(float("nan")) if self.calls == self.at else torch.tensor(0.0)
        return {**out, "loss_aux": bad}


@DATASETS.register_module(force=True)
class GrayImages(Dataset[dict[str, torch.Tensor]]):
    """8 one-channel 4x4 images."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"inputs": torch.full((1, 4, 4), float(index)), "targets": torch.tensor(1.0)}


@DATASETS.register_module(force=True)
class TextLines(Dataset[str]):
    """A dataset whose ``__getitem__`` returns text, which no model step can take."""

    def __len__(self) -> int:
        return 8

    def __getitem__(self, index: int) -> str:
        return f"line {index}"


@DATASETS.register_module(force=True)
class NoSamples(Dataset[dict[str, torch.Tensor]]):
    def __len__(self) -> int:
        return 0

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        raise IndexError(index)


class ColourNet(ResumeNet):
    """Expects RGB images (its preprocessor normalises three channels)."""

    def __init__(self) -> None:
        super().__init__(data_preprocessor=ImgDataPreprocessor(mean=[0.5, 0.5, 0.5], std=[0.2, 0.2, 0.2]))
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(48, 8), nn.BatchNorm1d(8))


_LOADER = {"dataset": {"type": "ResumeData"}, "sampler": {"type": "DefaultSampler"}, "batch_size": 4, "collate_fn": {"type": "default_collate"}}
_SGD = {"type": "SGD", "lr": 0.1}


def _file(tmp_path: Path, name: str, content: Any) -> str:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        torch.save(content, path)
    return str(path)


def _saved(tmp_path: Path) -> dict[str, Any]:
    """A real checkpoint of the run (two iterations)."""
    runner = Runner(**base_kwargs(tmp_path / "saved", train_cfg={"by_epoch": False, "max_iters": 2, "val_interval": 2}))
    runner.train()
    return read_checkpoint(str(tmp_path / "saved" / "iter_2.pth"), decode=False)


def _wider(tmp_path: Path) -> dict[str, Any]:
    checkpoint = _saved(tmp_path)
    checkpoint["state_dict"]["body.0.weight"] = torch.zeros(16, 4)
    checkpoint["state_dict"]["head.weight"] = torch.zeros(1, 16)
    checkpoint["meta"].pop("checksum")
    return {"resume": True, "load_from": _file(tmp_path, "wider.pth", checkpoint)}


def _truncated(tmp_path: Path) -> dict[str, Any]:
    _saved(tmp_path)
    data = (tmp_path / "saved" / "iter_2.pth").read_bytes()
    return {"load_from": _file(tmp_path, "cut.pth", data[: len(data) // 3])}


# (id, overrides or a function of tmp_path returning them, error type, message pattern)
Case = tuple[str, "dict[str, Any] | Callable[[Path], dict[str, Any]]", type[BaseException], str]
BAD: list[Case] = [
    # train_cfg
    ("max_epochs-text", {"train_cfg": {"by_epoch": True, "max_epochs": "4"}}, TypeError, "`max_epochs` should be an integer number, got '4'"),
    ("val_interval-negative", {"train_cfg": {"by_epoch": True, "max_epochs": 2, "val_interval": -1}}, ValueError, "`val_interval` must be > 0, got -1"),
    ("check_finite-value", {"train_cfg": {"by_epoch": True, "max_epochs": 2, "check_finite": "maybe"}}, TypeError, "`check_finite` must be a bool, 'eager' or 'skip'.*got 'maybe'"),
    ("max_iter-typo", {"train_cfg": {"by_epoch": False, "max_iter": 10}}, ValueError, r"unknown keys \['max_iter'\].*accepted: by_epoch, max_iters"),
    ("loop-type-typo", {"train_cfg": {"type": "IterBasedTrainLop", "max_iters": 3}}, KeyError, "IterBasedTrainLop is not in the fengine::[a-z_ ]+ registry.*did you mean 'IterBasedTrainLoop'"),
    ("max_iters-0", {"train_cfg": {"by_epoch": False, "max_iters": 0}}, ValueError, r"train_cfg: `max_iters` must be >= 1 \(0 would train nothing\), got 0"),
    ("max_epochs-0", {"train_cfg": {"by_epoch": True, "max_epochs": 0}}, ValueError, r"train_cfg: `max_epochs` must be >= 1 \(0 would train nothing\), got 0"),
    ("max_iters-negative", {"train_cfg": {"by_epoch": False, "max_iters": -3}}, ValueError, r"`max_iters` must be >= 1 \(0 would train nothing\), got -3"),
    ("max_iters-fraction", {"train_cfg": {"by_epoch": False, "max_iters": 2.5}}, TypeError, "`max_iters` should be an integer number, got 2.5"),
    ("loop-type-max_epochs-0", {"train_cfg": {"type": "EpochBasedTrainLoop", "max_epochs": 0}}, ValueError, "`max_epochs` must be >= 1"),
    # optim_wrapper
    ("accumulative_counts-0", {"optim_wrapper": {"optimizer": _SGD, "accumulative_counts": 0}}, ValueError, "accumulative_counts must be an int >= 1, got accumulative_counts=0"),
    ("clip_grad-empty", {"optim_wrapper": {"optimizer": _SGD, "clip_grad": {}}}, ValueError, "clip_grad must be None or a non-empty dict"),
    ("clip_grad-unknown-key", {"optim_wrapper": {"optimizer": _SGD, "clip_grad": {"max_norm": 1, "norm": 2}}}, ValueError, r"unknown \['norm'\]"),
    ("wrapper-type-typo", {"optim_wrapper": {"type": "OptimWraper", "optimizer": _SGD}}, KeyError, "OptimWraper is not in the fengine::[a-z_ ]+ registry.*did you mean 'OptimWrapper'"),
    ("optimizer-type-typo", {"optim_wrapper": {"optimizer": {"type": "Adamm", "lr": 0.1}}}, KeyError, "Adamm is not in the fengine::[a-z_ ]+ registry.*'Adam'"),
    ("optimizer-argument-typo", {"optim_wrapper": {"optimizer": {**_SGD, "momentun": 0.9}}}, TypeError, "SGD .* unexpected keyword argument 'momentun'.*accepted .*'momentum'"),
    # param_scheduler
    ("scheduler-not-a-dict", {"param_scheduler": 3}, TypeError, r"`param_scheduler` should be a scheduler, .* but param_scheduler\[0\] is 3"),
    ("scheduler-argument-typo", {"param_scheduler": {"type": "MultiStepLR", "milestone": [1]}}, TypeError, "missing a required argument: 'milestones'"),
    ("scheduler-type-typo", {"param_scheduler": {"type": "CosineAnealingLR", "T_max": 3}}, KeyError, "CosineAnealingLR is not in the fengine::[a-z_ ]+ registry.*'CosineAnnealingLR'"),
    ("scheduler-begin-after-end", {"param_scheduler": [{"type": "LinearLR", "begin": 5, "end": 2}]}, ValueError, "end should be larger than begin, got begin=5, end=2"),
    # default_hooks
    ("default-hook-unknown-key", {"default_hooks": {"bogus": None}}, KeyError, "'bogus' is not a default hook"),
    ("default-hook-unknown-type", {"default_hooks": {"logger": {"type": "LogerHook"}}}, KeyError, "LogerHook is not in the fengine::[a-z_ ]+ registry.*'LoggerHook'"),
    ("default-hook-not-a-hook", {"default_hooks": {"logger": 3}}, TypeError, "hook should be an instance of Hook or dict, but got 3"),
    ("checkpoint-interval-text", {"default_hooks": {"checkpoint": {"type": "CheckpointHook", "interval": "1"}}}, TypeError, "CheckpointHook: interval must be an int"),
    ("checkpoint-interval-negative", {"default_hooks": {"checkpoint": {"type": "CheckpointHook", "interval": -5}}}, ValueError, r"CheckpointHook: interval must be a positive int .* or -1 \(never by interval; `save_last` still saves the last\), got -5"),
    ("checkpoint-interval-0", {"default_hooks": {"checkpoint": {"type": "CheckpointHook", "interval": 0}}}, ValueError, "CheckpointHook: interval must be a positive int.*got 0"),
    ("checkpoint-template-without-field", {"default_hooks": {"checkpoint": {"type": "CheckpointHook", "filename_tmpl": "ckpt.pth"}}}, ValueError, r"filename_tmpl 'ckpt.pth' has 0 replacement fields; it needs exactly one for the step number .*'epoch_\{\}.pth'"),
    ("checkpoint-template-two-fields", {"default_hooks": {"checkpoint": {"type": "CheckpointHook", "filename_tmpl": "{0}_{0}.pth"}}}, ValueError, r"filename_tmpl '\{0\}_\{0\}.pth' has 2 replacement fields"),
    ("checkpoint-rule", {"default_hooks": {"checkpoint": {"type": "CheckpointHook", "save_best": "mse", "rule": "lesser"}}}, KeyError, "rule must be 'greater', 'less' or None, got 'lesser'"),
    # custom_hooks
    ("custom-hook-object", {"custom_hooks": [object()]}, TypeError, "hook should be an instance of Hook or dict"),
    ("custom-hooks-not-a-list", {"custom_hooks": {"type": "EMAHook"}}, TypeError, "custom_hooks must be a list of hooks or hook configs"),
    ("ema-momentum", {"custom_hooks": [{"type": "EMAHook", "momentum": 2}]}, ValueError, r"momentum must be in range \(0.0, 1.0\) \(open\), got 2"),
    ("early-stopping-without-monitor", {"custom_hooks": [{"type": "EarlyStoppingHook"}]}, TypeError, "EarlyStoppingHook .* missing a required argument: 'monitor'"),
    ("two-ema-hooks", {"custom_hooks": [{"type": "EMAHook"}, {"type": "EMAHook", "momentum": 0.01}]}, ValueError, "hooks 'EMAHook' and 'EMAHook_1' would both own the checkpoint's 'ema_state_dict' and the model's weights"),
    ("two-scheduler-hooks", {"custom_hooks": [{"type": "ParamSchedulerHook"}]}, ValueError, "hooks 'ParamSchedulerHook' and 'ParamSchedulerHook_1' would both own the stepping of the runner's parameter schedulers"),
    ("two-runtime-info-hooks", {"default_hooks": {"extra": {"type": "RuntimeInfoHook"}}}, ValueError, "hooks 'RuntimeInfoHook' and 'RuntimeInfoHook_1' would both own the message hub's runtime info"),
    ("hook-priority-name", {"custom_hooks": [{"type": "EMAHook", "priority": "SUPER"}]}, KeyError, "unknown priority name 'SUPER'; accepted"),
    # dataloaders
    ("loader-without-sampler", {"train_dataloader": {"dataset": {"type": "ResumeData"}, "batch_size": 4}}, KeyError, "needs a `sampler`"),
    ("loader-batch-size", {"val_dataloader": {**_LOADER, "batch_size": 0}}, ValueError, "val_dataloader: `batch_size` must be > 0, got 0"),
    ("loader-dataset-typo", {"train_dataloader": {**_LOADER, "dataset": {"type": "ResumeDta"}}}, KeyError, "ResumeDta is not in the fengine::[a-z_ ]+ registry.*'ResumeData'"),
    ("sampler-argument-typo", {"train_dataloader": {**_LOADER, "sampler": {"type": "DefaultSampler", "shufle": True}}}, TypeError, "DefaultSampler .* unexpected keyword argument 'shufle'.*'shuffle'"),
    ("dataset-returns-text", {"train_dataloader": {**_LOADER, "dataset": {"type": "TextLines"}}}, TypeError, r"dataset TextLines returned a str at index 0 \('line 0'\); __getitem__ must return a dict"),
    ("train-dataset-empty", {"train_dataloader": {**_LOADER, "dataset": {"type": "NoSamples"}}}, ValueError, r"train_dataloader yields no batch: its dataset NoSamples has 0 samples \(batch_size=4, drop_last=False\)"),
    ("val-dataset-empty", {"val_dataloader": {**_LOADER, "dataset": {"type": "NoSamples"}}}, ValueError, "val_dataloader yields no batch: its dataset NoSamples has 0 samples"),
    ("loader-workers", {"train_dataloader": {**_LOADER, "num_workers": -1}}, ValueError, "num_workers option should be non-negative"),
    # the model's outputs and inputs
    ("forward-returns-tensor", {"model": ReturnsTensor()}, TypeError, r"forward\(mode='loss'\) must return a dict of loss name -> Tensor.*got Tensor"),
    ("forward-returns-no-loss", {"model": ReturnsNoLoss()}, ValueError, r"none of its keys \['mse'\] contains 'loss'"),
    ("forward-returns-text", {"model": ReturnsText()}, TypeError, r"losses\['loss'\] is str 'small'; accepted: a Tensor or a list of Tensors"),
    ("preprocessor-type-typo", {"model": {"type": "ResumeNet", "data_preprocessor": {"type": "NoSuchPreprocessor"}}}, KeyError, "model.data_preprocessor: NoSuchPreprocessor is not in the fengine::model registry; did you mean 'ImgDataPreprocessor'"),
    ("runner-preprocessor-type-typo", {"model": ResumeNet(), "data_preprocessor": {"type": "NoSuchPreprocessor"}}, KeyError, "data_preprocessor: NoSuchPreprocessor is not in the fengine::[a-z_ ]+ registry"),
    ("work_dir-int", {"work_dir": 5}, TypeError, "work_dir must be a str, an os.PathLike or None .*got 5 of type int"),
    ("preprocessor-channels", {"model": ColourNet(), "train_dataloader": {**_LOADER, "dataset": {"type": "GrayImages"}}}, ValueError, r"mean/std with 3 values needs images with 3 channels in dim 1, got an input of shape \(4, 1, 4, 4\)"),
    # checkpoints
    ("load_from-missing", {"load_from": "/no/such/file.pth"}, CheckpointError, "checkpoint file '/no/such/file.pth' does not exist"),
    ("load_from-not-a-checkpoint", lambda p: {"load_from": _file(p, "notes.pth", b"epoch 3 was good\n")}, CheckpointError, r"notes\.pth': it is not a torch checkpoint"),
    ("load_from-truncated", _truncated, CheckpointError, r"cut\.pth': the file is truncated or corrupted"),
    ("load_from-untrusted-pickle", lambda p: {"load_from": _file(p, "obj.pth", {"state_dict": {}, "x": Opaque()})}, CheckpointError, r"holds pickled objects \(test_bad_input\.Opaque\), which a checkpoint may not hold"),
    ("resume-other-shapes", _wider, CheckpointError, r"do not fit ResumeNet \(shapes differ: body\.0\.weight \(checkpoint \(16, 4\), model \(8, 4\)\), head\.weight \(checkpoint \(1, 16\), model \(1, 8\)\)\)"),
    ("resume-weights-only-file", lambda p: {"resume": True, "load_from": _file(p, "w.pth", {"state_dict": ResumeNet().state_dict()})}, CheckpointError, "has no `epoch`/`iter` counters"),
    ("randomness-seed", {"randomness": {"seed": 1.5}}, TypeError, "`seed` must be an int or None, got 1.5"),
]


def base_kwargs(folder: Path, **overrides: Any) -> dict[str, Any]:
    """A plain 2-epoch run of the resume toy (no EMA or early stopping) in ``folder``."""
    kwargs = resume_kwargs(folder, True, "SGD", train_cfg={"by_epoch": True, "max_epochs": 2}, custom_hooks=[])
    return {**kwargs, **overrides}


@pytest.mark.parametrize(("case", "overrides", "error", "pattern"), BAD, ids=[c[0] for c in BAD])
def test_bad_input_is_reported_before_work_is_lost(tmp_path: Path, case: str, overrides: Any, error: type[BaseException], pattern: str) -> None:
    kwargs = base_kwargs(tmp_path / "run", **(overrides(tmp_path) if callable(overrides) else overrides))
    runner = None
    with pytest.raises(error, match=pattern):
        runner = Runner(**kwargs)
        runner.train()
    if runner is not None:  # failed in train(): no iteration completed, nothing was saved
        assert runner.iter == 0
        assert not list((tmp_path / "run").glob("*.pth"))


def test_there_are_at_least_thirty_cases() -> None:
    assert len(BAD) >= 30 and len({c[0] for c in BAD}) == len(BAD)


def test_a_non_finite_loss_stops_naming_the_iteration_and_terms(tmp_path: Path) -> None:
    eager = {"by_epoch": True, "max_epochs": 2, "check_finite": "eager"}
    runner = Runner(**base_kwargs(tmp_path, model=NanAt(3), train_cfg=eager))
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at iteration 3 \(epoch 1, batch 2\): loss=nan, loss_aux=nan"):
        runner.train()
    assert runner.iter == 2  # reported at the step that produced it


class Snapshot(Hook):
    """Keeps the parameters before and after training iteration ``at``."""

    def __init__(self, at: int) -> None:
        self.at = at
        self.before: dict[str, torch.Tensor] = {}
        self.after: dict[str, torch.Tensor] = {}

    def _keep(self, runner: Any, into: dict[str, torch.Tensor]) -> None:
        if runner.iter + 1 == self.at:
            into.update({k: v.detach().clone() for k, v in runner.model.named_parameters()})

    def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
        self._keep(runner, self.before)

    def after_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None) -> None:
        self._keep(runner, self.after)

    def changed(self) -> bool:
        return any(not torch.equal(self.before[k], self.after[k]) for k in self.before)


def test_a_non_finite_step_can_be_skipped(tmp_path: Path) -> None:
    """``check_finite='skip'``: the NaN step does not update (iteration 4 closes an accumulation
    group, so it would); the run goes on, with a warning naming the iteration and the terms."""
    skip = {"by_epoch": True, "max_epochs": 2, "check_finite": "skip"}
    clean, nan = Snapshot(4), Snapshot(4)
    Runner(**base_kwargs(tmp_path / "ref", model=NanAt(-1), train_cfg=skip, custom_hooks=[clean])).train()
    runner = Runner(**base_kwargs(tmp_path / "run", model=NanAt(4), train_cfg=skip, custom_hooks=[nan]))
    runner.train()
    assert clean.changed() and not nan.changed()
    assert runner.iter == 12
    assert all(bool(torch.isfinite(p).all()) for p in runner.model.parameters())
    log = next(Path(runner.log_dir).glob("*.log")).read_text()
    assert "non-finite loss at iteration 4 (epoch 1, batch 3): loss=nan, loss_aux=nan; the update of this step was skipped" in log


def test_pickled_objects_are_refused_with_no_way_around(tmp_path: Path) -> None:
    """No argument or attribute of the Runner unpickles arbitrary objects."""
    path = _file(tmp_path, "obj.pth", {"state_dict": ResumeNet().state_dict(), "x": Opaque()})
    runner = Runner(**base_kwargs(tmp_path / "run"))
    with pytest.raises(CheckpointError, match=r"obj\.pth': it holds pickled objects \(test_bad_input\.Opaque\)"):
        runner.load_checkpoint(path)
    with pytest.raises(TypeError, match="weights_only"):
        runner.load_checkpoint(path, weights_only=False)  # type: ignore[call-arg]
    assert not hasattr(runner, "checkpoint_weights_only")
