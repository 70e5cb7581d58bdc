"""Config files: settings, ``_base_`` inheritance, ``--cfg-options`` parsing and merging."""

from __future__ import annotations

import copy
import pickle
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.config import Config, ConfigError, parse_cfg_option
from fengine.registry import MODELS


def _write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_settings_are_the_public_plain_values_and_classes_get_registered(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "cfg.py",
        """
        from __future__ import annotations
        import math
        from typing import Any
        from torch import nn
        from fengine.registry import MODELS

        @MODELS.register_module(force=True)
        class ConfigDefinedNet(nn.Module):
            pass

        def helper() -> int:
            return 3

        _private = 1
        epochs = helper() * 2
        model = dict(type='ConfigDefinedNet')
        ratio = math.pi
        """,
    )
    cfg = Config.fromfile(path)
    assert dict(cfg) == {
        "epochs": 6,
        "model": {"type": "ConfigDefinedNet"},
        "ratio": pytest.approx(3.14159265),
    }
    assert cfg.filename == str(path)
    assert MODELS.get("ConfigDefinedNet") is not None
    assert cfg.epochs == 6
    cfg.work_dir = "out"
    assert cfg["work_dir"] == "out"
    with pytest.raises(AttributeError, match=r"no setting 'nope'.*\['epochs'"):
        _ = cfg.nope


def test_bases_merge_in_order_and_the_child_wins_key_by_key(tmp_path: Path) -> None:
    _write(
        tmp_path,
        "base/schedule.py",
        "train_cfg = dict(by_epoch=True, max_epochs=10, val_interval=1)\nlr = 0.1\n",
    )
    _write(tmp_path, "base/model.py", "model = dict(type='A', width=8, depth=2)\nlr = 0.2\n")
    path = _write(
        tmp_path,
        "child.py",
        """
        _base_ = ['./base/schedule.py', 'base/model.py']
        train_cfg = dict(max_epochs=3)
        optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01))
        """,
    )
    cfg = Config.fromfile(path)
    assert cfg["train_cfg"] == {"by_epoch": True, "max_epochs": 3, "val_interval": 1}
    assert cfg["model"] == {"type": "A", "width": 8, "depth": 2}
    assert cfg["lr"] == 0.2  # the later base overrides the earlier one
    replaced = _write(
        tmp_path, "replace.py", "_base_ = 'base/model.py'\nmodel = dict(_delete_=True, type='B')\n"
    )
    assert Config.fromfile(replaced)["model"] == {"type": "B"}


def test_missing_files_and_cycles_are_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.py' does not exist"):
        Config.fromfile(tmp_path / "nope.py")
    child = _write(tmp_path, "child.py", "_base_ = 'gone.py'\n")
    with pytest.raises(FileNotFoundError, match=r"gone\.py'.*a _base_ of '.*child\.py'"):
        Config.fromfile(child)
    _write(tmp_path, "a.py", "_base_ = 'b.py'\n")
    _write(tmp_path, "b.py", "_base_ = 'a.py'\n")
    with pytest.raises(ConfigError, match=r"cycle: .*a\.py -> .*b\.py -> .*a\.py"):
        Config.fromfile(tmp_path / "a.py")
    bad = _write(tmp_path, "bad.py", "_base_ = 3\n")
    with pytest.raises(ConfigError, match=r"_base_ must be a path or a list of paths, got 3"):
        Config.fromfile(bad)


def test_merge_from_dict_sets_dotted_keys_creates_dicts_and_indexes_lists() -> None:
    cfg = Config(
        {"model": {"type": "A", "width": 8}, "custom_hooks": [{"type": "EMAHook", "momentum": 0.1}]}
    )
    cfg.merge_from_dict(
        {
            "model.width": 16,
            "train_cfg.max_epochs": 1,
            "custom_hooks.0.momentum": 0.5,
            "work_dir": "w",
        }
    )
    assert cfg == {
        "model": {"type": "A", "width": 16},
        "custom_hooks": [{"type": "EMAHook", "momentum": 0.5}],
        "train_cfg": {"max_epochs": 1},
        "work_dir": "w",
    }
    with pytest.raises(
        ConfigError, match=r"model\.width is a int, so 'model\.width\.x' cannot be set"
    ):
        cfg.merge_from_dict({"model.width.x": 1})
    with pytest.raises(ConfigError, match=r"custom_hooks is a list, so 'custom_hooks\.3'"):
        cfg.merge_from_dict({"custom_hooks.3.momentum": 1})


def test_an_unknown_top_level_option_key_is_an_error_naming_the_closest_keys() -> None:
    cfg = Config({"model": {"type": "A"}, "train_cfg": {"max_epochs": 3}, "my_setting": 1})
    with pytest.raises(ConfigError) as raised:
        cfg.merge_from_dict({"trian_cfg.max_epochs": 1})
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("--cfg-options trian_cfg.max_epochs=...: unknown top-level key 'trian_cfg'; did you mean 'train_cfg'")
    assert "'my_setting'" not in message.split("did you mean")[1].split("?")[0]
    assert "my_setting" in message and "allow_new_keys=True" in message
    with pytest.raises(ConfigError, match=r"unknown top-level key 'my_settin'; did you mean 'my_setting'\?"):
        cfg.merge_from_dict({"my_settin": 2})
    with pytest.raises(ConfigError, match=r"unknown top-level key 'zzz'; the config and the Runner know "):
        cfg.merge_from_dict({"zzz": 2})
    assert cfg == {"model": {"type": "A"}, "train_cfg": {"max_epochs": 3}, "my_setting": 1}
    # Existing and Runner settings may be set, and dicts below them gain new keys (MMEngine's rule).
    cfg.merge_from_dict({"model.depth": 4, "train_cfg.val_interval": 2, "load_from": "a.pth", "my_setting": 5})
    assert cfg["model"] == {"type": "A", "depth": 4} and cfg["train_cfg"] == {"max_epochs": 3, "val_interval": 2}
    assert (cfg["load_from"], cfg["my_setting"]) == ("a.pth", 5)
    cfg.merge_from_dict({"zzz": 2}, allow_new_keys=True)
    assert cfg["zzz"] == 2


def test_a_new_nested_key_that_nearly_matches_an_existing_one_is_an_error() -> None:
    cfg = Config({"train_cfg": {"by_epoch": True, "max_epochs": 3}, "custom_hooks": [{"type": "EMAHook", "momentum": 0.1}]})
    with pytest.raises(ConfigError) as raised:
        cfg.merge_from_dict({"train_cfg.max_epoch": 1})
    assert str(raised.value) == (
        "--cfg-options train_cfg.max_epoch=...: 'train_cfg' has no key 'max_epoch'; did you mean "
        "'max_epochs'? 'train_cfg' has by_epoch, max_epochs (pass allow_new_keys=True to add a key "
        "this close to an existing one)"
    )
    with pytest.raises(ConfigError, match=r"'custom_hooks\.0' has no key 'momentm'; did you mean 'momentum'\?"):
        cfg.merge_from_dict({"custom_hooks.0.momentm": 0.5})
    assert cfg == {"train_cfg": {"by_epoch": True, "max_epochs": 3}, "custom_hooks": [{"type": "EMAHook", "momentum": 0.1}]}
    # A new key unlike its neighbours is added, as in MMEngine; allow_new_keys takes near misses too.
    cfg.merge_from_dict({"train_cfg.val_interval": 2, "custom_hooks.0.priority": 49})
    cfg.merge_from_dict({"train_cfg.max_epoch": 1}, allow_new_keys=True)
    assert cfg["train_cfg"] == {"by_epoch": True, "max_epochs": 3, "val_interval": 2, "max_epoch": 1}
    assert cfg["custom_hooks"] == [{"type": "EMAHook", "momentum": 0.1, "priority": 49}]


def test_merged_values_are_copies_and_configs_copy_and_pickle_with_their_file_name() -> None:
    value = {"lr": 0.1}
    cfg = Config({"a": 1}, filename="/x/cfg.py")
    cfg.merge_from_dict([("optim_wrapper", value)])
    value["lr"] = 1.0
    assert cfg["optim_wrapper"] == {"lr": 0.1}
    for clone in (copy.deepcopy(cfg), pickle.loads(pickle.dumps(cfg))):
        assert isinstance(clone, Config) and clone == cfg and clone.filename == "/x/cfg.py"


_literals = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner),
    max_leaves=6,
)


@given(
    st.lists(st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True), min_size=1, max_size=3),
    _literals,
)
@settings(max_examples=50)
def test_option_values_are_python_literals(parts: list[str], value: Any) -> None:
    key = ".".join(parts)
    assert parse_cfg_option(f"{key}={value!r}") == (key, value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("False", False),
        ("none", None),
        ("-inf", float("-inf")),
        ("sgd", "sgd"),
        ("1,2,x", [1, 2, "x"]),
        ("", ""),
    ],
)
def test_option_values_that_are_not_literals(text: str, expected: Any) -> None:
    assert parse_cfg_option(f"a.b={text}") == ("a.b", expected)


@pytest.mark.parametrize("item", ["max_epochs", "=1", "a..b=1", ".a=1", "a.=1"])
def test_malformed_options_name_the_item_and_the_accepted_form(item: str) -> None:
    with pytest.raises(
        ConfigError, match=rf"{item!r} is not of the form KEY=VALUE, e\.g\. train_cfg\.max_epochs=1"
    ):
        parse_cfg_option(item)
