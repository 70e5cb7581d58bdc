"""The family schedulers: constructors written from their schedule records, values equal to them."""

from __future__ import annotations

import inspect
from typing import Any

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.core import schedule as fs
from fengine.optim import scheduler as sched
from fengine.optim.scheduler.param_scheduler import FamilyScheduler, family_fields, family_signature
from fengine.registry import PARAM_SCHEDULERS

INF = fs.INF
_TAIL = ["begin", "end", "last_step", "by_epoch", "verbose"]

#: MMEngine 0.10.7's positional parameters after ``param_name``, per generic scheduler.
MMENGINE_ORDER: dict[str, list[str]] = {
    "StepParamScheduler": ["step_size", "gamma", *_TAIL],
    "MultiStepParamScheduler": ["milestones", "gamma", "last_step", "begin", "end", "by_epoch", "verbose"],
    "ConstantParamScheduler": ["factor", *_TAIL],
    "ExponentialParamScheduler": ["gamma", *_TAIL],
    "CosineAnnealingParamScheduler": ["T_max", "eta_min", *_TAIL, "eta_min_ratio"],
    "LinearParamScheduler": ["start_factor", "end_factor", *_TAIL],
    "PolyParamScheduler": ["eta_min", "power", *_TAIL],
    "CosineRestartParamScheduler": ["periods", "restart_weights", "eta_min", "eta_min_ratio", *_TAIL],
    "OneCycleParamScheduler": [
        "eta_max",
        "total_steps",
        "pct_start",
        "anneal_strategy",
        "div_factor",
        "final_div_factor",
        "three_phase",
        *_TAIL,
    ],
}
#: MMEngine's defaults for the scheduler's own and window arguments.
WINDOW_DEFAULTS = {"begin": 0, "end": INF, "last_step": -1, "by_epoch": True, "verbose": False}

GENERIC = {name: getattr(sched, name) for name in MMENGINE_ORDER}


def _variants(generic: type[FamilyScheduler]) -> list[tuple[type[Any], str | None]]:
    """The generic class (param_name given) and its LR/Momentum variants (param_name fixed)."""
    stem = generic.__name__.removesuffix("ParamScheduler")
    out: list[tuple[type[Any], str | None]] = [(generic, None)]
    for suffix, fixed in (("LR", "lr"), ("Momentum", "momentum")):
        variant = getattr(sched, stem + suffix, None)
        if variant is not None:
            out.append((variant, fixed))
    return out


def _names(cls: type[Any]) -> list[str]:
    return list(inspect.signature(cls).parameters)


@pytest.mark.parametrize("name", sorted(MMENGINE_ORDER))
def test_a_signature_is_the_family_fields_in_mmengines_order(name: str) -> None:
    generic = GENERIC[name]
    family = generic.family
    params = inspect.signature(generic).parameters
    assert list(params) == ["optimizer", "param_name", *MMENGINE_ORDER[name], "convert_to_iter_based", "epoch_length"]
    assert set(MMENGINE_ORDER[name]) == {*family_fields(family), *_TAIL}
    fields = attrs.fields_dict(family)
    for key in MMENGINE_ORDER[name]:
        param = params[key]
        assert param.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
        if key in fields and key not in WINDOW_DEFAULTS:
            expected = fields[key].default
            assert param.default == (inspect.Parameter.empty if expected is attrs.NOTHING else expected)
            assert param.annotation == fields[key].type
        else:
            assert param.default == WINDOW_DEFAULTS[key]
    assert [params[k].kind for k in ("convert_to_iter_based", "epoch_length")] == [inspect.Parameter.KEYWORD_ONLY] * 2
    assert PARAM_SCHEDULERS.get(name) is generic
    assert generic.__init__.__qualname__ == f"{name}.__init__"
    assert f"fengine.core.schedule.{family.__name__}" in (generic.__doc__ or "")
    for variant, _ in _variants(generic)[1:]:
        assert _names(variant) == [n for n in _names(generic) if n != "param_name"], variant
        assert PARAM_SCHEDULERS.get(variant.__name__) is variant
        assert variant.__doc__


def test_an_order_must_arrange_exactly_the_family_and_window() -> None:
    with pytest.raises(TypeError, match=r"order for Step must arrange \['step_size', 'gamma', 'begin'"):
        family_signature(fs.Step, ("step_size", "begin", "end", "last_step", "by_epoch", "verbose"))
    with pytest.raises(TypeError, match="must arrange"):

        class Bad(FamilyScheduler, family=fs.Exponential, order=("gamma", "gamma")):
            pass


def test_missing_and_unknown_arguments_are_type_errors() -> None:
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    with pytest.raises(TypeError, match=r"StepParamScheduler\(\): missing a required argument: 'step_size'"):
        sched.StepParamScheduler(optimizer, "lr")
    with pytest.raises(TypeError, match=r"StepLR\(\): got an unexpected keyword argument 'step_sizes'"):
        sched.StepLR(optimizer, 2, step_sizes=2)
    with pytest.raises(TypeError, match=r"MultiStepLR\(\): too many positional arguments"):
        sched.MultiStepLR(optimizer, [1], 0.1, -1, 0, 10, True, False, True)
    with pytest.raises(TypeError, match="should be an Optimizer"):
        sched.StepParamScheduler("optimizer", "lr", 2)


# -- values: any valid arguments, positional or by name, equal the family's pure schedule ----------

unit = st.floats(0.05, 1.0)
windows = st.integers(0, 3).flatmap(
    lambda begin: st.tuples(st.just(begin), st.one_of(st.just(INF), st.integers(begin + 1, begin + 20)))
)


def _fields(name: str) -> st.SearchStrategy[dict[str, Any]]:
    """Valid family hyper-parameters for the scheduler ``name``."""
    ratio_or_min = st.sampled_from(["eta_min", "eta_min_ratio"]).flatmap(
        lambda key: st.floats(0.0, 0.05).map(lambda v: {key: v})
    )
    periods = st.lists(st.integers(1, 5), min_size=1, max_size=3)
    strategies: dict[str, st.SearchStrategy[dict[str, Any]]] = {
        "StepParamScheduler": st.fixed_dictionaries({"step_size": st.integers(1, 5), "gamma": unit}),
        "MultiStepParamScheduler": st.fixed_dictionaries(
            {"milestones": st.lists(st.integers(0, 20), max_size=4).map(sorted), "gamma": unit}
        ),
        "ConstantParamScheduler": st.fixed_dictionaries({"factor": unit}),
        "ExponentialParamScheduler": st.fixed_dictionaries({"gamma": unit}),
        "CosineAnnealingParamScheduler": st.tuples(
            st.one_of(st.none(), st.integers(1, 10)), st.one_of(st.just({}), ratio_or_min)
        ).map(lambda t: {"T_max": t[0], **t[1]}),
        "LinearParamScheduler": st.fixed_dictionaries({"start_factor": unit, "end_factor": st.floats(0.0, 1.0)}),
        "PolyParamScheduler": st.fixed_dictionaries({"eta_min": st.floats(0.0, 0.01), "power": st.floats(0.5, 3.0)}),
        "CosineRestartParamScheduler": st.tuples(periods, ratio_or_min).flatmap(
            lambda t: st.lists(unit, min_size=len(t[0]), max_size=len(t[0])).map(
                lambda w: {"periods": t[0], "restart_weights": w, **t[1]}
            )
        ),
        "OneCycleParamScheduler": st.fixed_dictionaries(
            {
                "eta_max": st.floats(0.1, 2.0),
                "total_steps": st.integers(12, 30),
                "pct_start": st.floats(0.1, 0.9),
                "anneal_strategy": st.sampled_from(["cos", "linear"]),
                "div_factor": st.floats(2.0, 30.0),
                "final_div_factor": st.floats(10.0, 1e4),
                "three_phase": st.booleans(),
            }
        ),
    }
    return strategies[name]


CASES = [(name, variant, fixed) for name in sorted(MMENGINE_ORDER) for variant, fixed in _variants(GENERIC[name])]


@pytest.mark.parametrize(
    ("name", "cls", "fixed"), CASES, ids=[f"{cls.__name__}" for _, cls, _ in CASES]
)
@settings(max_examples=8, deadline=None)
@given(data=st.data(), base=st.floats(0.01, 1.0), steps=st.integers(1, 11))
def test_a_scheduler_equals_its_family_schedule(
    name: str, cls: type[Any], fixed: str | None, data: st.DataObject, base: float, steps: int
) -> None:
    fields = data.draw(_fields(name), label="fields")
    begin, end = data.draw(windows, label="window")
    param_name = fixed or ("lr" if name == "OneCycleParamScheduler" else data.draw(st.sampled_from(["lr", "momentum"])))
    record = GENERIC[name].family(**fields, begin=begin, end=end, by_epoch=True)
    arguments = {**fields, "begin": begin, "end": end}
    order = [n for n in _names(cls) if n != "optimizer"]
    values = {**({} if fixed else {"param_name": param_name}), **arguments}
    # A prefix of the constructor's order goes positionally (as far as every value is given).
    given_in_order = [n for n in order if n in values]
    prefix = order[: next((i for i, n in enumerate(order) if n not in values), len(order))]
    cut = data.draw(st.integers(0, len(prefix)), label="positional")
    positional = [values[n] for n in prefix[:cut]]
    keywords = {n: values[n] for n in given_in_order if n not in prefix[:cut]}

    start = {"lr": base, "momentum": 0.9}
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=start["lr"], momentum=start["momentum"])
    scheduler = cls(optimizer, *positional, **keywords)
    seen = [optimizer.param_groups[0][param_name]]
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
        seen.append(optimizer.param_groups[0][param_name])
    expected = fs.trajectory(record, start[param_name], steps + 1)
    assert seen == expected
    assert [fs.value_at(record, start[param_name], k) for k in range(steps + 1)] == expected
    assert scheduler.schedules == (record,)
