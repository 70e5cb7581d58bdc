"""Scalar and config recording: the Visualizer and its backends."""

from fengine.visualization.trackers import MLflowVisBackend, WandbVisBackend
from fengine.visualization.vis_backend import (
    BaseVisBackend,
    LocalVisBackend,
    TensorboardVisBackend,
)
from fengine.visualization.visualizer import Visualizer

__all__ = [
    "BaseVisBackend",
    "LocalVisBackend",
    "MLflowVisBackend",
    "TensorboardVisBackend",
    "Visualizer",
    "WandbVisBackend",
]
