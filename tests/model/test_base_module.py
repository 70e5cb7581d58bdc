"""BaseModule.init_weights, the init-info dump and the containers (spec §7.1, A25)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from fengine.logging import MMLogger
from fengine.model import BaseModule, ModuleDict, ModuleList, Sequential, update_init_info


def values(module: nn.Module) -> tuple[float, float]:
    return float(module.weight.detach().mean()), float(module.bias.detach().mean())


class Leaf(BaseModule):
    def __init__(self, init_cfg: Any = None) -> None:
        super().__init__(init_cfg)
        self.conv = nn.Conv2d(1, 1, 1)


class UserInit(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(1, 1)

    def init_weights(self) -> None:
        nn.init.constant_(self.lin.weight, 42)


def constant(layer: str, val: float, bias: float) -> dict[str, Any]:
    return dict(type="Constant", layer=layer, val=val, bias=bias)


class Net(BaseModule):
    def __init__(self) -> None:
        super().__init__(
            init_cfg=dict(
                constant("Conv2d", 1, 2), override=dict(type="Constant", name="reg", val=3, bias=4)
            )
        )
        self.feat, self.reg, self.cls = nn.Conv2d(1, 1, 1), nn.Conv2d(1, 1, 1), nn.Linear(1, 1)
        self.leaf = Leaf(constant("Conv2d", 7, 8))
        self.plain = nn.Sequential(Leaf(constant("Conv2d", 9, 9)))
        self.mm = Sequential(Leaf(constant("Conv2d", 5, 5)))
        self.user = UserInit()


@contextlib.contextmanager
def logger_file(path: Path) -> Iterator[Path]:
    """A new MMLogger (so the current one) writing to ``path``, dropped afterwards."""
    logger = MMLogger.get_instance(f"init-info-{path.name}-{id(path)}", log_file=str(path))
    try:
        yield path
    finally:
        for handler in logger.handlers:
            handler.close()
        MMLogger._instance_dict.pop(logger.instance_name)


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    """The log file of the current MMLogger, where ``init_weights`` dumps its table."""
    with logger_file(tmp_path / "init.log") as path:
        yield path


def test_init_info_goes_to_the_current_logger_file_only(tmp_path: Path) -> None:
    """MMEngine's rule: the table is written to the file of the latest MMLogger, not of older ones."""
    with logger_file(tmp_path / "older.log") as older, logger_file(tmp_path / "current.log") as current:
        Net().init_weights()
        assert current.read_text().startswith("Name of parameter - Initialization information\n")
        assert "\nreg.bias - torch.Size([1]): \nConstantInit: val=3, bias=4 \n" in current.read_text()
        assert not older.exists() or older.read_text() == ""


def test_a25_values_and_plain_container(log_file: Path) -> None:
    torch.manual_seed(0)
    net = Net()
    cls_before = values(net.cls)
    net.init_weights()
    assert (
        values(net.feat) == (1, 2) and values(net.reg) == (3, 4) and values(net.cls) == cls_before
    )
    assert values(net.leaf.conv) == (7, 8) and values(net.mm[0].conv) == (5, 5)
    # A BaseModule inside a plain nn.Sequential is never reached: the parent's Conv2d rule wins.
    assert values(net.plain[0].conv) == (1, 2) and net.plain[0].is_init is False
    assert net.is_init and net.leaf.is_init and net.mm.is_init and net.mm[0].is_init
    assert float(net.user.lin.weight.detach().mean()) == 42
    text = log_file.read_text()
    assert text.startswith("Name of parameter - Initialization information\n")
    assert "\nfeat.weight - torch.Size([1, 1, 1, 1]): \nConstantInit: val=1, bias=2 \n" in text
    assert "\nreg.bias - torch.Size([1]): \nConstantInit: val=3, bias=4 \n" in text
    assert (
        "\ncls.weight - torch.Size([1, 1]): \nThe value is the same before and after calling `init_weights` of Net  \n"
        in text
    )
    assert "\nleaf.conv.weight - torch.Size([1, 1, 1, 1]): \nConstantInit: val=7, bias=8 \n" in text
    assert (
        "\nuser.lin.weight - torch.Size([1, 1]): \nInitialized by user-defined `init_weights` in UserInit  \n"
        in text
    )
    assert not any(hasattr(m, "_params_init_info") for m in net.modules())


def test_second_call_warns_and_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    net = Net()
    net.init_weights()
    with torch.no_grad():
        net.feat.weight.fill_(-1)
    with caplog.at_level(logging.WARNING, logger="fengine"):
        net.init_weights()
    assert "init_weights of Net has been called more than once." in caplog.messages
    assert float(net.feat.weight.detach().mean()) == -1


def test_child_cfg_overrides_parent_for_its_subtree() -> None:
    class Parent(BaseModule):
        def __init__(self) -> None:
            super().__init__(constant("Linear", 1, 1))
            self.inner = ModuleList([nn.Linear(1, 1), Leaf()], init_cfg=constant("Linear", 2, 2))
            self.table = ModuleDict({"x": nn.Linear(1, 1)}, init_cfg=constant("Linear", 3, 3))
            self.direct = nn.Linear(1, 1)

    parent = Parent()
    parent.init_weights()
    assert (
        values(parent.direct) == (1, 1)
        and values(parent.inner[0]) == (2, 2)
        and values(parent.table["x"]) == (3, 3)
    )


def test_foo_model_rules_reach_nested_components() -> None:
    class Component(BaseModule):
        def __init__(self) -> None:
            super().__init__()
            self.linear, self.conv1d, self.conv2d = (
                nn.Linear(1, 1),
                nn.Conv1d(1, 1, 1),
                nn.Conv2d(1, 1, 1),
            )

    class Foo(BaseModule):
        def __init__(self) -> None:
            super().__init__(
                [constant("Linear", 1, 2), constant("Conv1d", 3, 4), constant("Conv2d", 5, 6)]
            )
            self.component1, self.component2 = Component(), Component()
            self.component3 = Sequential(Component())
            self.reg = nn.Linear(1, 1)

    foo = Foo()
    foo.init_weights()
    for comp in (foo.component1, foo.component2, foo.component3[0]):
        assert (
            values(comp.linear) == (1, 2)
            and values(comp.conv1d) == (3, 4)
            and values(comp.conv2d) == (5, 6)
        )
    assert values(foo.reg) == (1, 2)


def test_init_cfg_is_deep_copied_and_shown_in_repr() -> None:
    cfg = constant("Linear", 1, 0)
    leaf = Leaf(cfg)
    cfg["val"] = 99
    assert leaf.init_cfg == constant("Linear", 1, 0)
    assert repr(leaf).endswith(
        "\ninit_cfg={'type': 'Constant', 'layer': 'Linear', 'val': 1, 'bias': 0}"
    )
    assert "init_cfg" not in repr(Leaf())


def test_is_init_setter_skips_initialisation() -> None:
    leaf = Leaf(constant("Conv2d", 3, 3))
    leaf.is_init = True
    before = values(leaf.conv)
    leaf.init_weights()
    assert values(leaf.conv) == before


def test_update_init_info_outside_init_weights() -> None:
    with pytest.raises(AttributeError, match="only available while a top-level `init_weights"):
        update_init_info(nn.Linear(1, 1), "x")


def test_sequential_forward_and_container_api() -> None:
    seq = Sequential(nn.Linear(2, 3), nn.ReLU(), init_cfg=constant("Linear", 1, 0))
    seq.init_weights()
    assert seq(torch.ones(1, 2)).tolist() == [[2.0, 2.0, 2.0]]
    modules = ModuleList()
    modules.append(nn.ReLU())
    modules.extend([nn.Tanh()])
    modules.insert(0, nn.Identity())
    assert [type(m).__name__ for m in modules] == ["Identity", "ReLU", "Tanh"] and len(modules) == 3
    table = ModuleDict({"a": nn.ReLU()})
    table["b"] = nn.Tanh()
    del table["a"]
    assert list(table.keys()) == ["b"] and isinstance(table, BaseModule)
