"""ConfigDict: attribute access at every depth, kept through copies and pickling."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.config import ConfigDict

_keys = st.sampled_from(["a", "b", "type", "lr"])
_trees = st.recursive(
    st.integers() | st.text(max_size=3) | st.none(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_keys, inner, max_size=3),
    max_leaves=12,
)


def _all_dicts_are_config_dicts(value: Any) -> bool:
    if isinstance(value, dict):
        return isinstance(value, ConfigDict) and all(map(_all_dicts_are_config_dicts, value.values()))
    if isinstance(value, list | tuple):
        return all(map(_all_dicts_are_config_dicts, value))
    return True


@given(st.dictionaries(_keys, _trees, max_size=4))
@settings(max_examples=30)
def test_nested_dicts_become_config_dicts_and_copies_stay_equal(tree: dict[str, Any]) -> None:
    cfg = ConfigDict(tree)
    assert cfg == tree and _all_dicts_are_config_dicts(cfg)
    for clone in (copy.deepcopy(cfg), pickle.loads(pickle.dumps(cfg)), cfg.copy()):
        assert clone == tree and type(clone) is ConfigDict
    assert _all_dicts_are_config_dicts(copy.deepcopy(cfg))


def test_attributes_read_and_write_keys_at_every_depth() -> None:
    cfg = ConfigDict(train_cfg=dict(max_epochs=2), hooks=[dict(type="A")], pair=(dict(x=1),))
    cfg.train_cfg.max_epochs = 3
    cfg.hooks[0].priority = "LOW"
    cfg.model = dict(backbone=dict(depth=50))
    cfg.model.backbone.depth += 1
    cfg.update(extra=dict(k=1))
    cfg.setdefault("more", dict(n=2)).n = 5
    assert cfg == {
        "train_cfg": {"max_epochs": 3}, "hooks": [{"type": "A", "priority": "LOW"}], "pair": ({"x": 1},),
        "model": {"backbone": {"depth": 51}}, "extra": {"k": 1}, "more": {"n": 5},
    }
    assert cfg.pair[0].x == 1 and cfg.extra.k == 1
    del cfg.extra
    assert "extra" not in cfg
    with pytest.raises(AttributeError, match=r"the config has no key 'nope'; it has \['hooks', 'model'"):
        cfg.nope  # noqa: B018
    with pytest.raises(AttributeError, match="no key 'nope'"):
        del cfg.nope
