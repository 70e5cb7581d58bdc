"""atomic_write and append_text: whole replacement, no torn files, durable appends."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.utils import append_text, atomic_write


@settings(max_examples=25, deadline=None)
@given(st.lists(st.binary(max_size=200), min_size=1, max_size=5))
def test_atomic_write_leaves_exactly_the_last_content(tmp_path_factory, contents):
    folder = tmp_path_factory.mktemp("aw")
    target = folder / "sub" / "file.bin"
    for data in contents:
        atomic_write(target, data)
    assert target.read_bytes() == contents[-1]
    assert os.listdir(folder / "sub") == ["file.bin"]


def test_a_failed_replace_keeps_the_old_file_and_removes_the_temporary(tmp_path, monkeypatch):
    target = tmp_path / "ckpt"
    atomic_write(target, b"old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["ckpt"]


def test_atomic_write_wants_bytes(tmp_path):
    with pytest.raises(TypeError, match="bytes"):
        atomic_write(tmp_path / "x", "text")  # type: ignore[arg-type]


def test_append_text_appends_and_creates_folders(tmp_path):
    target = tmp_path / "a" / "log.json"
    append_text(target, "one\n")
    append_text(str(target), "two\n")
    assert target.read_text() == "one\ntwo\n"
