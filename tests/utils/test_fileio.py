"""atomic_write and append_text: whole replacement, no torn files, durable appends."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.utils import append_text, atomic_write, sync_appended


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


def _record_fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    sync_appended()  # appends of earlier tests
    synced: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else str(fd))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return synced


def test_appends_are_flushed_at_once_and_fsynced_in_one_batch(tmp_path, monkeypatch):
    synced = _record_fsyncs(monkeypatch)
    log, other = tmp_path / "scalars.json", tmp_path / "run.json"
    for i in range(3):
        append_text(log, f"{i}\n")
        append_text(other, f"{i}\n")
        assert log.read_text() == "".join(f"{j}\n" for j in range(i + 1))  # visible at once
    assert synced == []
    sync_appended()
    assert sorted(synced) == sorted([str(log), str(other)])  # one fsync per file, not per line
    sync_appended()
    assert len(synced) == 2


def test_atomic_write_first_makes_earlier_appends_durable(tmp_path, monkeypatch):
    synced = _record_fsyncs(monkeypatch)
    log, checkpoint = tmp_path / "scalars.json", tmp_path / "epoch_1.pth"
    append_text(log, "line\n")
    atomic_write(checkpoint, b"weights")
    assert synced[0] == str(log)  # the log line is on disk before the checkpoint appears
    assert checkpoint.read_bytes() == b"weights"


def test_sync_skips_files_removed_since_their_append(tmp_path):
    target = tmp_path / "gone.json"
    append_text(target, "x\n")
    target.unlink()
    sync_appended()  # no error
    append_text(target, "y\n")
    assert target.read_text() == "y\n"


@settings(max_examples=30, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(exclude_categories=("Cs",))), min_size=1, max_size=5))
def test_append_text_writes_the_bytes_of_a_text_mode_append(tmp_path_factory, pieces):
    folder = tmp_path_factory.mktemp("append")
    ours, reference = folder / "ours.json", folder / "reference.json"
    for piece in pieces:
        append_text(ours, piece + "\n")
        with open(reference, "a", encoding="utf-8") as handle:
            handle.write(piece + "\n")
    assert ours.read_bytes() == reference.read_bytes()
    assert os.stat(ours).st_mode == os.stat(reference).st_mode


_names = st.lists(
    st.tuples(st.sampled_from(["", "sub", ".hid", "sub/deep"]), st.sampled_from(["a.py", "B.PY", ".x.py", "c.json", "d.Log"])),
    max_size=8,
    unique=True,
)


@settings(max_examples=20, deadline=None)
@given(files=_names, suffix=st.sampled_from([None, ".py", (".py", ".json"), ".log"]), recursive=st.booleans(), case_sensitive=st.booleans())
def test_scandir_lists_visible_files_by_suffix(tmp_path_factory, files, suffix, recursive, case_sensitive):
    from fengine.utils import scandir

    root = tmp_path_factory.mktemp("scan")
    for folder, name in files:
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / name).write_text("x")
    ends = (suffix,) if isinstance(suffix, str) else suffix

    def wanted(folder, name):
        shown = name if case_sensitive else name.lower()
        deep_ok = folder == "" or recursive
        return deep_ok and not name.startswith(".") and (ends is None or shown.endswith(tuple(e if case_sensitive else e.lower() for e in ends)))

    expected = sorted(os.path.join(folder, name) if folder else name for folder, name in files if wanted(folder, name))
    assert sorted(scandir(root, suffix, recursive=recursive, case_sensitive=case_sensitive)) == expected
    assert sorted(scandir(str(root), suffix, recursive, case_sensitive)) == expected


def test_scandir_rejects_bad_arguments(tmp_path):
    from fengine.utils import scandir

    with pytest.raises(TypeError, match=r'"dir_path" must be a string or Path object, got 3'):
        next(iter(scandir(3)))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r'"suffix" must be a string or tuple of strings, got \[\'.py\'\]'):
        scandir(tmp_path, [".py"])  # type: ignore[arg-type]
