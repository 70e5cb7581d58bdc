"""Checkpoint files: atomic writes, checksums, safe loading, key revision, weight application."""

from __future__ import annotations

import errno
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from fengine.runner import checkpoint as ckpt
from fengine.runner.checkpoint import CheckpointError


def _payload() -> dict[str, Any]:
    return {
        "meta": {"epoch": 1, "iter": 4},
        "state_dict": OrderedDict(weight=torch.arange(6.0).reshape(2, 3), bias=torch.zeros(2)),
        "hooks": {"H": (1, [2.5, None], {"k": "v"})},
    }


def test_save_then_read_round_trips_and_stamps_a_checksum(tmp_path: Any) -> None:
    path = str(tmp_path / "a.pth")
    payload = _payload()
    ckpt.save_checkpoint(payload, path)
    assert os.listdir(tmp_path) == ["a.pth"]  # no temporary file left behind
    loaded = ckpt.read_checkpoint(path)
    assert loaded["meta"]["checksum"] == ckpt.content_digest(payload)
    assert torch.equal(loaded["state_dict"]["weight"], payload["state_dict"]["weight"])
    assert loaded["hooks"] == {"H": (1, [2.5, None], {"k": "v"})}


def test_damage_is_detected_and_named(tmp_path: Any) -> None:
    path = str(tmp_path / "a.pth")
    ckpt.save_checkpoint(_payload(), path)
    tampered = torch.load(path, weights_only=True)
    tampered["state_dict"]["weight"][0, 0] += 1
    torch.save(tampered, path)
    with pytest.raises(CheckpointError, match=r"a\.pth' is damaged: its content digest"):
        ckpt.read_checkpoint(path)
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cannot read checkpoint .*a\.pth"):
        ckpt.read_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        ckpt.read_checkpoint(str(tmp_path / "missing.pth"))


class _Opaque:
    pass


def test_pickled_objects_are_refused_and_named(tmp_path: Any) -> None:
    path = str(tmp_path / "a.pth")
    torch.save({"meta": {}, "obj": _Opaque()}, path)
    with pytest.raises(CheckpointError, match=r"holds pickled objects \(test_checkpoint_io\._Opaque\), which a checkpoint may not hold"):
        ckpt.read_checkpoint(path)


def test_a_failed_write_leaves_the_previous_file_intact(tmp_path: Any, monkeypatch: Any) -> None:
    path = str(tmp_path / "a.pth")
    ckpt.save_checkpoint(_payload(), path)

    def no_space(*args: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    newer = _payload()
    newer["meta"]["epoch"] = 2
    with pytest.raises(OSError, match="No space"):
        ckpt.save_checkpoint(newer, path)
    monkeypatch.undo()
    assert ckpt.read_checkpoint(path)["meta"]["epoch"] == 1
    assert os.listdir(tmp_path) == ["a.pth"]


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.floats(allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=8),
    st.data(),
)
def test_digest_changes_with_any_stored_number(values: list[float], data: st.DataObject) -> None:
    tensor = torch.tensor(values)
    base = {"meta": {"epoch": 1}, "state_dict": {"w": tensor}}
    same = {"meta": {"epoch": 1, "checksum": "ignored"}, "state_dict": {"w": tensor.clone()}}
    assert ckpt.content_digest(base) == ckpt.content_digest(same)
    index = data.draw(st.integers(0, len(values) - 1))
    changed = tensor.clone()
    changed[index] = torch.nextafter(changed[index], torch.tensor(float("inf")))
    assert ckpt.content_digest({**base, "state_dict": {"w": changed}}) != ckpt.content_digest(base)
    assert ckpt.content_digest({**base, "meta": {"epoch": 2}}) != ckpt.content_digest(base)


def test_revise_keys_and_last_checkpoint(tmp_path: Any) -> None:
    assert ckpt.revise_keys_of({"module.a": 1, "b.module.c": 2}, [(r"^module\.", "")]) == {"a": 1, "b.module.c": 2}
    assert ckpt.find_latest_checkpoint(str(tmp_path)) is None
    ckpt.write_last_checkpoint(str(tmp_path), "/x/epoch_3.pth")
    assert ckpt.find_latest_checkpoint(str(tmp_path)) == "/x/epoch_3.pth"


def test_apply_state_dict_names_mismatches(tmp_path: Any) -> None:
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    state = {"0.weight": torch.ones(4, 2), "0.bias": torch.ones(3), "extra": torch.zeros(1)}
    warnings: list[str] = []
    ckpt.apply_state_dict(model, state, strict=False, source="f.pth", warn=warnings.append)
    assert torch.equal(model[0].bias, torch.ones(3))
    assert model[0].weight.shape == (3, 2)
    (message,) = warnings
    assert "0.weight: checkpoint (4, 2) vs model (3, 2)" in message
    assert "unexpected keys in the checkpoint: extra" in message
    assert "missing keys in the checkpoint: 1.weight, 1.bias" in message
    with pytest.raises(CheckpointError, match=r"shape mismatch: 0\.weight"):
        ckpt.apply_state_dict(model, state, strict=True, source="f.pth", warn=warnings.append)


def test_module_level_load_checkpoint_strips_the_wrapper_prefix(tmp_path: Any) -> None:
    source = nn.Linear(2, 1)
    path = str(tmp_path / "w.pth")
    ckpt.save_checkpoint({"meta": {}, "state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    target = nn.Linear(2, 1)
    ckpt.load_checkpoint(target, path, strict=True)
    assert torch.equal(target.weight, source.weight) and torch.equal(target.bias, source.bias)
