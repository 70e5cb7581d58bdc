"""fengine.fileio: load/dump by extension, atomically written."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.fileio import dump, load
from fengine.utils import mkdir_or_exist

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=4),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=10,
)


@given(_json, st.sampled_from(["a.json", "a.bin"]))
@settings(max_examples=25)
def test_round_trip(tmp_path_factory: pytest.TempPathFactory, value: Any, name: str) -> None:
    path = tmp_path_factory.mktemp("io") / name
    fmt = "json" if name.endswith(".bin") else None
    dump(value, path, file_format=fmt)
    assert load(path, file_format=fmt) == value


def test_pickles_are_written_but_never_loaded(tmp_path: Path) -> None:
    dump({"a": [1, 2]}, tmp_path / "a.pkl")
    assert pickle.loads((tmp_path / "a.pkl").read_bytes()) == {"a": [1, 2]}
    with pytest.raises(ValueError, match=r"does not unpickle '.*a\.pkl': loading a pickle can run any code"):
        load(tmp_path / "a.pkl")


def test_unknown_format_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unsupported file format 'txt' for '.*a\.txt'"):
        dump({}, tmp_path / "a.txt")


def test_mkdir_or_exist(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b"
    mkdir_or_exist(target)
    mkdir_or_exist(target)
    mkdir_or_exist("")
    assert target.is_dir()
