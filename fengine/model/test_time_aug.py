"""``BaseTTAModel``: run a model over every augmented view of a batch and merge the predictions."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from torch import nn

from fengine.model.base_model import BaseModel
from fengine.registry import MODELS


def split_views(data: Any) -> list[Any]:
    """Turn a batch of augmented views into one batch per view.

    ``{'inputs': [v0, v1], 'data_samples': [s0, s1]}`` becomes
    ``[{'inputs': v0, 'data_samples': s0}, {'inputs': v1, 'data_samples': s1}]``; a list or
    tuple of fields ``[[v0, v1], [s0, s1]]`` becomes ``[[v0, s0], [v1, s1]]``. Pure.

    Args:
        data: a dict of per-view lists, or a list/tuple of per-view lists.

    Returns:
        One batch per view, in view order.

    Raises:
        TypeError: ``data`` is neither a dict nor a list/tuple.
        ValueError: no fields, or fields with different numbers of views.
    """
    if isinstance(data, Mapping):
        fields = list(data.values())
    elif isinstance(data, list | tuple):
        fields = list(data)
    else:
        raise TypeError(
            f"TTA data must be a dict or a list/tuple of per-view lists, got {type(data).__name__}"
        )
    counts = {len(field) for field in fields}
    if len(counts) != 1:
        lengths = (
            {key: len(v) for key, v in data.items()}
            if isinstance(data, Mapping)
            else [len(v) for v in fields]
        )
        raise ValueError(
            f"every field of TTA data must hold one entry per view, got lengths {lengths}"
        )
    views = range(counts.pop())
    if isinstance(data, Mapping):
        return [{key: value[view] for key, value in data.items()} for view in views]
    return [[field[view] for field in fields] for view in views]


@MODELS.register_module()
class BaseTTAModel(BaseModel):
    """Test-time augmentation: ``test_step`` runs ``module.test_step`` once per view and merges.

    The batch holds every view of each sample: ``{'inputs': [view0_batch, view1_batch, ...],
    'data_samples': [...]}`` (or a list of such per-view lists). The predictions are regrouped
    per sample (a list, one entry per sample, each a tuple of that sample's predictions across
    views) and handed to :meth:`merge_preds`, which subclasses implement.

    Args:
        module: the model (an ``nn.Module`` with ``test_step``), or its config for ``MODELS``.
        tta_cfg: TTA settings for subclasses (stored as ``self.tta_cfg``).
        data_preprocessor: written into ``module``'s config when ``module`` is a dict.

    Raises:
        TypeError: ``module`` is neither a module nor a dict, or has no ``test_step``.
    """

    def __init__(
        self,
        module: nn.Module | Mapping[str, Any],
        tta_cfg: Mapping[str, Any] | None = None,
        data_preprocessor: Mapping[str, Any] | nn.Module | None = None,
    ) -> None:
        super().__init__()
        if isinstance(module, Mapping):
            cfg = dict(module)
            if data_preprocessor is not None:
                cfg["data_preprocessor"] = data_preprocessor
            module = MODELS.build(cfg)
        if not isinstance(module, nn.Module):
            raise TypeError(
                f"module must be an nn.Module or a config dict, got {type(module).__name__}: {module!r}"
            )
        if not callable(getattr(module, "test_step", None)):
            raise TypeError(
                f"the TTA module ({type(module).__name__}) must have a `test_step` method"
            )
        self.module = module
        self.tta_cfg = copy.deepcopy(tta_cfg)

    def merge_preds(self, data_samples_list: list[Any]) -> Any:
        """Merge each sample's predictions across views; subclasses implement it.

        Args:
            data_samples_list: one entry per sample, each a sequence of its predictions (one per
                view, in view order).

        Returns:
            The merged predictions, one per sample.

        Raises:
            NotImplementedError: always, here.
        """
        raise NotImplementedError(
            f"{type(self).__name__}.merge_preds(data_samples_list) is not implemented"
        )

    def test_step(self, data: Any) -> Any:
        """Predict every view with ``module.test_step`` and return :meth:`merge_preds` of them."""
        module: Any = self.module
        predictions = [module.test_step(view) for view in split_views(data)]
        return self.merge_preds(list(zip(*predictions)))

    def forward(self, inputs: Any, data_samples: Any = None, mode: str = "tensor") -> Any:
        """Not available: a TTA model only has ``test_step``.

        Raises:
            NotImplementedError: always (so ``val_step`` raises too).
        """
        raise NotImplementedError(
            f"{type(self).__name__} only supports test_step; it has no forward"
        )
