"""Scaling rows: idle hooks, optimizer tensor counts, checkpoint save/load.

* ``hooks``: the Runner on W1 without default hooks and with 1, 10 or 100 user class hooks, of
  which only one handles ``after_train_iter`` (the others act once per epoch); the cost per
  iteration should not depend on how many hooks have nothing to do.
* ``optimizer``: one SGD-momentum step over 1M parameters held in 10 or in 1,000 tensors, with
  ``torch.optim.SGD(foreach=True)``, fengine's pure transform (``fc.optim.sgd``, pure and donated)
  and fengine's ``torch.optim``-compatible SGD (what ``OptimWrapper`` steps).
* ``checkpoint``: fengine's checkpoint write (checksum, atomic replace with fsync) and verified
  read against ``torch.save``/``torch.load(weights_only=True)`` of the same dict (W3's model and
  optimizer state).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from workloads import LR, MOMENTUM, WORKLOADS, build_model, loss_of, sgd

TOTAL_PARAMS = 1_000_000


def _median_us(fn: Callable[[], Any], repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e6


def hooks(engine: str, count: int) -> dict[str, float]:
    """µs per W1 iteration with ``count`` user hooks, one of them handling ``after_train_iter``."""
    import importlib

    from frameworks import runner

    hook_cls = importlib.import_module(f"{engine}.hooks").Hook

    class EpochOnly(hook_cls):  # type: ignore[misc, valid-type]
        def before_train_epoch(self, runner: Any) -> None:
            self.seen = runner.epoch

    idle = [EpochOnly() for _ in range(count - 1)]
    defaults = ("runtime_info", "timer", "sampler_seed", "logger", "param_scheduler", "checkpoint")
    return runner("W1", engine, extra_hooks=idle, default_hooks=dict.fromkeys(defaults), ema=False)


def optimizer(contender: str, tensors: int) -> dict[str, float]:
    """µs per SGD-momentum step over ``TOTAL_PARAMS`` parameters in ``tensors`` tensors."""
    torch.manual_seed(0)
    size = TOTAL_PARAMS // tensors
    params = [torch.randn(size, requires_grad=True) for _ in range(tensors)]
    grads = [torch.randn(size) for _ in range(tensors)]
    for p, g in zip(params, grads):
        p.grad = g
    if contender in ("torch.optim.SGD(foreach=True)", "fengine SGD (OptimWrapper's)"):
        if contender.startswith("torch"):
            opt = sgd(params)
        else:
            from fengine.optim import OptimWrapper

            opt = OptimWrapper(
                {"type": "SGD", "params": params, "lr": LR, "momentum": MOMENTUM, "foreach": True}
            ).optimizer
        return {"us": _median_us(opt.step, 50)}
    import fengine.core as fc

    tx = fc.optim.sgd(LR, momentum=MOMENTUM)
    named = {str(i): p.detach() for i, p in enumerate(params)}
    named_grads = {str(i): g for i, g in enumerate(grads)}
    donate = contender.endswith("donated")
    cell = [named, tx.init(named)]

    def step() -> None:
        p, s = cell
        # A donated update may consume the gradients; fresh copies keep every step comparable.
        g = {k: v.clone() for k, v in named_grads.items()} if donate else named_grads
        cell[:] = tx.update(g, s, p, donate=donate)

    us = _median_us(step, 50)
    if donate:  # subtract the gradient copies, which a training step gets from autograd anyway
        us -= _median_us(lambda: {k: v.clone() for k, v in named_grads.items()}, 50)
    return {"us": us}


def checkpoint(contender: str) -> dict[str, float]:
    """Save and load time (ms) of W3's model and optimizer state."""
    model = build_model("W3")
    opt = sgd(model.parameters())
    inputs = torch.randint(0, 512, (WORKLOADS["W3"].batch, 64))
    loss_of(model, (inputs, inputs)).backward()
    opt.step()
    state = {
        "meta": {"epoch": 1, "iter": 12},
        "state_dict": model.state_dict(),
        "optimizer": opt.state_dict(),
    }
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "ckpt.pth")
        if contender == "torch.save / torch.load":
            save: Callable[[], Any] = lambda: torch.save(state, path)  # noqa: E731
            load: Callable[[], Any] = lambda: torch.load(path, weights_only=True)  # noqa: E731
        else:
            from fengine.runner.checkpoint import read_checkpoint, save_checkpoint

            save = lambda: save_checkpoint(dict(state, meta=dict(state["meta"])), path)  # noqa: E731
            load = lambda: read_checkpoint(path)  # noqa: E731
        save_us = _median_us(save, 15, warmup=2)
        load_us = _median_us(load, 15, warmup=2)
        mib = os.path.getsize(path) / 2**20
    return {"save_ms": save_us / 1e3, "load_ms": load_us / 1e3, "mib": mib}


OPTIMIZER_CONTENDERS = (
    "torch.optim.SGD(foreach=True)",
    "fengine SGD (OptimWrapper's)",
    "fengine pure transform",
    "fengine pure transform, donated",
)
CHECKPOINT_CONTENDERS = ("torch.save / torch.load", "fengine save_checkpoint / read_checkpoint")
