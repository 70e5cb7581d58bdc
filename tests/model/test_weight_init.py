"""Initialisers, ``initialize`` and the override rules (spec §7.2, A25)."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from fengine.model import (
    bias_init_with_prob,
    caffe2_xavier_init,
    constant_init,
    initialize,
    kaiming_init,
    normal_init,
    trunc_normal_,
    trunc_normal_init,
    uniform_init,
    xavier_init,
)
from fengine.model.initializers import layer_matches
from fengine.registry import WEIGHT_INITIALIZERS


def values(module: nn.Module) -> tuple[float, float]:
    return float(module.weight.detach().mean()), float(module.bias.detach().mean())


def test_functional_constant_skips_missing_bias() -> None:
    conv = nn.Conv2d(1, 2, 1, bias=False)
    constant_init(conv, 3, bias=5)
    assert conv.weight.eq(3).all() and conv.bias is None
    constant_init(nn.ReLU(), 1)  # no weight, no bias: nothing to do


# Each functional initialiser against torch.nn.init with the same seed (MMEngine calls the same).
RANDOM_CASES: list[tuple[Any, dict[str, Any], Any]] = [
    (
        xavier_init,
        dict(gain=2, distribution="uniform"),
        lambda w: nn.init.xavier_uniform_(w, gain=2),
    ),
    (xavier_init, {}, lambda w: nn.init.xavier_normal_(w, gain=1)),
    (normal_init, dict(mean=1, std=0.5), lambda w: nn.init.normal_(w, 1, 0.5)),
    (uniform_init, dict(a=-3, b=2), lambda w: nn.init.uniform_(w, -3, 2)),
    (
        kaiming_init,
        {},
        lambda w: nn.init.kaiming_normal_(w, a=0, mode="fan_out", nonlinearity="relu"),
    ),
    (
        kaiming_init,
        dict(a=0.1, mode="fan_in", nonlinearity="leaky_relu", distribution="uniform"),
        lambda w: nn.init.kaiming_uniform_(w, a=0.1, mode="fan_in", nonlinearity="leaky_relu"),
    ),
    (
        caffe2_xavier_init,
        {},
        lambda w: nn.init.kaiming_uniform_(w, a=1, mode="fan_in", nonlinearity="leaky_relu"),
    ),
]


@pytest.mark.parametrize(("fn", "kwargs", "reference"), RANDOM_CASES)
def test_random_functional_forms_match_torch_init(
    fn: Any, kwargs: dict[str, Any], reference: Any
) -> None:
    conv = nn.Conv2d(3, 4, 3)
    torch.manual_seed(3)
    fn(conv, bias=0.25, **kwargs)
    expected = torch.empty_like(conv.weight)
    torch.manual_seed(3)
    reference(expected)
    assert torch.equal(conv.weight, expected) and conv.bias.eq(0.25).all()


@pytest.mark.filterwarnings("ignore:trunc_normal_")
@settings(max_examples=25, deadline=None)
@given(
    mean=st.floats(-1, 1),
    std=st.floats(0.1, 2),
    a=st.floats(-2, -0.1),
    width=st.floats(0.2, 3),
    seed=st.integers(0, 99),
)
def test_trunc_normal_is_inverse_cdf_of_one_uniform_draw(
    mean: float, std: float, a: float, width: float, seed: int
) -> None:
    b = a + width
    tensor = torch.empty(64)
    torch.manual_seed(seed)
    trunc_normal_(tensor, mean, std, a, b)
    cdf = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    torch.manual_seed(seed)
    draws = torch.empty(64).uniform_(2 * cdf((a - mean) / std) - 1, 2 * cdf((b - mean) / std) - 1)
    expected = (torch.special.erfinv(draws) * (std * math.sqrt(2)) + mean).clamp(a, b)
    torch.testing.assert_close(tensor, expected)
    assert tensor.min() >= a and tensor.max() <= b


def test_trunc_normal_statistics() -> None:
    torch.manual_seed(0)
    linear = nn.Linear(1000, 100)
    trunc_normal_init(linear, mean=0, std=1, a=-2, b=2, bias=1)
    # Var of N(0,1) truncated to [-2, 2] = 1 - 4·φ(2)/(2Φ(2)-1) ≈ 0.7737
    weight = linear.weight.detach()
    assert abs(float(weight.var()) - 0.7737) < 0.01 and abs(float(weight.mean())) < 0.01
    assert linear.bias.eq(1).all()


def test_bias_init_with_prob() -> None:
    assert bias_init_with_prob(0.01) == pytest.approx(-4.59512, abs=1e-5)
    assert bias_init_with_prob(0.5) == 0.0
    with pytest.raises(ValueError, match="prior_prob"):
        bias_init_with_prob(1.0)


def test_registry_names() -> None:
    names = [
        "Constant",
        "Xavier",
        "Normal",
        "TruncNormal",
        "Uniform",
        "Kaiming",
        "Caffe2Xavier",
        "Pretrained",
    ]
    assert all(name in WEIGHT_INITIALIZERS for name in names)
    init = WEIGHT_INITIALIZERS.build(dict(type="Normal", bias_prob=0.01, layer="Linear"))
    assert init.bias == pytest.approx(-4.5951, abs=1e-4) and init.layer == ["Linear"]


class Conv2dChild(nn.Conv2d):
    pass


class Conv2dGrandChild(Conv2dChild):
    pass


def test_layer_matching_uses_direct_bases_only() -> None:
    assert layer_matches(nn.Conv2d(1, 1, 1), ["Conv2d"])
    assert layer_matches(Conv2dChild(1, 1, 1), ["Conv2d"])
    assert not layer_matches(Conv2dGrandChild(1, 1, 1), ["Conv2d"])
    assert layer_matches(Conv2dGrandChild(1, 1, 1), ["Conv2dChild"])
    model = nn.Sequential(Conv2dChild(1, 1, 1), Conv2dGrandChild(1, 1, 1))
    initialize(model, dict(type="Constant", val=4, layer="Conv2d"))
    assert values(model[0]) == (4.0, 0.0) and values(model[1]) != (4.0, 0.0)


def test_no_layer_no_override_touches_nothing() -> None:
    model = nn.Sequential(nn.Linear(2, 2))
    before = model[0].weight.clone()
    initialize(model, dict(type="Constant", val=9))
    assert torch.equal(model[0].weight, before)


def test_override_name_only_initialises_whole_child() -> None:
    model = nn.Module()
    model.a = nn.Linear(1, 1)
    model.b = nn.Sequential(nn.Linear(1, 1), nn.Conv2d(1, 1, 1))
    initialize(model, dict(type="Constant", val=3, bias=0, layer="Linear", override=dict(name="b")))
    assert values(model.a) == (3.0, 0.0)
    assert values(model.b[0]) == (3.0, 0.0) and values(model.b[1]) == (3.0, 0.0)


def test_override_with_own_type() -> None:
    model = nn.Module()
    model.a, model.b = nn.Linear(1, 1), nn.Linear(1, 1)
    cfg = dict(
        type="Constant",
        val=1,
        layer="Linear",
        override=[dict(name="b", type="Constant", val=5, bias=6)],
    )
    snapshot = repr(cfg)
    initialize(model, cfg)
    assert values(model.a) == (1.0, 0.0) and values(model.b) == (5.0, 6.0)
    assert repr(cfg) == snapshot  # the caller's config is not modified


@pytest.mark.parametrize(
    ("cfg", "error", "message"),
    [
        ("Constant", TypeError, "init_cfg must be a dict or a list of dicts"),
        (
            dict(type="Constant", val=1, override=dict(val=2)),
            ValueError,
            'must contain the key "name"',
        ),
        (
            dict(type="Constant", val=1, override=dict(name="a", val=2)),
            ValueError,
            'needs a "type" key',
        ),
        (
            dict(type="Constant", val=1, override=dict(name="nope", type="Constant", val=2)),
            ValueError,
            r"'nope'.*no submodule.*\['a'\]",
        ),
        (dict(type="Constant", val=1, override="a"), TypeError, "`override` must be a dict"),
        (dict(type="Constant", val=1, bias="0"), TypeError, "bias must be a number"),
        (dict(type="Normal", bias_prob=1), TypeError, "bias_prob must be a float"),
        (dict(type="Normal", layer=3), TypeError, "layer must be a str or a list"),
        (dict(type="Xavier", distribution="cauchy"), ValueError, "distribution must be one of"),
    ],
)
def test_config_errors_leave_module_untouched(
    cfg: Any, error: type[Exception], message: str
) -> None:
    model = nn.Module()
    model.a = nn.Linear(2, 2)
    before = model.a.weight.clone()
    with pytest.raises(error, match=message):
        initialize(model, [dict(type="Constant", val=7, layer="Linear"), cfg])
    assert torch.equal(model.a.weight, before)


def test_trunc_normal_warns_when_mean_far_from_interval() -> None:
    with pytest.warns(UserWarning, match="more than 2 std"):
        trunc_normal_(torch.empty(3), mean=5, std=1, a=-1, b=1)
