"""Registry: registration, build from config, and the errors bad configs get."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.registry import ConfigError, Registry, RegistryError, build_from_cfg


def _fresh() -> Registry:
    reg = Registry("thing")

    @reg.register_module()
    class Widget:
        def __init__(self, size: int = 1, *, colour: str = "red") -> None:
            self.size, self.colour = size, colour

    @reg.register_module(name=["gadget", "Gizmo"])
    def make_gadget(n: int) -> list[int]:
        return list(range(n))

    return reg


def test_register_as_decorator_call_and_aliases() -> None:
    reg = _fresh()
    assert "Widget" in reg and "gadget" in reg and "Gizmo" in reg and len(reg) == 3
    assert "nope" not in reg and 3 not in reg

    class Direct:
        pass

    assert reg.register_module(module=Direct) is Direct
    assert reg.get("Direct") is Direct


def test_build_by_name_class_and_with_defaults() -> None:
    reg = _fresh()
    widget = reg.build(dict(type="Widget", size=3))
    assert (widget.size, widget.colour) == (3, "red")
    assert reg.build(dict(type="gadget"), default_args=dict(n=2)) == [0, 1]
    cls = reg.get("Widget")
    assert build_from_cfg(dict(type=cls, colour="blue"), reg).colour == "blue"


def test_build_does_not_modify_the_callers_dict() -> None:
    reg = _fresh()
    cfg = dict(type="Widget", size=2)
    reg.build(cfg, default_args=dict(colour="green"))
    assert cfg == dict(type="Widget", size=2)


def test_parent_registry_is_visible_from_child() -> None:
    parent = _fresh()
    child = Registry("sub", parent=parent)
    assert child.build(dict(type="Widget")).size == 1
    assert parent.children[child.scope] is child


def test_not_a_dict() -> None:
    with pytest.raises(ConfigError, match=r"thing registry: cfg should be a dict, ConfigDict or Config, but got <class 'list'>"):
        _fresh().build(["Widget"])


def test_missing_type() -> None:
    with pytest.raises(ConfigError, match=r'must contain the key "type".*\[\'size\'\]'):
        _fresh().build(dict(size=1))


def test_unknown_name_lists_close_names() -> None:
    with pytest.raises(RegistryError, match="Widgte is not in the test_registry::thing registry; did you mean 'Widget'"):
        _fresh().build(dict(type="Widgte"))


def test_bad_type_value() -> None:
    with pytest.raises(ConfigError, match=r"type must be a str or valid type, but got <class 'int'>"):
        _fresh().build(dict(type=3))


def test_duplicate_registration_needs_force() -> None:
    reg = _fresh()

    class Widget:
        pass

    with pytest.raises(RegistryError, match=r"Widget is already registered in thing at test_registry.*force=True"):
        reg.register_module(module=Widget)
    reg.register_module(module=Widget, force=True)
    assert reg.get("Widget") is Widget


def test_constructor_rejecting_arguments_names_type_and_keyword() -> None:
    with pytest.raises(ConfigError, match=r"Widget \(from the thing registry\) rejects.*'sise'.*accepted \['size', 'colour'\]"):
        _fresh().build(dict(type="Widget", sise=3))


def test_registering_a_non_callable_fails() -> None:
    with pytest.raises(TypeError, match=r"module must be Callable, but got <class 'int'>"):
        _fresh().register_module(module=3)  # type: ignore[call-overload]


@given(st.dictionaries(st.sampled_from(["size", "colour"]), st.integers(0, 9) | st.text(max_size=3)))
@settings(max_examples=30)
def test_build_equals_direct_construction(kwargs: dict[str, Any]) -> None:
    reg = _fresh()
    cls = reg.get("Widget")
    built = reg.build(dict(type="Widget", **kwargs))
    direct = cls(**kwargs)
    assert vars(built) == vars(direct)
