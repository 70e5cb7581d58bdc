"""Rule inference shared by CheckpointHook and EarlyStopping (spec A17)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.hooks.rules import (
    DEFAULT_GREATER_KEYS,
    DEFAULT_LESS_KEYS,
    check_rule,
    infer_rule,
    is_better,
    worst_score,
)


@pytest.mark.parametrize("key", ["acc", "ACC", "mAP_50", "top1_acc", "precision", "coco/bbox_mAP"])
def test_greater_keys_are_inferred(key: str) -> None:
    assert infer_rule(key) == "greater"


@pytest.mark.parametrize("key", ["loss", "Loss", "ce_loss", "L1loss"])
def test_less_keys_are_inferred(key: str) -> None:
    assert infer_rule(key) == "less"


@pytest.mark.parametrize("key", ["recall", "f1"])
def test_unknown_key_names_key_and_both_lists(key: str) -> None:
    with pytest.raises(ValueError) as info:
        infer_rule(key)
    message = str(info.value)
    assert repr(key) in message
    assert "'mIoU'" in message and "'loss'" in message


def test_exact_match_beats_substring_and_user_lists_replace_defaults() -> None:
    # 'acc' is a substring of 'accloss', but an exact less match comes first.
    assert infer_rule("accloss", greater_keys=["acc"], less_keys=["accloss"]) == "less"
    assert infer_rule("recall", greater_keys=("recall",)) == "greater"
    with pytest.raises(ValueError):
        infer_rule("acc", greater_keys=["f1"], less_keys=[])


def test_default_lists() -> None:
    assert DEFAULT_LESS_KEYS == ("loss",)
    assert "mIoU" in DEFAULT_GREATER_KEYS and "AR@" in DEFAULT_GREATER_KEYS


@settings(max_examples=50, deadline=None)
@given(prefix=st.text(max_size=5), suffix=st.text(max_size=5))
def test_any_name_containing_loss_only_is_less(prefix: str, suffix: str) -> None:
    key = prefix + "loss" + suffix
    lowered = key.lower()
    if not any(k.lower() in lowered for k in DEFAULT_GREATER_KEYS):
        assert infer_rule(key) == "less"


def test_check_rule() -> None:
    assert check_rule("greater") == "greater"
    assert check_rule("less") == "less"
    with pytest.raises(KeyError, match="'max'"):
        check_rule("max")


@settings(max_examples=50, deadline=None)
@given(a=st.floats(allow_nan=False), b=st.floats(allow_nan=False))
def test_is_better_is_strict_and_worst_loses(a: float, b: float) -> None:
    assert is_better("greater", a, b) == (a > b)
    assert is_better("less", a, b) == (a < b)
    assert not is_better("greater", a, a)
    assert not is_better("greater", worst_score("greater"), a)
    assert not is_better("less", worst_score("less"), a)
    assert worst_score("greater") == -math.inf
