"""Accuracy: top-k fractions against direct torch computations, both input shapes, padding, errors."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.evaluator import Accuracy, Evaluator
from fengine.registry import METRICS


@st.composite
def predictions(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    n = draw(st.integers(1, 40))
    classes = draw(st.integers(2, 8))
    seed = draw(st.integers(0, 2**16))
    generator = torch.Generator().manual_seed(seed)
    # Scores drawn from a few levels make ties common; they are broken by class index.
    scores = torch.randint(0, 4, (n, classes), generator=generator).float()
    labels = torch.randint(0, classes, (n,), generator=generator)
    return scores, labels


def _reference(scores: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    # Descending scores, equal scores in class order: a stable sort of the negated scores.
    top = torch.sort(-scores, dim=1, stable=True).indices[:, :k]
    return int((top == labels[:, None]).any(dim=1).sum()) / len(labels)


@given(
    predictions(),
    st.lists(st.integers(1, 10), min_size=1, max_size=3, unique=True),
    st.integers(1, 7),
)
@settings(max_examples=40)
def test_topk_fractions_match_torch_over_any_batching(
    data: tuple[torch.Tensor, torch.Tensor], ks: list[int], batch: int
) -> None:
    scores, labels = data
    metric = Accuracy(topk=ks)
    for start in range(0, len(labels), batch):
        metric.process({}, (scores[start : start + batch], labels[start : start + batch]))
    result = metric.evaluate(len(labels))
    expected = {
        ("accuracy" if k == 1 else f"accuracy_top{k}"): _reference(scores, labels, k) for k in ks
    }
    assert result == pytest.approx(expected, abs=1e-12)
    assert metric.results == []


@given(predictions())
@settings(max_examples=30)
def test_top1_is_argmax_and_per_sample_dicts_agree(data: tuple[torch.Tensor, torch.Tensor]) -> None:
    scores, labels = data
    pair, by_score, by_label = Accuracy(), Accuracy(), Accuracy()
    pair.process({}, (scores, labels))
    by_score.process({}, [{"pred_score": s, "gt_label": int(y)} for s, y in zip(scores, labels)])
    by_label.process(
        {}, [{"pred_label": s.argmax(), "gt_label": y} for s, y in zip(scores, labels)]
    )
    expected = int((scores.argmax(1) == labels).sum()) / len(labels)
    for metric in (pair, by_score, by_label):
        assert metric.evaluate(len(labels)) == {"accuracy": pytest.approx(expected, abs=1e-12)}


def test_padding_beyond_the_dataset_size_is_dropped_and_prefix_applies() -> None:
    # Three real samples (two right), then a repeated padding sample that is wrong.
    scores = torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.7, 0.3], [0.1, 0.9]])
    labels = torch.tensor([0, 1, 1, 0])
    evaluator = Evaluator(METRICS.build({"type": "Accuracy", "prefix": "cls"}))
    evaluator.process([scores, labels])
    assert evaluator.evaluate(3) == {"cls/accuracy": pytest.approx(2 / 3)}


def test_bad_arguments_and_inputs_are_named() -> None:
    with pytest.raises(ValueError, match=r"topk must be an int >= 1.*got 0"):
        Accuracy(topk=0)
    with pytest.raises(ValueError, match=r"topk.*got \[\]"):
        Accuracy(topk=[])
    with pytest.raises(ValueError, match=r"\(N, C\).*\(3,\) and \(2,\)"):
        Accuracy().process({}, (torch.zeros(3), torch.zeros(2)))
    with pytest.raises(TypeError, match="gt_label"):
        Accuracy().process({}, [{"pred_score": torch.zeros(3)}])
    with pytest.raises(ValueError, match="needs 'pred_score'"):
        Accuracy(topk=(1, 2)).process({}, [{"pred_label": 1, "gt_label": 1}])
