"""The Runner's own costs, for fengine and MMEngine alike: each hook alone, set-up, host reads.

* ``hook ENGINE NAME``: W1 with no default hooks and only the hook ``NAME`` (``bare``: none) beside
  the timing hook; the table subtracts the bare Runner of the same round, giving µs per
  iteration of that hook alone.
* ``calls ENGINE NAME``: the same run, counting the Python function calls (cProfile's count, which
  no load on the machine changes) per iteration of the second epoch.
* ``setup ENGINE``: a fresh process imports the engine, builds W1's Runner (six default hooks)
  and calls ``train()``; seconds of each phase up to the first batch's ``before_train_iter``.
* ``reads ENGINE [CHECK]``: 200 W1 iterations logged every 50 (``LoggerHook(interval=50)``),
  counting host reads of tensor values (``Tensor.item``, ``__float__``, ``__bool__``,
  ``__int__``, ``tolist``, ``numpy``, ``cpu``) from the first iteration to the last; ``CHECK``
  is fengine's ``train_cfg['check_finite']`` (``default`` leaves it out). The DataLoader's own
  reads (its shuffling sampler's permutation, once per epoch) count too, as in a raw loop.
"""

from __future__ import annotations

import contextlib
import importlib
import tempfile
import time
from typing import Any

import torch
from workloads import LR, MOMENTUM, build_loader, build_model, loss_of

DEFAULTS = ("runtime_info", "timer", "sampler_seed", "logger", "param_scheduler", "checkpoint")
#: The hooks timed alone, as configs both engines build.
HOOKS: dict[str, dict[str, Any]] = {
    "RuntimeInfoHook": {"type": "RuntimeInfoHook"},
    "IterTimerHook": {"type": "IterTimerHook"},
    "DistSamplerSeedHook": {"type": "DistSamplerSeedHook"},
    "LoggerHook(interval=10)": {"type": "LoggerHook", "interval": 10},
    "ParamSchedulerHook": {"type": "ParamSchedulerHook"},
    "CheckpointHook(interval=1)": {"type": "CheckpointHook", "interval": 1},
    "EMAHook": {"type": "EMAHook"},
    "EmptyCacheHook": {"type": "EmptyCacheHook"},
}
READS = ("item", "__float__", "__bool__", "__int__", "tolist", "numpy", "cpu")


def hook(engine: str, name: str) -> dict[str, float]:
    """µs per W1 iteration of the Runner with only hook ``name`` (``'bare'``: no hook)."""
    from frameworks import runner

    extra = [] if name == "bare" else [HOOKS[name]]
    return runner("W1", engine, extra_hooks=extra, default_hooks=dict.fromkeys(DEFAULTS), ema=False)


def calls(engine: str, name: str) -> dict[str, float]:
    """Python function calls per W1 iteration of the Runner with only hook ``name``."""
    import cProfile
    import pstats

    from frameworks import runner
    from workloads import WORKLOADS

    hooks = importlib.import_module(f"{engine}.hooks")
    profile = cProfile.Profile()

    class Count(hooks.Hook):  # type: ignore[misc, name-defined]
        priority = "HIGHEST"

        def before_train_epoch(self, runner: Any) -> None:
            if runner.epoch == 1:
                profile.enable()

        def after_train_epoch(self, runner: Any) -> None:
            if runner.epoch == 1:
                profile.disable()

    extra = [Count(), *([] if name == "bare" else [HOOKS[name]])]
    runner("W1", engine, extra_hooks=extra, default_hooks=dict.fromkeys(DEFAULTS), ema=False)
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    return {"calls_per_iter": sum(entry[1] for entry in stats.values()) / WORKLOADS["W1"].iters}


def _net(engine: str) -> Any:
    models = importlib.import_module(f"{engine}.model")

    class Net(models.BaseModel):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.net = build_model("W1")

        def forward(self, inputs: Any, targets: Any, mode: str = "loss") -> Any:
            return {"loss": loss_of(self.net, (inputs, targets))}

    return Net()


def _runner(engine: str, work_dir: str, epochs: int, **options: Any) -> Any:
    return importlib.import_module(f"{engine}.runner").Runner(
        model=_net(engine),
        work_dir=work_dir,
        train_dataloader=build_loader("W1"),
        optim_wrapper={"optimizer": {"type": "SGD", "lr": LR, "momentum": MOMENTUM, "foreach": True}},
        randomness={"seed": 0},
        **{"train_cfg": {"by_epoch": True, "max_epochs": epochs}, **options},
    )


class _FirstBatch(BaseException):
    """Raised at the first ``before_train_iter``: the set-up is over (not an Exception, so no
    hook error wraps it)."""


def setup(engine: str) -> dict[str, float]:
    """Seconds to import ``engine``, build W1's Runner and reach the first batch in ``train()``."""
    start = time.perf_counter()
    hooks = importlib.import_module(f"{engine}.hooks")
    importlib.import_module(f"{engine}.runner")
    imported = time.perf_counter()

    class Stop(hooks.Hook):  # type: ignore[misc, name-defined]
        def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
            raise _FirstBatch

    with tempfile.TemporaryDirectory() as work_dir:
        built = time.perf_counter()
        runner = _runner(engine, work_dir, 1, custom_hooks=[Stop()])
        trained = time.perf_counter()
        with contextlib.suppress(_FirstBatch):
            runner.train()
        first = time.perf_counter()
    return {"import_s": imported - start, "build_s": trained - built, "train_s": first - trained}


def reads(engine: str, check: str = "default") -> dict[str, float]:
    """Host reads of tensor values per iteration over 200 W1 iterations logged every 50."""
    hooks = importlib.import_module(f"{engine}.hooks")
    counted = dict.fromkeys(READS, 0)
    armed = [False]
    for method in READS:
        original = getattr(torch.Tensor, method)

        def wrapper(tensor: torch.Tensor, *args: Any, _original: Any = original, _method: str = method, **kwargs: Any) -> Any:
            counted[_method] += armed[0]
            return _original(tensor, *args, **kwargs)

        setattr(torch.Tensor, method, wrapper)

    class Arm(hooks.Hook):  # type: ignore[misc, name-defined]
        priority = "HIGHEST"

        def before_train_iter(self, runner: Any, batch_idx: int, data_batch: Any = None) -> None:
            armed[0] = True  # after the DataLoader drew its seed, a read a raw loop makes too

        def after_train_epoch(self, runner: Any) -> None:
            armed[0] = False

    train_cfg: dict[str, Any] = {"by_epoch": True, "max_epochs": 2}
    if check != "default":
        train_cfg["check_finite"] = {"True": True, "False": False}.get(check, check)
    with tempfile.TemporaryDirectory() as work_dir:
        _runner(
            engine,
            work_dir,
            2,
            train_cfg=train_cfg,
            default_hooks={"logger": {"type": "LoggerHook", "interval": 50}, "checkpoint": None},
            custom_hooks=[Arm()],
        ).train()
    return {"reads_per_iter": sum(counted.values()) / 200, **counted}
