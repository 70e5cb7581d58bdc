"""Scheduler façades: MMEngine's per-iteration values, state round trips, momentum and betas.

The table's ``expected`` values were measured by running MMEngine 0.10.7 (CPU, torch 2.13): each
config was built as its Runner does (``end`` filled with ``max_epochs``/``max_iters``, then
``PARAM_SCHEDULERS.build`` with the optimizer and ``epoch_length``) on a ``torch.optim`` optimizer
with one parameter per group, and stepped by a loop in ParamSchedulerHook's order: the value is
read at the start of each iteration, iteration-based schedulers step after every iteration and
epoch-based ones after every epoch. The lists are MMEngine's printed ``repr`` values.
"""

from __future__ import annotations

import inspect
import io
from collections import Counter
from typing import Any

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fengine.optim.scheduler as sch
from fengine.core import schedule as fs
from fengine.registry import PARAM_SCHEDULERS


@attrs.frozen
class TableCase:
    name: str
    optimizer: str
    lrs: list[float]
    options: dict[str, Any]
    key: str
    loop: str
    epoch_length: int | None
    max_epochs: int | None
    max_iters: int | None
    cfgs: list[dict[str, Any]]
    expected: list[Any]


# fmt: off
TABLE = [
    TableCase(
        'spec_6_5',
        optimizer='SGD',
        lrs=[0.1],
        options={},
        key='lr',
        loop='epoch',
        epoch_length=4,
        max_epochs=3,
        max_iters=12,
        cfgs=[{'type': 'MultiStepLR', 'milestones': [1, 2]}, {'type': 'LinearLR', 'start_factor': 0.5, 'end': 2, 'by_epoch': False}],
        expected=[0.05, 0.1, 0.1, 0.1, 0.010000000000000002, 0.010000000000000002, 0.010000000000000002, 0.010000000000000002, 0.0010000000000000002, 0.0010000000000000002, 0.0010000000000000002, 0.0010000000000000002],
    ),
    TableCase(
        'iter_warmup_cosine',
        optimizer='SGD',
        lrs=[0.1],
        options={},
        key='lr',
        loop='iter',
        epoch_length=None,
        max_epochs=None,
        max_iters=20,
        cfgs=[{'type': 'LinearLR', 'start_factor': 0.1, 'end': 5, 'by_epoch': False}, {'type': 'CosineAnnealingLR', 'begin': 5, 'eta_min': 0.001, 'by_epoch': False}],
        expected=[0.010000000000000002, 0.03250000000000001, 0.055000000000000014, 0.07750000000000003, 0.10000000000000003, 0.10000000000000003, 0.09891830623632342, 0.09572050015330877, 0.09054634122155993, 0.0836219650147635, 0.07525000000000003, 0.06579634122155992, 0.05567415893174887, 0.04532584106825118, 0.035203658778440124, 0.025750000000000023, 0.017378034985236542, 0.010453658778440109, 0.005279499846691253, 0.002081693763676619],
    ),
    TableCase(
        'converted_warmup_cosine',
        optimizer='SGD',
        lrs=[0.2],
        options={},
        key='lr',
        loop='epoch',
        epoch_length=3,
        max_epochs=4,
        max_iters=12,
        cfgs=[{'type': 'LinearLR', 'start_factor': 0.25, 'end': 1, 'convert_to_iter_based': True}, {'type': 'CosineAnnealingLR', 'begin': 1, 'eta_min': 0.01, 'convert_to_iter_based': True}],
        expected=[0.05, 0.125, 0.2, 0.2, 0.19427079897466132, 0.17777422209630292, 0.15250000000000002, 0.12149657687835841, 0.08850342312164163, 0.05750000000000003, 0.0322257779036971, 0.01572920102533871],
    ),
    TableCase(
        'overlap_linear_cosine_eta_min',
        optimizer='SGD',
        lrs=[0.05, 0.2],
        options={},
        key='lr',
        loop='iter',
        epoch_length=None,
        max_epochs=None,
        max_iters=15,
        cfgs=[{'type': 'LinearLR', 'start_factor': 0.2, 'end': 6, 'by_epoch': False}, {'type': 'CosineAnnealingLR', 'T_max': 12, 'eta_min': 0.005, 'by_epoch': False}],
        expected=[[0.010000000000000002, 0.04000000000000001], [0.01777851787087895, 0.07085851518068381], [0.024629203030418653, 0.0974041937780118], [0.029890320342079557, 0.11695276618259352], [0.03305038669370908, 0.12755038669370913], [0.03382334621318519, 0.1282347745958743], [0.02789713229659451, 0.10289713229659454], [0.021970918380003836, 0.07755948999731481], [0.01644856614829726, 0.05394856614829729], [0.011706414779947027, 0.033673406190955976], [0.008067634053930538, 0.01811572877009764], [0.005780200863356348, 0.008335763891676234], [0.005, 0.005], [0.005766668908495963, 0.00832223193681584], [0.008014428414850127, 0.018062523131017215]],
    ),
    TableCase(
        'epoch_constant_exp_poly',
        optimizer='SGD',
        lrs=[0.1],
        options={},
        key='lr',
        loop='epoch',
        epoch_length=2,
        max_epochs=7,
        max_iters=14,
        cfgs=[{'type': 'ConstantLR', 'factor': 0.5, 'end': 2}, {'type': 'ExponentialLR', 'gamma': 0.8, 'begin': 1, 'end': 4}, {'type': 'PolyLR', 'eta_min': 0.001, 'power': 2.0, 'begin': 3}],
        expected=[0.05, 0.05, 0.1, 0.1, 0.08000000000000002, 0.08000000000000002, 0.06400000000000002, 0.06400000000000002, 0.029000000000000012, 0.029000000000000012, 0.008000000000000004, 0.008000000000000004, 0.001, 0.001],
    ),
    TableCase(
        'restart_and_converted_step',
        optimizer='SGD',
        lrs=[0.1],
        options={},
        key='lr',
        loop='epoch',
        epoch_length=3,
        max_epochs=3,
        max_iters=9,
        cfgs=[{'type': 'CosineRestartLR', 'periods': [3, 4], 'restart_weights': [1, 0.5], 'eta_min': 0.01, 'end': 7, 'by_epoch': False}, {'type': 'StepLR', 'step_size': 2, 'gamma': 0.5, 'convert_to_iter_based': True}],
        expected=[0.1, 0.0775, 0.032500000000000015, 0.05, 0.044142135623730955, 0.03, 0.007928932188134525, 0.007928932188134525, 0.007928932188134525],
    ),
    TableCase(
        'onecycle_three_phase_two_groups',
        optimizer='SGD',
        lrs=[0.01, 0.02],
        options={},
        key='lr',
        loop='iter',
        epoch_length=None,
        max_epochs=None,
        max_iters=10,
        cfgs=[{'type': 'OneCycleLR', 'eta_max': [0.5, 0.3], 'total_steps': 10, 'pct_start': 0.3, 'three_phase': True, 'by_epoch': False}],
        expected=[[0.020000000000000018, 0.01200000000000001], [0.26, 0.156], [0.5, 0.3], [0.26, 0.156], [0.02, 0.012], [0.0180903609267551, 0.01085421655605306], [0.0130908609267551, 0.00785451655605306], [0.0069111390732449025, 0.004146683443946941], [0.0019116390732449018, 0.001146983443946941], [2e-06, 1.2e-06]],
    ),
    TableCase(
        'onecycle_linear_epoch',
        optimizer='SGD',
        lrs=[0.01],
        options={},
        key='lr',
        loop='epoch',
        epoch_length=2,
        max_epochs=5,
        max_iters=10,
        cfgs=[{'type': 'OneCycleLR', 'eta_max': 0.4, 'pct_start': 0.4, 'anneal_strategy': 'linear'}],
        expected=[0.016, 0.016, 0.4, 0.4, 0.2666672, 0.2666672, 0.13333440000000002, 0.13333440000000002, 1.599999999990498e-06, 1.599999999990498e-06],
    ),
    TableCase(
        'adam_beta0_cosine_momentum',
        optimizer='Adam',
        lrs=[0.01],
        options={'betas': [0.9, 0.99]},
        key='beta0',
        loop='iter',
        epoch_length=None,
        max_epochs=None,
        max_iters=8,
        cfgs=[{'type': 'CosineAnnealingMomentum', 'T_max': 6, 'eta_min': 0.8, 'by_epoch': False}],
        expected=[0.9, 0.893301270189222, 0.8750000000000001, 0.8500000000000001, 0.8250000000000001, 0.8066987298107781, 0.8, 0.8066987298107781],
    ),
    TableCase(
        'sgd_momentum_linear_multistep',
        optimizer='SGD',
        lrs=[0.01],
        options={'momentum': 0.95},
        key='momentum',
        loop='epoch',
        epoch_length=2,
        max_epochs=4,
        max_iters=8,
        cfgs=[{'type': 'LinearMomentum', 'start_factor': 0.9, 'end': 3, 'by_epoch': False}, {'type': 'MultiStepMomentum', 'milestones': [2, 3], 'gamma': 0.9}],
        expected=[0.855, 0.9025, 0.95, 0.95, 0.855, 0.855, 0.7695, 0.7695],
    ),
]
# fmt: on


def flat(values: list[Any]) -> list[float]:
    """Values of one group, or of every group in turn (``approx`` compares flat lists)."""
    return [x for v in values for x in (v if isinstance(v, list) else [v])]


def make_optimizer(kind: str, lrs: list[float], **options: Any) -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr} for lr in lrs]
    optimizer: torch.optim.Optimizer = getattr(torch.optim, kind)(groups, lr=lrs[0], **options)
    return optimizer


def read(optimizer: torch.optim.Optimizer, key: str) -> Any:
    values = [g["betas"][0] if key == "beta0" else g[key] for g in optimizer.param_groups]
    return values if len(values) > 1 else values[0]


def run_loop(
    case: TableCase, optimizer: torch.optim.Optimizer, schedulers: list[Any], steps: int
) -> list[Any]:
    """ParamSchedulerHook's order: read, step iteration schedulers, at epoch end the others."""
    values = []
    length = case.epoch_length if case.loop == "epoch" else None
    for i in range(steps):
        values.append(read(optimizer, case.key))
        for s in schedulers:
            if not s.by_epoch:
                s.step()
        if length is not None and (i + 1) % length == 0:
            for s in schedulers:
                if s.by_epoch:
                    s.step()
    return values


def build(case: TableCase) -> tuple[torch.optim.Optimizer, list[Any]]:
    optimizer = make_optimizer(case.optimizer, case.lrs, **case.options)
    schedulers = sch.build_param_schedulers(
        optimizer,
        case.cfgs,
        epoch_length=case.epoch_length,
        max_epochs=case.max_epochs,
        max_iters=case.max_iters,
    )
    assert isinstance(schedulers, list)
    return optimizer, schedulers


@pytest.mark.parametrize("case", TABLE, ids=lambda c: c.name)
def test_values_equal_mmengine(case: TableCase) -> None:
    optimizer, schedulers = build(case)
    values = run_loop(case, optimizer, schedulers, len(case.expected))
    assert flat(values) == pytest.approx(flat(case.expected), rel=1e-12, abs=0)


@pytest.mark.parametrize("case", TABLE, ids=lambda c: c.name)
def test_pure_trajectory_equals_the_facade(case: TableCase) -> None:
    _, schedulers = build(case)
    steps = len(case.expected)
    length = case.epoch_length if case.loop == "epoch" else None
    per_group = []
    for g in range(len(case.lrs)):
        base = schedulers[0].base_values[g]
        per_group.append(
            fs.trajectory([s.schedules[g] for s in schedulers], base, steps, epoch_length=length)
        )
    pure = [list(v) if len(v) > 1 else v[0] for v in zip(*per_group)]
    assert flat(pure) == pytest.approx(flat(case.expected), rel=1e-12, abs=0)


@settings(max_examples=25)
@given(case=st.sampled_from(TABLE), data=st.data())
def test_state_dict_round_trip_continues_identically(case: TableCase, data: st.DataObject) -> None:
    steps = len(case.expected)
    split = data.draw(st.integers(1, steps - 1), label="split")
    optimizer, schedulers = build(case)
    length = case.epoch_length if case.loop == "epoch" else None
    # run to the split in whole epochs only when the loop is epoch-based, as checkpoints are
    if length is not None:
        split = max(length, split - split % length)
        if split >= steps:
            return
    run_loop(case, optimizer, schedulers, split)
    buffer = io.BytesIO()
    torch.save(
        {"optimizer": optimizer.state_dict(), "schedulers": [s.state_dict() for s in schedulers]},
        buffer,
    )
    tail = run_loop(case, optimizer, schedulers, steps - split)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    fresh_optimizer, fresh = build(case)  # built afresh: its constructor steps move the values
    fresh_optimizer.load_state_dict(saved["optimizer"])
    for scheduler, state in zip(fresh, saved["schedulers"]):
        scheduler.load_state_dict(state)
    assert run_loop(case, fresh_optimizer, fresh, steps - split) == tail
    assert [s.state_dict() for s in fresh] == [s.state_dict() for s in schedulers]


def test_state_dict_uses_mmengine_names_and_restores_hyper_parameters() -> None:
    optimizer = make_optimizer("SGD", [0.1])
    scheduler = sch.MultiStepLR(optimizer, milestones=[2, 4], gamma=0.5, end=6)
    scheduler.step()
    state = scheduler.state_dict()
    assert state == {
        "param_name": "lr", "base_values": [0.1], "last_step": 1, "_global_step": 1,
        "_last_value": [0.1], "verbose": False, "begin": 0, "end": 6, "by_epoch": True,
        "milestones": [2, 4], "gamma": 0.5,
    }  # fmt: skip
    other = sch.MultiStepLR(make_optimizer("SGD", [0.1]), milestones=[1], gamma=0.1)
    # MMEngine keeps milestones in a Counter and saves derived attributes such as total_iters
    other.load_state_dict({**state, "milestones": Counter([2, 4]), "total_iters": 5})
    assert (other.milestones, other.gamma, other.end, other.last_step) == ((2, 4), 0.5, 6, 1)


def test_momentum_schedulers_drive_sgd_momentum_and_adam_beta0() -> None:
    sgd = make_optimizer("SGD", [0.1], momentum=0.9)
    sch.StepMomentum(sgd, step_size=1, gamma=0.5, by_epoch=False).step()
    assert sgd.param_groups[0]["momentum"] == 0.45
    adam = make_optimizer("Adam", [0.1, 0.2], betas=(0.8, 0.95))
    scheduler = sch.ExponentialMomentum(adam, gamma=0.5)
    scheduler.step()
    assert [g["betas"] for g in adam.param_groups] == [(0.4, 0.95), (0.4, 0.95)]
    assert scheduler.get_last_value() == [0.4, 0.4]
    adagrad = torch.optim.Adagrad([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(ValueError, match=r"'momentum' or 'betas'.*Adagrad"):
        sch.ConstantMomentum(adagrad)


def test_every_mmengine_name_is_registered_with_a_precise_signature() -> None:
    families = ["Constant", "CosineAnnealing", "CosineRestart", "Exponential", "Linear",
                "MultiStep", "Poly", "ReduceOnPlateau", "Step"]  # fmt: skip
    names = [f + suffix for f in families for suffix in ("LR", "Momentum", "ParamScheduler")]
    names += ["OneCycleLR", "OneCycleParamScheduler"]
    for name in names:
        cls = PARAM_SCHEDULERS.get(name)
        assert cls is getattr(sch, name) and cls.__name__ == name
        assert issubclass(cls, sch._ParamScheduler)
        params = inspect.signature(cls).parameters
        assert ("param_name" in params) == name.endswith("ParamScheduler"), name
        assert next(iter(params)) == "optimizer"
    assert sch.ReduceOnPlateauLR.need_val_args and not sch.StepLR.need_val_args


def test_hyper_parameters_read_as_attributes_and_verbose_prints(capsys: Any) -> None:
    optimizer = make_optimizer("SGD", [0.1])
    scheduler = sch.CosineAnnealingLR(
        optimizer, T_max=4, eta_min=0.01, verbose=True, by_epoch=False
    )
    assert (scheduler.T_max, scheduler.eta_min, scheduler.by_epoch) == (4, 0.01, False)
    with pytest.raises(AttributeError, match="no attribute 'gamma'"):
        _ = scheduler.gamma
    assert "Adjusting parameter value of group 0 to 1.0000e-01." in capsys.readouterr().out


def test_resuming_with_last_step_reads_initial_values() -> None:
    optimizer = make_optimizer("SGD", [0.1])
    with pytest.raises(KeyError, match="initial_lr"):
        sch.MultiStepLR(optimizer, milestones=[3], last_step=2)
    optimizer.param_groups[0].update(initial_lr=0.1, lr=0.01)
    scheduler = sch.MultiStepLR(optimizer, milestones=[3], last_step=2)
    assert (scheduler.last_step, scheduler.base_values) == (3, [0.1])
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.001, rel=1e-15)


def test_onecycle_sets_mmengine_group_keys_and_checks_arguments() -> None:
    optimizer = make_optimizer("SGD", [0.1, 0.1])
    sch.OneCycleLR(optimizer, eta_max=[1.0, 2.0], total_steps=10, by_epoch=False)
    assert [(g["initial_lr"], g["max_lr"], g["min_lr"]) for g in optimizer.param_groups] == [
        (0.04, 1.0, 0.04 / 1e4), (0.08, 2.0, 0.08 / 1e4)
    ]  # fmt: skip
    with pytest.raises(ValueError, match="expected 2 values for eta_max, got 3"):
        sch.OneCycleLR(optimizer, eta_max=[1.0, 2.0, 3.0], total_steps=10)
    with pytest.raises(ValueError, match="only 'lr', got param_name='momentum'"):
        sch.OneCycleParamScheduler(optimizer, "momentum", eta_max=1.0, total_steps=10)


class DuckWrapper:
    """An OptimWrapper's surface as schedulers use it: ``param_groups`` and ``defaults``."""

    def __init__(self, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer

    @property
    def param_groups(self) -> list[dict[str, Any]]:
        return self.optimizer.param_groups

    @property
    def defaults(self) -> dict[str, Any]:
        return self.optimizer.defaults


def test_works_on_anything_with_param_groups_and_rejects_the_rest() -> None:
    wrapper = DuckWrapper(make_optimizer("SGD", [0.1]))
    scheduler = sch.LinearLR(wrapper, start_factor=0.5, end=3, by_epoch=False)
    scheduler.step()
    assert wrapper.optimizer.param_groups[0]["lr"] == pytest.approx(0.075, rel=1e-15)
    with pytest.raises(TypeError, match=r"param_groups is a list of dicts.*got int"):
        sch.LinearLR(3)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match=r"param_groups\[0\] has no 'momentum'"):
        sch.LinearParamScheduler(make_optimizer("Adam", [0.1]), "momentum")


def _sgd() -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1, momentum=0.9)


def test_resume_state_dict_takes_counters_and_keeps_the_constructed_schedule():
    saved_run = sch.MultiStepLR(_sgd(), milestones=[2, 3], gamma=0.5, end=2)
    for _ in range(2):
        saved_run.step()
    state = saved_run.state_dict()
    optimizer = _sgd()
    optimizer.param_groups[0].update(lr=0.1, initial_lr=0.1)
    extended = sch.MultiStepLR(optimizer, milestones=[2, 3], gamma=0.5, end=4)
    assert extended.resume_state_dict(state) == [("end", 2, 4)]
    # global step 2 fell outside the saved window but lies in this one: it is taken now
    assert (extended.last_step, extended._global_step, extended.end) == (2, 2, 4)
    assert optimizer.param_groups[0]["lr"] == 0.05 and extended.get_last_value() == [0.05]
    extended.step()
    assert optimizer.param_groups[0]["lr"] == 0.025


def test_resume_state_dict_reads_mmengines_derived_defaults_as_unchanged():
    """MMEngine saves ``T_max = end - begin`` and a missing ``eta_min`` as 0.0."""
    cosine = sch.CosineAnnealingLR(_sgd(), end=10)
    mmengine_state = {
        "base_values": [0.1], "last_step": 3, "_global_step": 3, "_last_value": [0.09],
        "verbose": False, "param_name": "lr", "begin": 0, "end": 10, "by_epoch": True,
        "T_max": 10, "eta_min": 0.0, "eta_min_ratio": None, "_get_lr_called_within_step": False,
    }  # fmt: skip
    assert cosine.resume_state_dict(mmengine_state) == []
    assert (cosine.last_step, cosine.schedules[0].T_max) == (3, None)
    shorter = sch.CosineAnnealingLR(_sgd(), end=6)
    assert shorter.resume_state_dict(mmengine_state) == [("end", 10, 6), ("T_max", 10, 6)]


def test_plateau_resume_keeps_best_and_bad_epochs_but_takes_the_configured_rule():
    saved_run = sch.ReduceOnPlateauLR(_sgd(), monitor="loss", patience=3)
    for loss in (1.0, 2.0, 2.0):
        saved_run.step()
        saved_run.step({"loss": loss})
    resumed = sch.ReduceOnPlateauLR(_sgd(), monitor="loss", patience=1)
    assert resumed.resume_state_dict(saved_run.state_dict()) == [("patience", 3, 1)]
    assert (resumed.best, resumed.num_bad_epochs, resumed.patience) == (1.0, 2, 1)
    assert (resumed.last_step, resumed._global_step) == (2, 3)
