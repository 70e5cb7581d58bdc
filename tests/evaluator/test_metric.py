"""BaseMetric and DumpResults: process/evaluate cycle, prefixes, clear errors."""

from __future__ import annotations

import pickle
import uuid

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import fengine.evaluator.metric as metric_module
from fengine.evaluator import BaseMetric, DumpResults
from fengine.logging import MMLogger
from fengine.registry import METRICS


class Accuracy(BaseMetric):
    default_prefix = "acc"

    def process(self, data_batch, data_samples):
        for sample in data_samples:
            self.results.append(int(sample["pred"] == sample["label"]))

    def compute_metrics(self, results):
        return {"top1": sum(results) / len(results), "n": len(results)}


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2)), min_size=1, max_size=5),
        min_size=1,
        max_size=6,
    )
)
def test_evaluate_reduces_every_processed_sample_and_clears(batches):
    metric = Accuracy()
    for batch in batches:
        metric.process(None, [{"pred": p, "label": y} for p, y in batch])
    flat = [int(p == y) for batch in batches for p, y in batch]
    metrics = metric.evaluate(len(flat))
    assert metrics == {"acc/top1": sum(flat) / len(flat), "acc/n": len(flat)}
    assert metric.results == []


def test_size_cuts_the_padding_samples():
    metric = Accuracy(prefix="val")
    metric.process(None, [{"pred": 1, "label": 1}] * 3 + [{"pred": 0, "label": 1}])
    assert metric.evaluate(3) == {"val/top1": 1.0, "val/n": 3}


def test_no_prefix_keeps_plain_names_and_warns(tmp_path):
    class Plain(Accuracy):
        default_prefix = None

    log_file = tmp_path / "run.log"
    logger = MMLogger.get_instance(f"metric-{uuid.uuid4().hex}", log_file=str(log_file))
    metric = Plain()
    for handler in logger.handlers:
        handler.close()
    assert "WARNING - The prefix is not set in metric class Plain." in log_file.read_text()
    metric.process(None, [{"pred": 0, "label": 0}])
    assert metric.evaluate(1) == {"top1": 1.0, "n": 1}


def test_results_are_moved_to_the_cpu_before_compute(monkeypatch):
    seen = []

    class Keep(BaseMetric):
        def process(self, data_batch, data_samples):
            self.results.extend(data_samples)

        def compute_metrics(self, results):
            seen.extend(results)
            return {}

    moved = []
    original = torch.Tensor.to

    def recording_to(self, *args, **kwargs):
        moved.append(args)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", recording_to)
    metric = Keep(prefix="k")
    metric.process(None, [{"t": torch.ones(1)}, (torch.zeros(1), 3)])
    metric.evaluate(2)
    assert moved == [("cpu",), ("cpu",)]
    assert seen[1][1] == 3


def test_a_metric_without_compute_metrics_is_rejected_with_the_fix():
    class Incomplete(BaseMetric):
        def process(self, data_batch, data_samples):
            pass

    with pytest.raises(
        TypeError, match=r"Incomplete cannot be created: it must implement compute_metrics"
    ):
        Incomplete()


def test_compute_metrics_must_return_a_dict():
    class Bad(Accuracy):
        def compute_metrics(self, results):
            return 1.0

    metric = Bad()
    metric.process(None, [{"pred": 0, "label": 0}])
    with pytest.raises(TypeError, match="must return a dict, got float"):
        metric.evaluate(1)


def test_constructor_arguments_are_checked():
    with pytest.raises(ValueError, match="collect_device"):
        Accuracy(collect_device="tpu")
    with pytest.raises(ValueError, match="collect_dir"):
        Accuracy(collect_device="gpu", collect_dir="/tmp/x")


def test_only_rank_zero_computes_and_the_result_is_broadcast(monkeypatch):
    monkeypatch.setattr(metric_module, "is_main_process", lambda: False)
    monkeypatch.setattr(
        metric_module, "broadcast_object_list", lambda box: box.__setitem__(0, {"from": 0})
    )
    metric = Accuracy()
    metric.process(None, [{"pred": 0, "label": 0}])
    assert metric.evaluate(1) == {"from": 0}


def test_dump_results_writes_the_predictions(tmp_path):
    path = tmp_path / "preds.pkl"
    metric = METRICS.build(dict(type="DumpResults", out_file_path=str(path)))
    assert isinstance(metric, DumpResults)
    metric.process(None, [{"pred": torch.tensor([1.0])}, {"pred": torch.tensor([2.0])}])
    assert metric.evaluate(2) == {}
    loaded = pickle.loads(path.read_bytes())
    assert [x["pred"].item() for x in loaded] == [1.0, 2.0]
    with pytest.raises(ValueError, match=r"The output file must be a pkl file, got '.*preds\.json'"):
        DumpResults(str(tmp_path / "preds.json"))
