"""Evaluation: metrics that process predictions batch by batch and an evaluator that runs them."""

from fengine.evaluator.evaluator import Evaluator
from fengine.evaluator.metric import BaseMetric, DumpResults
from fengine.evaluator.metrics import Accuracy
from fengine.evaluator.utils import get_metric_value

__all__ = ["Accuracy", "BaseMetric", "DumpResults", "Evaluator", "get_metric_value"]
