"""KeySelection: a mode's histories from a reused selection equal a direct computation."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.runner.log_keys import KeySelection, strip_prefix

KEYS = [
    "train/loss", "train/loss_cls", "train/acc", "train/lr", "train/time", "trainloss",
    "train/trainloss", "val/acc", "val/loss", "valx", "test/time", "test/test/time", "lr",
]
PATTERNS = [re.compile(p) for p in (r".*(loss|time|data_time|grad_norm).*", "acc", ".*", "^$")]


def direct(scalars: dict[str, object], mode: str, keep_prefix: bool, pattern: re.Pattern[str]):
    """Every key matched afresh: the selection's reference."""
    names = {}
    for key, buffer in scalars.items():
        if key.startswith(mode):
            names[key if keep_prefix else strip_prefix(key, f"{mode}/")] = buffer
    return {name: (buffer, pattern.search(name) is not None) for name, buffer in names.items()}


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.lists(st.sampled_from(KEYS), max_size=5),
            st.sampled_from(["train", "val", "test"]),
            st.booleans(),
            st.sampled_from(PATTERNS),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_a_reused_selection_equals_matching_every_key_afresh(rounds):
    selection = KeySelection()
    scalars: dict[str, object] = {}
    for new_keys, mode, keep_prefix, pattern in rounds:
        for key in new_keys:
            scalars[key] = object() if key not in scalars else scalars[key]
        got = selection.histories(scalars, mode, keep_prefix, pattern)
        expected = direct(scalars, mode, keep_prefix, pattern)
        assert list(got) == list(expected)
        assert all(got[n][0] is expected[n][0] and got[n][1] == expected[n][1] for n in got)


def test_a_same_name_keeps_the_first_position_and_the_last_history():
    first, second, other = object(), object(), object()
    scalars = {"trainloss": first, "train/acc": other, "train/trainloss": second}
    got = KeySelection().histories(scalars, "train", False, PATTERNS[0])
    assert list(got) == ["trainloss", "acc"]
    assert got["trainloss"] == (second, True) and got["acc"] == (other, False)
