"""Evaluator: several metrics, configs, merged results, offline evaluation."""

from __future__ import annotations

import pytest

from fengine.evaluator import BaseMetric, Evaluator, get_metric_value
from fengine.registry import EVALUATOR, METRICS


@METRICS.register_module(force=True)
class CountingMetric(BaseMetric):
    """Counts samples and remembers what it was handed."""

    default_prefix = "count"

    def __init__(self, prefix=None, collect_device="cpu"):
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.batches = []

    def process(self, data_batch, data_samples):
        self.batches.append(data_batch)
        self.results.extend(data_samples)

    def compute_metrics(self, results):
        return {"n": len(results), "sum": sum(r["v"] for r in results)}


class Element:
    """Stands for a data element (has metainfo_keys and to_dict)."""

    def __init__(self, v):
        self.v = v

    def metainfo_keys(self):
        return []

    def to_dict(self):
        return {"v": self.v}


def test_several_metrics_from_objects_and_configs_are_merged():
    evaluator = EVALUATOR.build(
        dict(
            type="Evaluator", metrics=[dict(type="CountingMetric"), CountingMetric(prefix="other")]
        )
    )
    evaluator.dataset_meta = {"classes": ("a", "b")}
    assert all(m.dataset_meta == {"classes": ("a", "b")} for m in evaluator.metrics)
    evaluator.process([{"v": 1}, Element(2)], data_batch={"inputs": [0, 1]})
    evaluator.process([{"v": 3}])
    assert evaluator.evaluate(3) == {"count/n": 3, "count/sum": 6, "other/n": 3, "other/sum": 6}
    assert evaluator.metrics[0].batches == [{"inputs": [0, 1]}, None]


def test_single_metric_and_dict_config():
    assert len(Evaluator(CountingMetric()).metrics) == 1
    assert isinstance(Evaluator(dict(type="CountingMetric")).metrics[0], CountingMetric)


def test_duplicate_names_are_an_error_naming_them():
    evaluator = Evaluator([CountingMetric(), CountingMetric()])
    evaluator.process([{"v": 1}])
    with pytest.raises(ValueError, match=r"\['count/n', 'count/sum'\].*prefix"):
        evaluator.evaluate(1)


def test_bad_metrics_are_rejected():
    with pytest.raises(TypeError, match=r"metrics\[1\]"):
        Evaluator([CountingMetric(), "accuracy"])
    with pytest.raises(KeyError, match="NoSuchMetric"):
        Evaluator(dict(type="NoSuchMetric"))


def test_offline_evaluate_chunks_predictions_and_collates_inputs():
    evaluator = Evaluator(CountingMetric())
    samples = [{"v": i} for i in range(5)]
    data = [{"inputs": i} for i in range(5)]
    assert evaluator.offline_evaluate(samples, data, chunk_size=2) == {
        "count/n": 5,
        "count/sum": 10,
    }
    assert evaluator.metrics[0].batches == [{"inputs": [0, 1]}, {"inputs": [2, 3]}, {"inputs": [4]}]
    with pytest.raises(ValueError, match="same length"):
        evaluator.offline_evaluate(samples, data[:2])


def test_get_metric_value_by_full_or_short_name():
    metrics = {"coco/mAP": 0.5, "acc/top1": 0.9, "x/top1": 0.1}
    assert get_metric_value("coco/mAP", metrics) == 0.5
    assert get_metric_value("mAP", metrics) == 0.5
    with pytest.raises(ValueError, match="ambiguous"):
        get_metric_value("top1", metrics)
    with pytest.raises(ValueError, match="matches no metric"):
        get_metric_value("f1", metrics)
