"""The run's components as the runner holds them: each given as an object or a config, built lazily."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
from torch import nn

from fengine.model.wrappers import is_model_wrapper
from fengine.runner.base_loop import BaseLoop


@attrs.define(eq=False)
class Parts:
    """The model, the optimizer wrapper, the schedulers and the loops of one run.

    The shell's one mutable holder of components: ``Runner.train()`` replaces a config by what it
    builds (MMEngine's lazy order), and the checkpointer, the resumer and the effect interpreter
    read the current components here, so none of them reaches into the runner.
    """

    model: nn.Module
    optim_wrapper: Any = None
    param_schedulers: Any = None
    train_loop: Any = None
    val_loop: Any = None
    test_loop: Any = None

    def unwrapped(self) -> nn.Module:
        """The model without its distributed wrapper."""
        inner: nn.Module = self.model.module if is_model_wrapper(self.model) else self.model  # type: ignore[assignment]
        return inner

    def train_dataset_meta(self) -> Any:
        """The train dataset's ``metainfo`` once the train loop is built, else ``None``."""
        loop = self.train_loop
        dataset = getattr(getattr(loop, "dataloader", None), "dataset", None) if isinstance(loop, BaseLoop) else None
        return getattr(dataset, "metainfo", None)

    def with_dataset_meta(self, meta: Mapping[str, Any]) -> dict[str, Any]:
        """``meta`` with the train dataset's ``metainfo`` as ``dataset_meta`` when it has one."""
        dataset_meta = self.train_dataset_meta()
        return {**meta} if dataset_meta is None else {**meta, "dataset_meta": dataset_meta}

    def check_losses(self) -> None:
        """Check the train losses not checked yet (see :mod:`fengine.runner.finite_watch`).

        Called before every checkpoint is collected and at every train log line, so no
        checkpoint holds weights a non-finite loss has already reached.
        """
        watch = getattr(self.train_loop, "finite_watch", None)
        if watch is not None:
            watch.check()
