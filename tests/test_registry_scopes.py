"""Registry trees: scopes, scoped keys, DefaultScope, `_scope_`, build functions and locations."""

from __future__ import annotations

import json
import logging
import sys
import unittest
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch.nn as nn
from hypothesis import given, settings
from hypothesis import strategies as st

import fengine
import fengine.optim
from fengine.config import Config, ConfigDict
from fengine.logging import MMLogger
from fengine.registry import (
    MODELS,
    DefaultScope,
    MissingTypeError,
    Registry,
    RegistryArgumentError,
    RegistryError,
    build_from_cfg,
    build_model_from_cfg,
    count_registered_modules,
    init_default_scope,
    traverse_registry_tree,
)


@pytest.fixture(autouse=True)
def _no_default_scope() -> Iterator[None]:
    saved = dict(DefaultScope._instance_dict)
    DefaultScope._instance_dict.clear()
    yield
    DefaultScope._instance_dict.clear()
    DefaultScope._instance_dict.update(saved)


def _tree() -> dict[str, Registry]:
    # zoo ─┬─ cats (cat) ── lions (lion)
    #      └─ dogs (dog)
    zoo = Registry("animal", scope="zoo")
    cats = Registry("animal", parent=zoo, scope="cat")
    lions = Registry("animal", parent=cats, scope="lion")
    dogs = Registry("animal", parent=zoo, scope="dog")
    return {"zoo": zoo, "cat": cats, "lion": lions, "dog": dogs}


def test_the_scope_defaults_to_the_creating_package() -> None:
    assert Registry("thing").scope == __name__.split(".")[0]
    assert MODELS.scope == "fengine"
    assert Registry("thing", scope="mine").scope == "mine"


def test_children_are_kept_by_scope_and_a_second_child_of_one_scope_is_refused() -> None:
    tree = _tree()
    assert dict(tree["zoo"].children) == {"cat": tree["cat"], "dog": tree["dog"]}
    assert tree["lion"].parent is tree["cat"]
    with pytest.raises(RegistryArgumentError, match="already has a child of scope 'cat'"):
        Registry("animal", parent=tree["zoo"], scope="cat")
    with pytest.raises(AssertionError, match="parent must be a Registry or None, got 'zoo'"):
        Registry("animal", parent="zoo")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="scope must be a str or None, got 1"):
        Registry("animal", scope=1)  # type: ignore[arg-type]


@given(st.text(alphabet="ab.", max_size=8))
@settings(max_examples=40)
def test_split_scope_key_cuts_at_the_first_dot(key: str) -> None:
    scope, rest = Registry.split_scope_key(key)
    if "." in key:
        assert f"{scope}.{rest}" == key and "." not in str(scope)
    else:
        assert (scope, rest) == (None, key)


def test_scoped_keys_reach_every_registry_of_the_tree() -> None:
    tree = _tree()
    entries = {}
    for scope, registry in tree.items():
        entries[scope] = type(f"{scope.title()}Kind", (), {})
        registry.register_module(module=entries[scope])
    for here in tree.values():
        for scope, cls in entries.items():
            assert here.get(f"{scope}.{cls.__name__}") is cls
    # plain keys: here, then up the parents, never sideways
    assert tree["lion"].get("ZooKind") is entries["zoo"]
    assert tree["lion"].get("CatKind") is entries["cat"]
    assert tree["lion"].get("DogKind") is None
    assert tree["zoo"].get("cat.lion.LionKind") is entries["lion"]
    assert tree["dog"].get("cat.DogKind") is None
    assert tree["dog"].get("nowhere.DogKind") is None


def test_a_dotted_path_that_names_no_entry_names_a_module_or_attribute() -> None:
    registry = Registry("thing", scope="here")
    assert registry.get("torch.nn.ReLU") is nn.ReLU
    assert registry.get("fengine.utils") is sys.modules["fengine.utils"]
    assert registry.get("fengine.no_such_module") is None
    with pytest.raises(TypeError, match="the key must be a str, got None"):
        registry.get(None)  # type: ignore[arg-type]


def test_default_scope_picks_the_registry_build_looks_in() -> None:
    tree = _tree()

    @tree["dog"].register_module()
    class Beagle:
        pass

    @tree["cat"].register_module(name="Beagle")
    class CatBeagle:
        pass

    assert isinstance(tree["lion"].build(dict(type="Beagle")), CatBeagle)
    DefaultScope.get_instance("dogs-first", scope_name="dog")
    assert isinstance(tree["lion"].build(dict(type="Beagle")), Beagle)
    DefaultScope.get_instance("unknown", scope_name="no-such-scope")
    with pytest.warns(UserWarning, match="has no registry of the default scope 'no-such-scope'"):
        assert isinstance(tree["cat"].build(dict(type="Beagle")), CatBeagle)


def test_a_configs_scope_holds_for_its_nested_builds_only() -> None:
    tree = _tree()

    @tree["dog"].register_module()
    class Puppy:
        pass

    @tree["dog"].register_module()
    class Kennel:
        def __init__(self, pup: dict[str, str]) -> None:
            self.pup = tree["zoo"].build(pup)

    DefaultScope.get_instance("outer", scope_name="cat")
    kennel = tree["zoo"].build(dict(_scope_="dog", type="Kennel", pup=dict(type="Puppy")))
    assert isinstance(kennel.pup, Puppy)
    current = DefaultScope.get_current_instance()
    assert current is not None and current.scope_name == "cat"


def test_switch_scope_and_registry_yields_the_scopes_registry_and_restores() -> None:
    tree = _tree()
    init_default_scope("cat")
    with tree["dog"].switch_scope_and_registry("lion") as registry:
        assert registry is tree["lion"]
        with tree["dog"].switch_scope_and_registry("dog") as inner:
            assert inner is tree["dog"]
        assert DefaultScope.get_current_instance().scope_name == "lion"  # type: ignore[union-attr]
    assert DefaultScope.get_current_instance().scope_name == "cat"  # type: ignore[union-attr]
    with tree["dog"].switch_scope_and_registry(None) as registry:
        assert registry is tree["cat"]


def test_default_scope_instances() -> None:
    assert DefaultScope.get_current_instance() is None
    first = DefaultScope.get_instance("a", scope_name="mmdet")
    assert DefaultScope.get_current_instance() is first and first.scope_name == "mmdet"
    with DefaultScope.overwrite_default_scope("other"):
        assert DefaultScope.get_current_instance().scope_name == "other"  # type: ignore[union-attr]
    with DefaultScope.overwrite_default_scope(None):
        assert DefaultScope.get_current_instance() is first
    assert DefaultScope.get_current_instance() is first and len(DefaultScope._instance_dict) == 1
    with pytest.raises(TypeError):
        DefaultScope.get_instance("b")


def test_init_default_scope_creates_once_and_warns_when_switching() -> None:
    init_default_scope("mmdet")
    init_default_scope("mmdet")
    assert list(DefaultScope._instance_dict) == ["mmdet"]
    DefaultScope.get_instance("x", scope_name="test")
    with unittest.TestCase().assertLogs(MMLogger.get_current_instance(), logging.WARNING) as logs:
        init_default_scope("mmdet")
    assert "The current default scope 'test' is not 'mmdet'" in logs.output[0]
    assert DefaultScope.get_current_instance().scope_name == "mmdet"  # type: ignore[union-attr]


def test_build_func_is_inherited_and_model_lists_become_sequential() -> None:
    layers = Registry("layer", build_func=build_model_from_cfg, scope="layers")
    layers.register_module(module=nn.Linear)
    child = Registry("layer", parent=layers, scope="sub")
    assert child.build_func is build_model_from_cfg
    assert Registry("thing").build_func is build_from_cfg
    net = child.build([dict(type="Linear", in_features=2, out_features=3), dict(type="Linear", in_features=3, out_features=1)])
    assert isinstance(net, nn.Sequential) and [m.out_features for m in net] == [3, 1]
    assert MODELS.build_func is build_model_from_cfg

    def custom(cfg: object, registry: Registry) -> tuple[object, Registry]:
        return cfg, registry

    own = Registry("thing", build_func=custom, scope="own")
    assert own.build("anything") == ("anything", own)


@pytest.mark.parametrize("cfg_type", [dict, ConfigDict, Config])
def test_build_errors_read_mmengines_wording(cfg_type: type) -> None:
    registry = Registry("backbone", scope="nets")

    @registry.register_module()
    class Net:
        def __init__(self, depth: int) -> None:
            self.depth = depth

    assert build_from_cfg(cfg_type(dict(depth=3)), registry, cfg_type(dict(type="Net"))).depth == 3
    with pytest.raises(KeyError, match=r'must contain the key "type".*\[\'depth\'\]') as caught:
        build_from_cfg(cfg_type(dict(depth=3)), registry)
    assert isinstance(caught.value, MissingTypeError) and isinstance(caught.value, TypeError)
    with pytest.raises(TypeError, match="cfg should be a dict, ConfigDict or Config, but got <class 'str'>"):
        build_from_cfg("Net", registry)
    with pytest.raises(TypeError, match="type must be a str or valid type, but got <class 'int'>"):
        build_from_cfg(cfg_type(dict(type=7)), registry)
    with pytest.raises(TypeError, match=r"registry must be a mmengine\.Registry object, but got <class 'str'>"):
        build_from_cfg(cfg_type(dict(type="Net")), "backbone")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="default_args should be a dict, ConfigDict, Config or None"):
        build_from_cfg(cfg_type(dict(type="Net")), registry, 1)  # type: ignore[arg-type]
    with pytest.raises(RegistryError, match="Vgg is not in the nets::backbone registry"):
        registry.build(cfg_type(dict(type="Vgg")))


def test_register_module_argument_errors() -> None:
    registry = Registry("cat", scope="cats")
    with pytest.raises(TypeError, match="name must be None, an instance of str, or a sequence of str, but got <class 'int'>"):
        registry.register_module(name=7, module=int)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="force must be a boolean, but got <class 'int'>"):
        registry.register_module(force=1)  # type: ignore[arg-type]
    registry.register_module(name="lazy", module=lambda: "meow")
    assert registry.build(dict(type="lazy")) == "meow"
    assert "Registry of cat" in repr(registry) and "lazy" in repr(registry)
    registry.module_dict.pop("lazy")
    assert "lazy" not in registry


def test_locations_are_imported_on_the_first_lookup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "plugin_registry.py").write_text(
        "from fengine.registry import Registry\n"
        "PLUGINS = Registry('plugin', scope='plugins', locations=['plugin_models'])\n"
    )
    (tmp_path / "plugin_models.py").write_text(
        "from plugin_registry import PLUGINS\n"
        "@PLUGINS.register_module()\n"
        "class Plugin:\n"
        "    pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    from plugin_registry import PLUGINS  # type: ignore[import-not-found]

    assert "plugin_models" not in sys.modules
    assert PLUGINS.get("Plugin").__module__ == "plugin_models"
    monkeypatch.delitem(sys.modules, "plugin_models")
    monkeypatch.delitem(sys.modules, "plugin_registry")
    broken = Registry("plugin", scope="broken", locations=["no_such_plugin_module"])
    with pytest.raises(RegistryError, match="cannot import its location 'no_such_plugin_module'"):
        broken.get("Plugin")


def test_traverse_and_count(tmp_path: Path) -> None:
    tree = _tree()
    tree["cat"].register_module(module=type("Tabby", (), {}))
    entries = traverse_registry_tree(tree["lion"], verbose=False)
    assert [(e["scope"], e["num_modules"]) for e in entries] == [("zoo", 0), ("cat", 1), ("dog", 0), ("lion", 0)]
    counts = count_registered_modules(str(tmp_path), verbose=False)
    saved = json.loads((tmp_path / "modules_statistic_results.json").read_text())
    assert saved["registries"] == counts["registries"]
    assert counts["registries"]["HOOKS"][0]["num_modules"] == len(fengine.HOOKS.module_dict)


def test_top_level_exports() -> None:
    assert fengine.PARAM_SCHEDULERS is fengine.registry.PARAM_SCHEDULERS
    assert fengine.build_model_from_cfg is build_model_from_cfg and fengine.DefaultScope is DefaultScope
    assert fengine.registry.root.MODELS is MODELS
    assert fengine.optim.OPTIM_WRAPPER_CONSTRUCTORS is fengine.registry.OPTIM_WRAPPER_CONSTRUCTORS
    assert fengine.TRANSFORMS.build(dict(type=dict, a=1)) == {"a": 1}
    from fengine.runner import loops, priority

    assert priority.get_priority("LOW") == 70 and loops._InfiniteDataloaderIterator is loops._InfiniteIterator
