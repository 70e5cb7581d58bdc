"""Which direction of a metric counts as better: the rule shared by CheckpointHook and EarlyStopping.

A metric's rule is ``'greater'`` (higher is better, e.g. accuracy) or ``'less'`` (lower is better,
e.g. a loss). When the user names none, it is inferred from the metric's name against two key
lists, case-insensitively, in this order:

1. the name equals a greater key → ``'greater'``;
2. the name equals a less key → ``'less'``;
3. some greater key is a substring of the name → ``'greater'``;
4. some less key is a substring of the name → ``'less'``;
5. otherwise the rule cannot be inferred (``ValueError``).

So ``'top1_acc'`` and ``'coco/bbox_mAP'`` are greater, ``'ce_loss'`` and ``'L1loss'`` less, and
``'recall'`` or ``'f1'`` need an explicit rule or key list.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

Rule = Literal["greater", "less"]

#: Metric names (or parts of names) for which a higher value is better.
DEFAULT_GREATER_KEYS: tuple[str, ...] = (
    "acc",
    "top",
    "AR@",
    "auc",
    "precision",
    "mAP",
    "mDice",
    "mIoU",
    "mAcc",
    "aAcc",
)
#: Metric names (or parts of names) for which a lower value is better.
DEFAULT_LESS_KEYS: tuple[str, ...] = ("loss",)

RULES: tuple[Rule, ...] = ("greater", "less")


def infer_rule(
    key: str,
    greater_keys: Sequence[str] = DEFAULT_GREATER_KEYS,
    less_keys: Sequence[str] = DEFAULT_LESS_KEYS,
) -> Rule:
    """Infer whether a higher or a lower value of metric ``key`` is better.

    Exact (case-insensitive) matches are tried before substring matches, and greater keys before
    less keys at each stage, so ``'loss'`` in ``less_keys`` wins over a greater key that merely
    occurs inside ``'loss'``.

    Args:
        key: the metric's name, e.g. ``'acc'`` or ``'coco/bbox_mAP'``.
        greater_keys: names for which higher is better (replace the defaults when given).
        less_keys: names for which lower is better (replace the defaults when given).

    Returns:
        ``'greater'`` or ``'less'``.

    Raises:
        ValueError: no key list matches ``key``; the message names both lists.
    """
    lowered = key.lower()
    greater = [k.lower() for k in greater_keys]
    less = [k.lower() for k in less_keys]
    if lowered in greater:
        return "greater"
    if lowered in less:
        return "less"
    if any(k in lowered for k in greater):
        return "greater"
    if any(k in lowered for k in less):
        return "less"
    raise ValueError(
        f"Cannot infer the rule for key {key!r}: it matches none of greater_keys "
        f"{list(greater_keys)} and none of less_keys {list(less_keys)}; pass rule='greater' or "
        "rule='less', or add the key to greater_keys/less_keys"
    )


def check_rule(rule: object, name: str = "rule") -> Rule:
    """Return ``rule`` if it is ``'greater'`` or ``'less'``.

    Args:
        rule: the value to check.
        name: the argument's name, for the message.

    Returns:
        ``rule``, typed as :data:`Rule`.

    Raises:
        KeyError: any other value (a ``KeyError``, as MMEngine raises for unknown rules).
    """
    if rule == "greater":
        return "greater"
    if rule == "less":
        return "less"
    raise KeyError(f"{name} must be 'greater' or 'less', got {rule!r}")


def worst_score(rule: Rule) -> float:
    """The starting best score: every finite score beats it (``-inf`` or ``+inf``).

    Args:
        rule: the comparison rule.

    Returns:
        ``-inf`` for ``'greater'``, ``+inf`` for ``'less'``.
    """
    return -math.inf if rule == "greater" else math.inf


def is_better(rule: Rule, score: float, best: float) -> bool:
    """Whether ``score`` strictly improves on ``best`` under ``rule``.

    Args:
        rule: ``'greater'`` (``score > best``) or ``'less'`` (``score < best``).
        score: the new value.
        best: the best value so far.

    Returns:
        The strict comparison's result (``False`` for equal scores and for NaN).
    """
    return score > best if rule == "greater" else score < best
