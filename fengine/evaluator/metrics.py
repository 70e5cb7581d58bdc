"""Ready-made metrics: classification accuracy."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from fengine.evaluator.metric import BaseMetric
from fengine.registry import METRICS


def _positive_ks(topk: int | Sequence[int]) -> tuple[int, ...]:
    ks = (topk,) if isinstance(topk, int) else tuple(topk)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in ks):
        raise ValueError(
            f"Accuracy: topk must be an int >= 1 or a non-empty list of them, got {topk!r}"
        )
    return ks


def _label_tensor(value: Any) -> torch.Tensor:
    return torch.as_tensor(value).reshape(-1).to("cpu", torch.long)


# MMEngine has no `Accuracy`; its tutorials register their own under that name, which replaces this.
@METRICS.register_module(replaceable=True)
class Accuracy(BaseMetric):
    """Top-k classification accuracy: the fraction of samples whose label is among the k best scores.

    Each row of scores is ordered by descending score, equal scores by ascending class index,
    and the label's position in that order is recorded; a sample counts for top-k when the
    position is below k. Top-1 therefore agrees with ``scores.argmax(1) == labels`` (which also
    picks the first of equal maxima), and top-k grows with k even when scores tie. Results are
    kept per sample, so padding added by a distributed sampler is dropped before the fraction
    is taken.

    ``process`` accepts the model's ``'predict'`` output in either of two shapes:

    * a pair ``(scores, labels)``: ``scores`` of shape ``(N, C)`` and ``labels`` of shape ``(N,)``
      (the layout of MMEngine's introductory example);
    * a sequence of mappings (or data elements), one per sample, each with ``gt_label`` and
      either ``pred_score`` (shape ``(C,)``) or ``pred_label`` (top-1 only).

    Metric names are ``accuracy`` for k = 1 and ``accuracy_top{k}`` otherwise, unprefixed unless
    ``prefix`` is given (``prefix='cls'`` gives ``cls/accuracy``).

    Args:
        topk: the k (or several) to report (``top_k``, as MMEngine's evaluation tutorial writes
            it, is the same).
        collect_device: where results are gathered across ranks (``'cpu'`` or ``'gpu'``).
        prefix: optional prefix of the metric names.

    Raises:
        ValueError: ``topk`` is not a positive int or a non-empty list of them.
    """

    # An empty prefix means "unprefixed names", and keeps the base class from warning about it.
    default_prefix: str | None = ""

    def __init__(
        self,
        topk: int | Sequence[int] = 1,
        collect_device: str = "cpu",
        prefix: str | None = None,
        *,
        top_k: int | Sequence[int] | None = None,
    ) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.topk = _positive_ks(topk if top_k is None else top_k)

    def process(self, data_batch: Any, data_samples: Sequence[Any]) -> None:
        """Record, per sample, the position of its label among the top scores.

        Args:
            data_batch: the batch from the dataloader (unused).
            data_samples: the model's predictions, in one of the shapes described above.

        Raises:
            TypeError: ``data_samples`` has neither shape.
            ValueError: scores and labels disagree in length, or only ``pred_label`` is given
                with a k above 1.
        """
        if len(data_samples) == 2 and all(isinstance(d, torch.Tensor) for d in data_samples):
            scores, labels = data_samples[0].detach().to("cpu"), _label_tensor(data_samples[1])
            if scores.dim() != 2 or scores.shape[0] != labels.shape[0]:
                raise ValueError(
                    f"Accuracy: expected scores of shape (N, C) and labels of shape (N,), got "
                    f"{tuple(scores.shape)} and {tuple(data_samples[1].shape)}"
                )
            self.results.extend(_positions(scores, labels))
            return
        for sample in data_samples:
            if not isinstance(sample, Mapping) or "gt_label" not in sample:
                raise TypeError(
                    "Accuracy.process expects (scores, labels) tensors or one mapping per sample "
                    f"with 'gt_label' and 'pred_score' or 'pred_label'; got {type(sample).__name__}"
                )
            label = _label_tensor(sample["gt_label"])
            if "pred_score" in sample:
                score = torch.as_tensor(sample["pred_score"]).detach().to("cpu").reshape(1, -1)
                self.results.extend(_positions(score, label))
            elif max(self.topk) > 1:
                raise ValueError(
                    f"Accuracy: topk={self.topk} needs 'pred_score', got only 'pred_label'"
                )
            else:
                hit = bool(_label_tensor(sample["pred_label"])[0] == label[0])
                self.results.append(0 if hit else 1)

    def compute_metrics(self, results: list[Any]) -> dict[str, Any]:
        """The fraction of samples counted for each k (0.0 without samples).

        Args:
            results: the label positions of every sample.

        Returns:
            ``{'accuracy': ..., 'accuracy_top5': ...}`` as floats in ``[0, 1]``.
        """
        positions = torch.as_tensor(results, dtype=torch.long)
        total = max(len(results), 1)
        return {
            "accuracy" if k == 1 else f"accuracy_top{k}": float((positions < k).sum()) / total
            for k in self.topk
        }


def _positions(scores: torch.Tensor, labels: torch.Tensor) -> list[int]:
    """Each label's place when its row is ordered by score, ties by class index (0 = first)."""
    own = scores.gather(1, labels[:, None])
    before = torch.arange(scores.shape[1])[None, :] < labels[:, None]
    return ((scores > own) | ((scores == own) & before)).sum(dim=1).tolist()
