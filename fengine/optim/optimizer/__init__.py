"""Optimizer wrappers and the optimizers they step (MMEngine's ``mmengine.optim.optimizer``)."""

from fengine.optim.optimizer.amp_optimizer_wrapper import AmpOptimWrapper
from fengine.optim.optimizer.base import BaseOptimWrapper, OptimWrapperError
from fengine.optim.optimizer.builder import (
    TORCH_OPTIMIZERS,
    build_optim_wrapper,
    register_torch_optimizers,
)
from fengine.optim.optimizer.default_constructor import DefaultOptimWrapperConstructor
from fengine.optim.optimizer.optimizer_wrapper import OptimWrapper
from fengine.optim.optimizer.optimizer_wrapper_dict import OptimWrapperDict
from fengine.optim.optimizer.pure_optimizers import SGD, Adam, AdamW
from fengine.optim.optimizer.pure_step import PureStepOptimizer

__all__ = [
    "SGD",
    "TORCH_OPTIMIZERS",
    "Adam",
    "AdamW",
    "AmpOptimWrapper",
    "BaseOptimWrapper",
    "DefaultOptimWrapperConstructor",
    "OptimWrapper",
    "OptimWrapperDict",
    "OptimWrapperError",
    "PureStepOptimizer",
    "build_optim_wrapper",
    "register_torch_optimizers",
]
