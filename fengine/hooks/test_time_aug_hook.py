"""PrepareTTAHook: test on a test-time-augmentation model wrapped around the trained one.

``before_test`` builds ``tta_cfg`` (a :class:`~fengine.model.BaseTTAModel` config) around the
runner's model (inside a model wrapper, around the wrapped module) and tests with it.
:func:`build_runner_with_tta` builds a runner from a config's ``tta_model`` and ``tta_pipeline``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from fengine.hooks.hook import Hook
from fengine.model.wrappers.utils import is_model_wrapper
from fengine.registry import HOOKS, MODELS


@HOOKS.register_module()
class PrepareTTAHook(Hook):
    """Wrap the model in a test-time-augmentation model before testing.

    Args:
        tta_cfg: the TTA model's config; its ``module`` is set to the runner's model.
    """

    def __init__(self, tta_cfg: Mapping[str, Any]) -> None:
        self.tta_cfg = tta_cfg

    def before_test(self, runner: Any) -> None:
        """Replace the model (or a wrapper's module) by the TTA model around it."""
        cfg = dict(copy.deepcopy(self.tta_cfg))
        if is_model_wrapper(runner.model):
            cfg["module"] = runner.model.module
            runner.model.module = MODELS.build(cfg)
        else:
            cfg["module"] = runner.model
            runner.model = MODELS.build(cfg)


def build_runner_with_tta(cfg: Mapping[str, Any]) -> Any:
    """A runner that tests with ``cfg['tta_model']`` over data transformed by ``cfg['tta_pipeline']``.

    The ``test_dataloader`` dataset gets the TTA pipeline and a :class:`PrepareTTAHook` wraps
    the model; a ``runner_type`` names the registered runner class to build. ``cfg`` is not
    modified.

    Raises:
        KeyError: ``cfg`` lacks ``tta_model`` or ``tta_pipeline``.
    """
    missing = [key for key in ("tta_model", "tta_pipeline") if key not in cfg]
    if missing:
        raise KeyError(f"build_runner_with_tta: the config needs {missing}; it has {sorted(cfg)}")
    from fengine.registry import RUNNERS
    from fengine.runner import Runner

    cfg = copy.deepcopy(cfg)
    cfg["test_dataloader"]["dataset"]["pipeline"] = cfg["tta_pipeline"]
    runner_cls = RUNNERS.resolve(cfg["runner_type"]) if "runner_type" in cfg else Runner
    runner = runner_cls.from_cfg(cfg)
    runner.register_hook(PrepareTTAHook(tta_cfg=cfg["tta_model"]))
    return runner
