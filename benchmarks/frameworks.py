"""Framework contenders: fengine's and MMEngine's ``Runner`` (one code, the import swapped),
PyTorch Lightning and Ignite.

A framework owns its loop, so the epochs are timed from inside by a user callback that stamps
the clocks at the start and the end of each train epoch and counts iterations (it handles
``after_train_iter``, as user hooks do). The first epoch is the warm-up; the table reports the
median of the others. Checkpoints written *after* an epoch's end stamp (the default
``CheckpointHook`` saves every epoch, at lower priority than the user hook) are outside the
timed window; their cost is in the checkpoint rows.
"""

from __future__ import annotations

import importlib
import resource
import statistics
import tempfile
import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch.nn.functional as F
from workloads import (
    AMP,
    DEVICE,
    LR,
    MOMENTUM,
    WORKLOADS,
    autocast,
    build_loader,
    build_model,
    loss_of,
    sgd,
    synchronize,
)


class Stamps:
    """Per-epoch wall and CPU clocks and the iteration count, as a callback records them."""

    def __init__(self) -> None:
        self.starts: list[tuple[float, float, int]] = []
        self.ends: list[tuple[float, float, int]] = []
        self.iters = 0

    @staticmethod
    def _now() -> tuple[float, float, int]:
        synchronize()
        return time.perf_counter(), time.process_time(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    def start(self) -> None:
        """Stamp an epoch's start."""
        self.starts.append(self._now())

    def end(self) -> None:
        """Stamp an epoch's end."""
        self.ends.append(self._now())

    def result(self, iters: int) -> dict[str, float]:
        """Median µs per iteration of the epochs after the first (and their best CPU time and mean
        minor page faults per iteration), and the first epoch in s."""
        spans = [(e[0] - s[0], e[1] - s[1]) for s, e in zip(self.starts, self.ends)]
        faults = sum(e[2] - s[2] for s, e in zip(self.starts[1:], self.ends[1:]))
        if self.iters != iters * len(spans):
            raise RuntimeError(
                f"the callback counted {self.iters} iterations, expected {iters}×{len(spans)}"
            )
        rest = spans[1:]
        return {
            "wall_us": statistics.median(w for w, _ in rest) / iters * 1e6,
            "cpu_us": statistics.median(c for _, c in rest) / iters * 1e6,
            "cpu_best_us": min(c for _, c in rest) / iters * 1e6,
            "first_epoch_s": spans[0][0],
            "faults": faults / (iters * (len(spans) - 1)),
        }


def runner(
    workload: str,
    engine: str = "fengine",
    *,
    compile: bool = False,
    batched: bool = False,
    extra_hooks: Sequence[Any] = (),
    default_hooks: Mapping[str, Any] | None = None,
    ema: bool = True,
) -> dict[str, float]:
    """Train with ``<engine>.runner.Runner``: six default hooks, EMAHook and one user class hook.

    ``extra_hooks`` go before the timing hook; ``default_hooks`` is the Runner's argument
    (``None``: the six defaults); ``ema=False`` leaves EMAHook out.
    """
    models = importlib.import_module(f"{engine}.model")
    hooks = importlib.import_module(f"{engine}.hooks")
    Runner = importlib.import_module(f"{engine}.runner").Runner
    w = WORKLOADS[workload]
    stamps = Stamps()

    class Net(models.BaseModel):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.net = build_model(workload)

        def forward(self, inputs: Any, targets: Any, mode: str = "loss") -> Any:
            if mode == "loss":
                return {"loss": loss_of(self.net, (inputs, targets))}
            return self.net(inputs)

    class EpochTimer(hooks.Hook):  # type: ignore[misc, name-defined]
        def before_train_epoch(self, runner: Any) -> None:
            stamps.start()

        def after_train_iter(
            self, runner: Any, batch_idx: int, data_batch: Any = None, outputs: Any = None
        ) -> None:
            stamps.iters += 1

        def after_train_epoch(self, runner: Any) -> None:
            stamps.end()

    if batched:
        from loops import batched_data_loader

        loader = batched_data_loader(workload)
    else:
        loader = build_loader(workload)
    with tempfile.TemporaryDirectory() as work_dir:
        Runner(
            model=Net(),
            work_dir=work_dir,
            train_dataloader=loader,
            train_cfg={"by_epoch": True, "max_epochs": 1 + w.timed_epochs},
            optim_wrapper={
                "optimizer": {"type": "SGD", "lr": LR, "momentum": MOMENTUM, "foreach": True}
            },
            default_hooks=default_hooks,
            custom_hooks=[*([{"type": "EMAHook"}] if ema else []), *extra_hooks, EpochTimer()],
            randomness={"seed": 0},
            cfg={"compile": True} if compile else None,
        ).train()
    return stamps.result(w.iters)


def lightning(workload: str) -> dict[str, float]:
    """PyTorch Lightning's ``Trainer`` with its defaults (logger, checkpointing), no progress bar."""
    import pytorch_lightning as pl

    w = WORKLOADS[workload]
    stamps = Stamps()

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = build_model(workload)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            return loss_of(self.net, batch)

        def configure_optimizers(self) -> Any:
            return sgd(self.parameters())

    class EpochTimer(pl.Callback):
        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            stamps.start()

        def on_train_batch_end(self, trainer: Any, module: Any, *args: Any) -> None:
            stamps.iters += 1

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            stamps.end()

    with tempfile.TemporaryDirectory() as work_dir:
        trainer = pl.Trainer(
            max_epochs=1 + w.timed_epochs,
            accelerator="gpu" if DEVICE.type == "cuda" else "cpu",
            devices=1,
            default_root_dir=work_dir,
            enable_progress_bar=False,
            enable_model_summary=False,
            callbacks=[EpochTimer()],
        )
        trainer.fit(Module(), build_loader(workload))
    return stamps.result(w.iters)


def ignite(workload: str) -> dict[str, float]:
    """Ignite's ``create_supervised_trainer`` with epoch and iteration handlers."""
    from ignite.engine import Events, create_supervised_trainer

    w = WORKLOADS[workload]
    stamps = Stamps()
    model = build_model(workload)

    def loss_fn(logits: Any, targets: Any) -> Any:
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))

    def model_fn(module: Any, inputs: Any) -> Any:
        with autocast():
            return module(inputs)

    # On the CPU without AMP, Ignite's own defaults (no batch conversion, plain forward).
    options = {"device": DEVICE, "model_fn": model_fn} if DEVICE.type != "cpu" or AMP else {}
    trainer = create_supervised_trainer(model, sgd(model.parameters()), loss_fn, **options)
    trainer.add_event_handler(Events.EPOCH_STARTED, lambda _: stamps.start())
    trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda _: stamps.end())

    @trainer.on(Events.ITERATION_COMPLETED)
    def count(_: Any) -> None:
        stamps.iters += 1

    trainer.run(build_loader(workload), max_epochs=1 + w.timed_epochs)
    return stamps.result(w.iters)


#: The six default hooks with the log line beyond the epoch (one line per epoch) and no checkpoint.
QUIET_DEFAULTS = {"logger": {"type": "LoggerHook", "interval": 10**6}, "checkpoint": None}

#: contender → (interpreter: ``'fengine'`` runs in this environment, ``'mmenv'`` in MMEngine's), function.
#: Each Runner row exists for both engines with the same configuration: ``quiet defaults``
#: (:data:`QUIET_DEFAULTS`), ``stock defaults`` (the six defaults as they come: a line every 10
#: iterations, a checkpoint each epoch) and the plain name (stock defaults, EMAHook and the timing
#: hook, a user class hook handling ``after_train_iter``; every Runner row has that hook).
FRAMEWORKS: dict[str, tuple[str, Any]] = {
    "fengine Runner, quiet defaults": ("fengine", lambda w: runner(w, default_hooks=QUIET_DEFAULTS, ema=False)),
    "MMEngine Runner, quiet defaults": (
        "mmenv", lambda w: runner(w, "mmengine", default_hooks=QUIET_DEFAULTS, ema=False)
    ),
    "fengine Runner, stock defaults": ("fengine", lambda w: runner(w, ema=False)),
    "MMEngine Runner, stock defaults": ("mmenv", lambda w: runner(w, "mmengine", ema=False)),
    "fengine Runner": ("fengine", runner),
    "fengine Runner, batched data": ("fengine", lambda w: runner(w, batched=True)),
    "fengine Runner, compiled": ("fengine", lambda w: runner(w, compile=True)),
    "MMEngine Runner": ("mmenv", lambda w: runner(w, "mmengine")),
    "Lightning": ("mmenv", lightning),
    "Ignite": ("mmenv", ignite),
}
