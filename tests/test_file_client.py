"""fengine.fileio's local storage objects under MMEngine's names: FileClient, LocalBackend, get_file_backend."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.fileio import FileClient, LocalBackend, get_file_backend

_part = st.text(alphabet="abc_.-1", min_size=1, max_size=5).filter(lambda p: p not in (".", ".."))


@settings(max_examples=10, deadline=None)
@given(
    parts=st.lists(_part, min_size=1, max_size=3),
    data=st.binary(max_size=64),
    text=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r"), max_size=20),  # read back with universal newlines, as MMEngine
)
def test_put_get_round_trip_and_queries(tmp_path_factory: pytest.TempPathFactory, parts: list[str], data: bytes, text: str) -> None:
    root = str(tmp_path_factory.mktemp("store"))
    for backend in (LocalBackend(), FileClient(), FileClient("disk"), FileClient.infer_client({"backend": "local"})):
        path = backend.join_path(root, "sub", *parts)
        assert path == os.path.join(root, "sub", *parts)
        backend.put(data, path)  # creates the folders
        assert backend.get(path) == data and backend.isfile(path) and backend.exists(path)
        backend.put_text(text, path)
        assert backend.get_text(path) == text
        with backend.get_local_path(path) as local:
            assert local == path
        with pytest.raises(IsADirectoryError, match="is a folder; use rmtree"):
            backend.remove(os.path.dirname(path))
        backend.remove(path)
        assert not backend.exists(path)
        assert backend.isdir(os.path.join(root, "sub"))
        backend.rmtree(os.path.join(root, "sub"))
        assert os.listdir(root) == []


def test_remote_backends_and_prefixes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"unsupported storage backend 'petrel'.*accepted: \['local', 'disk'\]"):
        FileClient("petrel")
    with pytest.raises(ValueError, match="unsupported storage prefix 's3'"):
        FileClient.infer_client(None, "s3://bucket/ckpt.pth")
    with pytest.raises(ValueError, match="unsupported storage prefix 'http'"):
        get_file_backend("http://host/x.pth")
    with pytest.raises(ValueError, match="unsupported storage backend 'memcached'"):
        get_file_backend("x.pth", backend_args={"backend": "memcached"})
    assert isinstance(get_file_backend("work_dirs/x.pth"), LocalBackend)


def test_checkpoint_hook_storage_objects() -> None:
    """MMEngine's CheckpointHook exposes its storage: a FileClient, and a LocalBackend unless
    ``file_client_args`` is given (then the backend is the client)."""
    from fengine.hooks import CheckpointHook

    hook = CheckpointHook()
    assert isinstance(hook.file_client, FileClient) and type(hook.file_backend) is LocalBackend
    legacy = CheckpointHook(file_client_args={"backend": "disk"})
    assert legacy.file_backend is legacy.file_client
    with pytest.raises(ValueError, match="unsupported storage backend 'petrel'"):
        CheckpointHook(backend_args={"backend": "petrel"})


PYTHON = os.environ.get("MMENGINE_PYTHON", "/tmp/mmenv/bin/python")

#: The same steps run here with fengine's classes and in MMEngine's interpreter with its own.
_ANSWERS = """
def answers(cases, LocalBackend, FileClient):
    out = []
    for root, parts in cases:
        b, c = LocalBackend(), FileClient("disk")
        path = b.join_path(root, *parts)
        c.put(b"x", path)
        out.append([path, c.join_path(root, *parts), b.isfile(path), b.get(path).decode(), b.exists(root + "/nope")])
    return out
"""

_MMENGINE = _ANSWERS + """
import json, sys
from mmengine.fileio import FileClient, LocalBackend
print(json.dumps(answers(json.loads(sys.argv[1]), LocalBackend, FileClient)))
"""


@pytest.mark.skipif(not os.path.exists(PYTHON), reason=f"no interpreter with MMEngine at {PYTHON}")
def test_same_paths_and_answers_as_mmengine(tmp_path: Path) -> None:
    cases = [[str(tmp_path / "a"), ["b", "c.pth"]], [str(tmp_path), ["x_1.json"]], [str(tmp_path / "d") + "/", ["e"]]]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([PYTHON, "-c", _MMENGINE, json.dumps(cases)], capture_output=True, text=True, check=True, env=env)
    theirs = json.loads(done.stdout.strip().splitlines()[-1])  # MMEngine may print notices first
    scope: dict[str, Any] = {}
    exec(_ANSWERS, scope)
    assert scope["answers"](cases, LocalBackend, FileClient) == theirs
