"""Visualizer: backends from configs, named instances, rank-0-only writes."""

from __future__ import annotations

import json
import uuid

import pytest

import fengine.dist
from fengine.registry import VISUALIZERS
from fengine.visualization import LocalVisBackend, Visualizer


def name() -> str:
    return f"vis-{uuid.uuid4().hex}"


def test_backends_from_configs_write_under_vis_data(tmp_path):
    vis = Visualizer(name(), vis_backends=[dict(type="LocalVisBackend")], save_dir=str(tmp_path))
    vis.add_scalars({"loss": 0.5}, step=2, file_path="stamp.json")
    vis.add_scalar("acc", 1, step=3)
    lines = (tmp_path / "vis_data" / "scalars.json").read_text().splitlines()
    assert [json.loads(x) for x in lines] == [{"loss": 0.5, "step": 2}, {"acc": 1, "step": 3}]
    assert (tmp_path / "vis_data" / "stamp.json").read_text() == lines[0] + "\n"
    vis.add_config({"a": 1})
    assert (tmp_path / "vis_data" / "config.py").read_text() == "a = 1\n"
    assert isinstance(vis.get_backend("LocalVisBackend"), LocalVisBackend)
    assert vis.get_backend("nope") is None
    vis.close()


def test_named_backends_and_explicit_save_dir(tmp_path):
    vis = Visualizer(
        name(),
        vis_backends=[
            dict(type="LocalVisBackend", name="a"),
            dict(type="LocalVisBackend", name="b", save_dir=str(tmp_path / "other")),
        ],
        save_dir=str(tmp_path),
    )
    vis.add_scalars({"x": 1})
    assert (tmp_path / "vis_data" / "scalars.json").exists()
    assert (tmp_path / "other" / "scalars.json").exists()
    with pytest.raises(ValueError, match="named 'LocalVisBackend'"):
        Visualizer(name(), vis_backends=[LocalVisBackend(str(tmp_path))] * 2)
    with pytest.raises(TypeError, match="vis_backends"):
        Visualizer(name(), vis_backends=["LocalVisBackend"])


def test_only_rank_zero_writes(tmp_path, monkeypatch):
    vis = Visualizer(name(), vis_backends=dict(type="LocalVisBackend"), save_dir=str(tmp_path))
    monkeypatch.setattr(fengine.dist, "get_rank", lambda group=None: 1)
    vis.add_scalars({"loss": 1.0})
    vis.add_config({"a": 1})
    assert not (tmp_path / "vis_data").exists()


def test_instances_and_subclasses_share_current(tmp_path):
    class MyVisualizer(Visualizer):
        pass

    first = Visualizer.get_instance(name(), save_dir=str(tmp_path))
    assert Visualizer.get_current_instance() is first
    sub = MyVisualizer.get_instance(name())
    assert Visualizer.get_current_instance() is sub
    assert MyVisualizer.get_current_instance() is sub
    assert Visualizer.get_instance(first.instance_name) is first
    vis = VISUALIZERS.build(dict(type="Visualizer", name=name()))
    assert Visualizer.get_current_instance() is vis  # built as a named global, as in MMEngine
    vis.dataset_meta = {"classes": ("a",)}
    assert vis.dataset_meta == {"classes": ("a",)}
