"""build_optim_wrapper and DefaultOptimWrapperConstructor: paramwise numbers, parity, registry, errors."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from torch import nn

from fengine.optim import (
    SGD,
    AmpOptimWrapper,
    DefaultOptimWrapperConstructor,
    OptimWrapper,
    build_optim_wrapper,
)
from fengine.optim.optimizer.builder import TORCH_OPTIMIZERS
from fengine.registry import OPTIM_WRAPPER_CONSTRUCTORS, OPTIMIZERS, ConfigError, RegistryError

LR, WD = 0.01, 1e-4


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.backbone = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 4, 3, groups=4), nn.GroupNorm(2, 4))
        self.neck = nn.Linear(4, 4)
        self.head = nn.Sequential(nn.Linear(4, 3), nn.LayerNorm(3))
        self.scale = nn.Parameter(torch.ones(3))
        self.frozen = nn.Linear(2, 2).requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.backbone(x).mean((2, 3))
        return self.head(self.neck(feat)) * self.scale


def build(paramwise: dict[str, Any] | None, model: nn.Module | None = None, **optimizer: Any) -> OptimWrapper:
    cfg = dict(optimizer=dict(type="SGD", lr=LR, momentum=0.9, weight_decay=WD, **optimizer), paramwise_cfg=paramwise)
    return build_optim_wrapper(model or Net(), cfg)


def table(wrapper: OptimWrapper, model: nn.Module) -> dict[str, tuple[float, float]]:
    names = {id(p): n for n, p in model.named_parameters()}
    return {names[id(g["params"][0])]: (g["lr"], g["weight_decay"]) for g in wrapper.optimizer.param_groups}


def test_multipliers_match_mmengine_rules() -> None:
    model = Net()
    wrapper = build(dict(bias_lr_mult=2.0, bias_decay_mult=0.5, norm_decay_mult=0.0, dwconv_decay_mult=0.1,
                         flat_decay_mult=0.3), model)
    bias = (LR * 2.0, WD * 0.5)
    norm = (LR, WD * 0.0)
    assert table(wrapper, model) == {
        "scale": (LR, WD * 0.3), "backbone.0.weight": (LR, WD), "backbone.0.bias": bias,
        "backbone.1.weight": norm, "backbone.1.bias": norm, "backbone.2.weight": (LR, WD * 0.1),
        "backbone.2.bias": bias, "backbone.3.weight": norm, "backbone.3.bias": norm,
        "neck.weight": (LR, WD), "neck.bias": bias, "head.0.weight": (LR, WD), "head.0.bias": bias,
        "head.1.weight": norm, "head.1.bias": norm,
    }  # frozen.* left out


def test_custom_keys_longest_then_alphabetical_and_extra_keys_kept() -> None:
    model = Net()
    custom = {"backbone": dict(lr_mult=0.1, decay_mult=0.9), "backbone.1": dict(lr_mult=0.2),
              "head.0.bias": dict(decay_mult=0.0, foo=1), "neck": dict(lr_mult=5.0), "eck.": dict(lr_mult=7.0)}
    wrapper = build(dict(custom_keys=custom, bias_lr_mult=3.0), model)
    got = table(wrapper, model)
    assert got["backbone.0.weight"] == got["backbone.3.bias"] == (LR * 0.1, WD * 0.9)
    assert got["backbone.1.weight"] == (LR * 0.2, WD)
    assert got["neck.bias"] == got["neck.weight"] == (LR * 7.0, WD)  # 'eck.' and 'neck' tie: 'eck.' sorts first
    assert got["head.0.bias"] == (LR, 0.0) and got["head.0.weight"] == (LR, WD)
    assert got["head.1.bias"] == (LR, WD) and got["scale"] == (LR, WD)  # norm bias: no bias_lr_mult
    extra = {(k, v) for g in wrapper.optimizer.param_groups for k, v in g.items() if k in ("lr_mult", "decay_mult", "foo")}
    assert extra == {("lr_mult", 0.1), ("decay_mult", 0.9), ("lr_mult", 0.2), ("decay_mult", 0.0), ("foo", 1),
                     ("lr_mult", 7.0)}  # 'neck' never wins
    top = build(dict(custom_keys={".scale": dict(lr_mult=4.0)}), model)
    assert table(top, model)["scale"] == (LR * 4.0, WD)  # top-level names are matched as '.scale'


def test_paramwise_training_is_bit_identical_to_hand_written_groups() -> None:
    model, ref = Net(), Net()
    wrapper = build(dict(norm_decay_mult=0.0, bias_decay_mult=0.0, custom_keys={"head": dict(lr_mult=0.5)}), model)
    groups = []
    for name, p in ref.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("head"):
            groups.append({"params": [p], "lr": LR * 0.5, "weight_decay": WD})
        elif name.startswith(("backbone.1", "backbone.3")) or name.endswith("bias"):
            groups.append({"params": [p], "weight_decay": 0.0})
        else:
            groups.append({"params": [p]})
    opt = torch.optim.SGD(groups, lr=LR, momentum=0.9, weight_decay=WD)
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        x = torch.randn(2, 3, 7, 7, generator=gen)
        wrapper.update_params(model(x).square().mean())
        ref(x).square().mean().backward()
        opt.step()
        opt.zero_grad()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), ref.parameters()))


def test_registry_holds_torch_and_pure_optimizers() -> None:
    assert OPTIMIZERS.get("SGD") is SGD and issubclass(SGD, torch.optim.SGD)
    assert OPTIMIZERS.get("RMSprop") is torch.optim.RMSprop and "RMSprop" in TORCH_OPTIMIZERS
    if hasattr(torch.optim, "Adafactor"):
        assert OPTIMIZERS.get("TorchAdafactor") is torch.optim.Adafactor
    model = Net()
    wrapper = build_optim_wrapper(model, dict(optimizer=dict(type="RMSprop", lr=0.1)))
    assert type(wrapper.optimizer) is torch.optim.RMSprop and type(wrapper) is OptimWrapper


def test_build_options_wrappers_constructors_and_the_config_is_kept() -> None:
    cfg = dict(type="AmpOptimWrapper", dtype="bfloat16", accumulative_counts=2, clip_grad=dict(type="value", clip_value=1),
               optimizer=dict(type="Adam", lr=0.1), paramwise_cfg=dict(bias_lr_mult=2.0))
    kept = copy.deepcopy(cfg)

    class Wrapped(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.module = Net()

    wrapper = build_optim_wrapper(Wrapped(), cfg)
    assert cfg == kept and isinstance(wrapper, AmpOptimWrapper) and wrapper.get_lr()["lr"][:3] == [0.1, 0.1, 0.2]
    built = SGD(Net().parameters(), lr=0.3)
    assert build_optim_wrapper(Net(), dict(optimizer=built)).optimizer is built

    @OPTIM_WRAPPER_CONSTRUCTORS.register_module(force=True)
    class HeadOnly(DefaultOptimWrapperConstructor):
        def __call__(self, model: nn.Module) -> OptimWrapper:
            return OptimWrapper(SGD(model.head.parameters(), lr=self.base_lr))

    head_only = build_optim_wrapper(Net(), dict(constructor="HeadOnly", optimizer=dict(type="SGD", lr=0.2)))
    assert len(head_only.optimizer.param_groups[0]["params"]) == 4


@pytest.mark.parametrize(
    ("cfg", "paramwise", "error", "message"),
    [
        (dict(type="SDG", lr=0.1), None, RegistryError, r"SDG is not in the fengine::[a-z_ ]+ registry.*did you mean 'SGD'"),
        (dict(type="SGD", momentum=0.9), None, ConfigError, r"SGD .*rejects its arguments.*'lr'"),
        (dict(type="SGD", weight_decay=1e-4), dict(custom_keys={"head": {}}), ValueError, r"no 'lr', but paramwise_cfg \['custom_keys'\]"),
        (dict(type="SGD", lr=0.1), dict(bias_decay_mult=0.0), ValueError, r"no 'weight_decay', but paramwise_cfg \['bias_decay_mult'\]"),
        (dict(type="SGD", lr=0.1), dict(custom_keys={"a": dict(decay_mult=0.0)}), ValueError, r"custom_keys\['a'\]"),
        (dict(type="SGD", lr=0.1), dict(bias_lr_mul=2.0), ValueError, r"unknown paramwise_cfg key 'bias_lr_mul' \(did you mean 'bias_lr_mult'\?\)"),
        (dict(type="SGD", lr=0.1), dict(custom_keys={"head": {}, "tail": {}, "neck": {}}, strict_custom_keys=True),
         ValueError, r"custom_keys \['tail'\] match no trainable parameter"),
        (dict(type="SGD", lr=0.1), dict(custom_keys={"head": 0.1}), TypeError, r"custom_keys'\] must be a dict of dicts"),
        (dict(type="SGD", lr=0.1), [1], TypeError, r"paramwise_cfg must be None or a dict, got list"),
    ],
)
def test_bad_configs_are_clear_errors(cfg: dict[str, Any], paramwise: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        build_optim_wrapper(Net(), dict(optimizer=cfg, paramwise_cfg=paramwise))


def test_bad_wrapper_configs() -> None:
    with pytest.raises(AssertionError, match=r"must contain an 'optimizer' config, got keys \['type'\]"):
        build_optim_wrapper(Net(), dict(type="OptimWrapper"))
    with pytest.raises(RegistryError, match=r"OptimWraper is not in the fengine::[a-z_ ]+ registry.*did you mean 'OptimWrapper'"):
        build_optim_wrapper(Net(), dict(type="OptimWraper", optimizer=dict(type="SGD", lr=0.1)))
    with pytest.raises(TypeError, match=r"optimizer wrapper should be an OptimWrapper object or dict \(an optim_wrapper config\), but got list"):
        build_optim_wrapper(Net(), [])  # type: ignore[arg-type]
