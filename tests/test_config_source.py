"""Settings written back as a config file, and the run's config copy in its work dir."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from fengine.config import Config
from fengine.config_source import given_arguments, is_plain, python_source
from fengine.visualization import BaseVisBackend, Visualizer

sys.path.insert(0, str(Path(__file__).resolve().parent / "runner"))
from runner_toys import ToyMetric, loader, toy_kwargs

from fengine.runner import Runner

_names = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda n: n not in ("if", "in", "is", "or", "as", "def", "del", "for", "not", "and", "try")
)
_atoms = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
    | st.binary(max_size=4)
)
_plain = st.recursive(
    _atoms,
    lambda inner: st.lists(inner, max_size=4)
    | st.lists(inner, max_size=3).map(tuple)
    | st.dictionaries(_names, inner, max_size=4)
    | st.dictionaries(st.text(max_size=5) | st.integers(), inner, max_size=3)
    | st.frozensets(st.integers(), max_size=3).map(set),
    max_leaves=20,
)


def _read_back(source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {}
    exec(compile(source, "copy.py", "exec"), namespace)
    return {k: v for k, v in namespace.items() if k != "__builtins__"}


def _typed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return (type(value), [_typed(v) for v in value])
    if isinstance(value, set):
        return (set, sorted(value))
    return (type(value), value)


@given(st.dictionaries(_names, _plain, max_size=5))
@settings(max_examples=40)
def test_plain_settings_read_back_equal_with_their_types(data: dict[str, Any]) -> None:
    back = _read_back(python_source(data))
    assert back == data
    assert _typed(back) == _typed(data)  # also the types: tuples stay tuples, ints stay ints


def test_non_finite_floats_nested_lines_and_a_long_value() -> None:
    data = {
        "train_cfg": {"max_epochs": 2, "lr": float("inf"), "low": -math.inf},
        "widths": list(range(60)),
        "weird": {"not a name": 1, "class": 2},
    }
    source = python_source(data)
    assert "train_cfg = dict(max_epochs=2, lr=float('inf'), low=float('-inf'))" in source
    assert "widths = [\n    0,\n" in source  # too long for one line: one item a line
    assert "weird = {'not a name': 1, 'class': 2}" in source
    assert _read_back(source) == data
    nan = _read_back(python_source({"x": float("nan")}))["x"]
    assert math.isnan(nan)


def test_objects_are_written_as_none_after_their_repr_and_bad_names_are_said() -> None:
    layer = nn.Linear(2, 3)
    data = {"model": layer, "train_dataloader": {"batch_size": 4, "dataset": range(3)}, "a b": 1}
    source = python_source(data)
    assert source.splitlines()[:3] == [
        "# not plain data, written as None; its repr:",
        "#   Linear(in_features=2, out_features=3, bias=True)",
        "model = None",
    ]
    assert (
        "train_dataloader = dict(\n    batch_size=4,\n"
        "    # not plain data, written as None; its repr:\n    #   range(0, 3)\n    dataset=None,\n)"
    ) in source
    assert "# 'a b' is not a Python name, so a config file cannot hold it" in source
    assert _read_back(source) == {"model": None, "train_dataloader": {"batch_size": 4, "dataset": None}}
    assert not is_plain(data) and is_plain({"x": [1, (2, None)]})


def test_given_arguments_are_those_that_differ_from_the_defaults() -> None:
    def build(self: Any, a: int = 1, b: Any = None, c: str = "x", cfg: Any = None) -> None: ...

    assert given_arguments(build, {"self": 0, "a": 1, "b": [1], "c": "y", "cfg": {}, "z": 3}) == {
        "b": [1],
        "c": "y",
    }


class _Recording(BaseVisBackend):
    def __init__(self) -> None:
        super().__init__(None)
        self.calls: list[tuple[str, Any]] = []

    def add_config(self, config: Any, **kwargs: Any) -> None:
        self.calls.append(("add_config", config))

    def add_scalars(self, scalar_dict: Any, step: int = 0, file_path: Any = None, **kwargs: Any) -> None:
        self.calls.append(("add_scalars", step))

    def close(self) -> None:
        self.calls.append(("close", None))


def test_a_runner_built_in_python_writes_its_arguments_and_logs_them_to_the_backends(
    tmp_path: Path,
) -> None:
    backend = _Recording()
    visualizer = Visualizer(name="config-copy-python", vis_backends=[backend])
    kwargs = toy_kwargs(tmp_path, visualizer=visualizer)
    kwargs.update(test_dataloader=loader(), test_cfg={}, test_evaluator=ToyMetric())
    runner = Runner(**kwargs)
    copy = tmp_path / f"{runner.timestamp}.py"
    text = copy.read_text()
    assert "#   ToyModel(" in text and "model = None" in text
    cfg = Config.fromfile(copy)
    assert cfg["train_cfg"] == {"by_epoch": True, "max_epochs": 2, "val_interval": 1}
    assert cfg["optim_wrapper"] == {"optimizer": {"type": "SGD", "lr": 0.1}}
    assert cfg["randomness"] == {"seed": 0} and cfg["work_dir"] == str(tmp_path)
    assert "launcher" not in cfg and "resume" not in cfg  # defaults are left out
    assert backend.calls == []
    runner.train()
    kinds = [kind for kind, _ in backend.calls]
    assert kinds[0] == "add_config" and kinds[-1] == "close" and kinds.count("close") == 1
    assert "add_scalars" in kinds  # validation after each epoch did not close the backend
    assert backend.calls[0][1]["train_cfg"]["max_epochs"] == 2
    backend.calls.clear()
    runner.test()
    assert [kind for kind, _ in backend.calls][-1] == "close"


def test_a_runner_from_a_config_writes_it_to_its_timestamp_file_and_vis_data(tmp_path: Path) -> None:
    kwargs = toy_kwargs(tmp_path)
    cfg = {
        **kwargs,
        "model": {"type": "ToyModel", "dropout": 0.25},
        "train_dataloader": {"dataset": {"type": "ToyDataset"}, "batch_size": 3, "sampler": {"type": "DefaultSampler", "shuffle": False}},
        "val_dataloader": {"dataset": {"type": "ToyDataset"}, "batch_size": 3, "sampler": {"type": "DefaultSampler", "shuffle": False}},
        "val_evaluator": {"type": "ToyMetric"},
    }
    runner = Runner.from_cfg(cfg)
    runner.train()
    back = Config.fromfile(tmp_path / f"{runner.timestamp}.py")
    assert dict(back) == cfg
    logged = Config.fromfile(Path(runner.log_dir) / "vis_data" / "config.py")
    assert dict(logged) == dict(back)
