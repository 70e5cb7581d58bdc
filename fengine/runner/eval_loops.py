"""MMEngine's validation and test loops."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import torch

from fengine.core.events import Event
from fengine.logging.history_buffer import HistoryBuffer
from fengine.registry import LOOPS
from fengine.runner.base_loop import BaseLoop


def _split_losses(outputs: Any, losses: dict[str, HistoryBuffer]) -> Any:
    """Take a trailing loss-only data element off ``outputs``, recording its values in ``losses``.

    A model may append to its predictions a data element whose only key is ``loss`` (MMEngine's
    convention); its values (tensors or lists of tensors) feed the loop's loss means.
    """
    if not isinstance(outputs, (list, tuple)) or not outputs:
        return outputs
    last = outputs[-1]
    keys = getattr(last, "keys", None)
    if isinstance(last, Mapping) or not callable(keys) or list(keys()) != ["loss"]:
        return outputs
    for name, value in last.loss.items():
        buffer = losses.setdefault(name, HistoryBuffer())
        if isinstance(value, torch.Tensor):
            buffer.update(value.item())
        elif isinstance(value, (list, tuple)) and all(isinstance(v, torch.Tensor) for v in value):
            for item in value:
                buffer.update(item.item())
    return outputs[:-1]


def _loss_means(losses: Mapping[str, HistoryBuffer], stage: str) -> dict[str, float]:
    """Each loss's mean, plus ``<stage>_loss``: the sum of the means whose name contains ``loss``."""
    means = {name: buffer.mean() for name, buffer in losses.items()}
    means[f"{stage}_loss"] = sum(v for k, v in means.items() if "loss" in k)
    return means


class _EvalLoop(BaseLoop):
    """A pass over a dataloader that feeds the model's predictions to an evaluator."""

    _mode = "val"

    def __init__(self, runner: Any, dataloader: Any, evaluator: Any, fp16: bool = False) -> None:
        super().__init__(runner, dataloader)
        self.evaluator = runner.build_evaluator(evaluator)
        metainfo = getattr(getattr(self.dataloader, "dataset", None), "metainfo", None)
        if metainfo is not None:
            self.evaluator.dataset_meta = metainfo
            runner.visualizer.dataset_meta = metainfo
        self.fp16 = fp16
        self.losses: dict[str, HistoryBuffer] = {}
        self._set_run(dataloader_len={**self._host.run.dataloader_len, self._mode: len(self.dataloader)})
        mode = self._mode
        self._events = tuple(Event(f"{when}_{mode}{part}") for when, part in (
            ("before", ""), ("before", "_epoch"), ("before", "_iter"), ("after", "_iter"), ("after", "_epoch"), ("after", "")
        ))

    def run(self) -> dict[str, Any]:
        """Run the pass; returns the metrics (``after_{mode}_epoch`` receives them too)."""
        before, before_epoch, _, _, after_epoch, after = self._events
        self.fire(before)
        self.fire(before_epoch)
        self._runner.model.eval()
        self.losses.clear()
        for batch_idx, data_batch in enumerate(self.dataloader):
            self.run_iter(batch_idx, data_batch)
        metrics: dict[str, Any] = self.evaluator.evaluate(len(self.dataloader.dataset))
        if self.losses:
            metrics.update(_loss_means(self.losses, self._mode))
        self.fire(after_epoch, metrics=metrics)
        self.fire(after)
        return metrics

    @torch.no_grad()
    def run_iter(self, idx: int, data_batch: Any) -> None:
        """One batch: hooks around the model's ``val_step``/``test_step`` and the evaluator."""
        _, _, before_iter, after_iter, _, _ = self._events
        self.fire(before_iter, idx, data_batch)
        with self._autocast():
            outputs = getattr(self._runner.model, f"{self._mode}_step")(data_batch)
        outputs = _split_losses(outputs, self.losses)
        self.evaluator.process(data_samples=outputs, data_batch=data_batch)
        self.fire(after_iter, idx, data_batch, outputs)

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if not self.fp16:
            return contextlib.nullcontext()
        device = "cuda" if torch.cuda.is_available() else "cpu"
        return torch.autocast(device_type=device, dtype=torch.float16 if device == "cuda" else torch.bfloat16)


@LOOPS.register_module()
class ValLoop(_EvalLoop):
    """Validation (MMEngine's ``ValLoop``): ``before_val`` ... ``after_val``; returns metrics.

    A trailing loss-only data element in ``val_step``'s outputs is removed and its values are
    averaged into ``metrics`` (each loss, plus ``val_loss``).

    Args:
        runner: the runner.
        dataloader: a dataloader or its config.
        evaluator: an ``Evaluator``, a metric config dict or a list of them.
        fp16: run the model under autocast.
    """

    _mode = "val"


@LOOPS.register_module()
class TestLoop(_EvalLoop):
    """Testing (MMEngine's ``TestLoop``): as :class:`ValLoop` with ``test_step`` and test events."""

    _mode = "test"
