"""A runner's default_scope, and RUNNERS.build from a whole config (runner_type)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from runner_toys import toy_kwargs

from fengine.optim import MultiStepLR
from fengine.registry import PARAM_SCHEDULERS, RUNNERS, DefaultScope, Registry
from fengine.runner import Runner


@pytest.fixture(autouse=True)
def _no_default_scope() -> Iterator[None]:
    saved = dict(DefaultScope._instance_dict)
    DefaultScope._instance_dict.clear()
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)


_TOY_SCHEDULERS = Registry("parameter scheduler", parent=PARAM_SCHEDULERS, scope="toyscope")


@_TOY_SCHEDULERS.register_module()
class ScopedStep(MultiStepLR):
    pass


def test_the_default_scope_registry_is_searched_first(tmp_path: Path) -> None:
    kwargs = toy_kwargs(tmp_path, param_scheduler=dict(type="ScopedStep", milestones=[1]))
    with pytest.raises(KeyError, match="ScopedStep is not in the fengine::parameter scheduler registry"):
        Runner(**kwargs)
    runner = Runner(**toy_kwargs(tmp_path / "scoped", param_scheduler=dict(type="ScopedStep", milestones=[1]), default_scope="toyscope"))
    current = DefaultScope.get_current_instance()
    assert current is not None and current.scope_name == "toyscope"
    runner.train()
    assert isinstance(runner.param_schedulers[0], ScopedStep)
    assert runner.optim_wrapper.get_lr()["lr"] == [0.1 * 0.1]


@RUNNERS.register_module()
class LoggingRunner(Runner):
    built: list[Any] = []  # noqa: RUF012

    @classmethod
    def from_cfg(cls, cfg: Any) -> Runner:
        LoggingRunner.built.append(sorted(cfg))
        return super().from_cfg(cfg)


def test_runners_build_a_config_with_its_runner_type(tmp_path: Path) -> None:
    cfg = {"model": {"type": "ToyModel"}, "work_dir": str(tmp_path)}
    assert type(RUNNERS.build(copy.deepcopy(cfg))) is Runner
    runner = RUNNERS.build({**cfg, "runner_type": "LoggingRunner", "work_dir": str(tmp_path / "b")})
    assert isinstance(runner, LoggingRunner) and LoggingRunner.built == [["model", "runner_type", "work_dir"]]
    with pytest.raises(TypeError, match="cfg should be a dict, ConfigDict or Config"):
        RUNNERS.build(["model"])
