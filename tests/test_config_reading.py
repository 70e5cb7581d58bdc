"""Config files beyond plain Python: attribute access, JSON/YAML, substitutions, dump, imports."""

from __future__ import annotations

import argparse
import json
import pickle
import sys
from pathlib import Path

import pytest

from fengine.config import Config, ConfigDict, ConfigError, DictAction
from fengine.registry import METRICS, Registry


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_nested_dicts_read_and_write_as_attributes_and_stay_dicts() -> None:
    cfg = Config({"model": {"backbone": {"depth": 50}}, "hooks": [{"type": "A"}]})
    assert cfg.model.backbone.depth == 50 and cfg.hooks[0].type == "A"
    cfg.model.neck = {"channels": 8}
    assert cfg.model.neck.channels == 8 and isinstance(cfg.model.neck, ConfigDict)
    cfg.model.update(head={"n": 1})
    assert cfg.model.head.n == 1
    assert cfg.to_dict() == {
        "model": {"backbone": {"depth": 50}, "neck": {"channels": 8}, "head": {"n": 1}},
        "hooks": [{"type": "A"}],
    }
    assert type(cfg.to_dict()["model"]) is dict
    with pytest.raises(AttributeError, match=r"the config has no key 'nope'; it has \['backbone', 'head', 'neck'\]"):
        cfg.model.nope  # noqa: B018
    clone = pickle.loads(pickle.dumps(cfg))
    assert clone == cfg and isinstance(clone.model, ConfigDict) and clone.filename is None
    assert repr(cfg).startswith("Config (path: None): {'model': {'backbone'")


def test_json_and_yaml_configs_inherit_and_refer_to_their_bases(tmp_path: Path) -> None:
    _write(tmp_path, "base.py", "model = dict(type='Net', depth=2)\nlr = 0.1\n")
    child = _write(tmp_path, "child.json", json.dumps({
        "_base_": ["base.py"], "model": {"depth": 4}, "copy": "{{_base_.model}}", "lr2": "{{ _base_.lr }}"
    }))
    cfg = Config.fromfile(child)
    assert cfg.to_dict() == {"model": {"type": "Net", "depth": 4}, "lr": 0.1, "copy": {"type": "Net", "depth": 2}, "lr2": 0.1}
    pytest.importorskip("yaml")
    grandchild = _write(tmp_path, "grandchild.yaml", "_base_: child.json\nlr: 0.5\nsame: {{_base_.lr2}}\n")
    assert Config.fromfile(grandchild).to_dict() == {**cfg.to_dict(), "lr": 0.5, "same": 0.1}
    cfg.dump(tmp_path / "dumped.yaml")
    assert Config.fromfile(tmp_path / "dumped.yaml") == cfg


def test_yaml_without_pyyaml_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "yaml", None)
    path = _write(tmp_path, "c.yml", "a: 1\n")
    with pytest.raises(ConfigError, match=r"c\.yml: reading YAML configs needs PyYAML \(pip install pyyaml\)"):
        Config.fromfile(path)
    with pytest.raises(ConfigError, match=r"writing YAML needs PyYAML"):
        Config({"a": 1}).dump(tmp_path / "out.yaml")
    assert not (tmp_path / "out.yaml").exists()


def test_python_bases_are_copies_and_substitutions_follow_mmengine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(tmp_path, "base.py", "model = dict(type='Net', depth=2)\n")
    child = _write(tmp_path, "child.py", (
        "_base_ = ['base.py']\n"
        "a = _base_.model\n"
        "a.type = 'Other'\n"
        "b = {{_base_.model.depth}}\n"
        "root = '{{$DATA_ROOT:/data/}}'\n"
        "n = {{'$NUM:3'}}\n"
        "name = '{{fileBasenameNoExtension}}{{fileExtname}}'\n"
    ))
    monkeypatch.delenv("DATA_ROOT", raising=False)
    monkeypatch.setenv("NUM", "7")
    cfg = Config.fromfile(child)
    assert cfg.to_dict() == {
        "model": {"type": "Net", "depth": 2}, "a": {"type": "Other", "depth": 2}, "b": 2,
        "root": "/data/", "n": 7, "name": "child.py",
    }
    _write(tmp_path, "needs.py", "root = '{{$NOT_SET_ANYWHERE}}'\n")
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    with pytest.raises(ConfigError, match=r"names the environment variable 'NOT_SET_ANYWHERE', which is not set"):
        Config.fromfile(tmp_path / "needs.py")
    _write(tmp_path, "missing.json", json.dumps({"_base_": "base.py", "x": "{{_base_.model.width}}"}))
    with pytest.raises(ConfigError, match=r"_base_\.model\.width: _base_\.model has no 'width'"):
        Config.fromfile(tmp_path / "missing.json")


def test_dump_writes_standalone_files_atomically(tmp_path: Path) -> None:
    _write(tmp_path, "base.py", "optimizer = dict(type='SGD', lr=0.02)\n")
    cfg = Config.fromfile(_write(tmp_path, "child.py", "_base_ = 'base.py'\nmodel = dict(type='ResNet')\n"))
    cfg.dump(tmp_path / "out.py")
    assert (tmp_path / "out.py").read_text() == "optimizer = dict(type='SGD', lr=0.02)\nmodel = dict(type='ResNet')\n"
    cfg.dump(tmp_path / "out.json")
    assert Config.fromfile(tmp_path / "out.json") == Config.fromfile(tmp_path / "out.py") == cfg
    assert cfg.dump() == cfg.pretty_text == (tmp_path / "out.py").read_text()
    with pytest.raises(ConfigError, match=r"Object of type Registry is not JSON serializable; dump to a \.py file"):
        Config({"r": Registry("x")}).dump(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match=r"must end with \.py, \.json, \.yaml or \.yml"):
        cfg.dump(tmp_path / "out.toml")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["base.py", "child.py", "out.json", "out.py"]


def test_custom_imports_import_exactly_the_named_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _write(tmp_path, "my_metric_module.py", (
        "from fengine.registry import METRICS\n"
        "@METRICS.register_module(force=True)\n"
        "class MyImportedMetric:\n    pass\n"
    ))
    monkeypatch.syspath_prepend(str(tmp_path))
    path = _write(tmp_path, "c.py", "custom_imports = dict(imports=['my_metric_module'])\nm = dict(type='MyImportedMetric')\n")
    cfg = Config.fromfile(path)
    assert METRICS.get("MyImportedMetric") is not None and cfg.m.type == "MyImportedMetric"
    bad = _write(tmp_path, "bad.py", "custom_imports = dict(imports=['no_such_module_here'])\n")
    with pytest.raises(ImportError, match=r"custom_imports: cannot import 'no_such_module_here'"):
        Config.fromfile(bad)
    lenient = _write(tmp_path, "lenient.py", "custom_imports = dict(imports='no_such_module_here', allow_failed_imports=True)\n")
    with pytest.warns(UserWarning, match="failed to import and is skipped"):
        Config.fromfile(lenient)
    wrong = _write(tmp_path, "wrong.py", "custom_imports = ['my_metric_module']\n")
    with pytest.raises(ConfigError, match=r"custom_imports must be dict\(imports=\['module', \.\.\.\]"):
        Config.fromfile(wrong)
    assert "no_such_module_here" not in sys.modules


def test_dict_action_gathers_and_extends_options() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    args = parser.parse_args(["--cfg-options", "a.b=1", "c=[1, 2]", "--cfg-options", "d=x"])
    assert args.cfg_options == {"a.b": 1, "c": [1, 2], "d": "x"}
    with pytest.raises(SystemExit):
        parser.parse_args(["--cfg-options", "novalue"])


def test_a_registered_extra_of_fengine_yields_to_a_class_of_the_same_name() -> None:
    registry = Registry("test-extras")

    @registry.register_module(replaceable=True)
    class Accuracy:
        pass

    theirs = type("Accuracy", (), {})
    registry.register_module(module=theirs)  # no force needed
    assert registry.get("Accuracy") is theirs
    with pytest.raises(Exception, match="already registered"):
        registry.register_module(module=type("Accuracy", (), {}))  # theirs is not replaceable
    assert METRICS.get("Accuracy") is not None
