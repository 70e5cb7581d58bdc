"""Look-ups in evaluation results."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def get_metric_value(indicator: str, metrics: Mapping[str, Any]) -> Any:
    """The value of ``indicator``: a full key (``'coco/mAP'``) or a name without prefix (``'mAP'``).

    Raises:
        ValueError: no key matches, or a short name matches several prefixed keys.
    """
    if indicator in metrics:
        return metrics[indicator]
    candidates = [k for k in metrics if k.split("/")[-1] == indicator]
    if not candidates:
        raise ValueError(f"the indicator {indicator!r} matches no metric in {list(metrics)}")
    if len(candidates) > 1:
        raise ValueError(
            f"the indicator {indicator!r} is ambiguous: it matches {candidates}; use the full name"
        )
    return metrics[candidates[0]]
