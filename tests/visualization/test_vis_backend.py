"""LocalVisBackend JSON lines and TensorboardVisBackend calls."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.logging import CallableFloat, CallableInt
from fengine.registry import VISBACKENDS
from fengine.visualization import LocalVisBackend, TensorboardVisBackend
from fengine.visualization.vis_backend import _json_default


def test_reference_records_are_appended_to_both_files(tmp_path):
    backend = LocalVisBackend(str(tmp_path / "vis_data"))
    assert not (tmp_path / "vis_data").exists()  # nothing is created before the first write
    train = {
        "lr": CallableFloat(0.1),
        "data_time": 1.0,
        "grad_norm": np.float64(14.1989),
        "loss": -5.3011,
        "time": 2.0,
        "epoch": 1,
        "iter": 3,
    }
    backend.add_scalars(train, step=3, file_path="20240101_000000.json")
    backend.add_scalars({"acc": CallableInt(1), "data_time": 1.0, "time": 2.0}, step=1)
    scalars = (tmp_path / "vis_data" / "scalars.json").read_text().splitlines()
    assert scalars == [
        '{"lr": 0.1, "data_time": 1.0, "grad_norm": 14.1989, "loss": -5.3011, "time": 2.0, '
        '"epoch": 1, "iter": 3, "step": 3}',
        '{"acc": 1, "data_time": 1.0, "time": 2.0, "step": 1}',
    ]
    stamped = (tmp_path / "vis_data" / "20240101_000000.json").read_text().splitlines()
    assert stamped == scalars[:1]
    assert "step" not in train  # the caller's dict is left alone


def test_an_existing_step_key_is_kept_and_values_are_made_json(tmp_path):
    backend = LocalVisBackend(str(tmp_path))
    backend.add_scalars({"step": 7, "a": torch.tensor(2.5), "b": np.array([1, 2])}, step=99)
    backend.add_scalar("loss", torch.tensor(0.5), step=4)
    lines = [json.loads(x) for x in (tmp_path / "scalars.json").read_text().splitlines()]
    assert lines == [{"step": 7, "a": 2.5, "b": [1, 2]}, {"loss": 0.5, "step": 4}]


@settings(max_examples=20, deadline=None)
@given(
    st.lists(
        st.dictionaries(
            st.text("abcdefgh_/", min_size=1, max_size=8),
            st.one_of(
                st.integers(-5, 5),
                st.floats(allow_nan=True, allow_infinity=True),
                st.floats(-1e3, 1e3).map(np.float32),
                st.floats(-1e3, 1e3).map(torch.tensor),
                st.text(max_size=3),
            ),
            max_size=4,
        ),
        min_size=1,
        max_size=6,
    )
)
def test_every_call_appends_exactly_the_json_dumps_line(tmp_path_factory, records):
    folder = tmp_path_factory.mktemp("vis")
    backend = LocalVisBackend(str(folder))
    for step, record in enumerate(records):
        backend.add_scalars(record, step=step, file_path="run.json")
    expected = "".join(
        json.dumps({**record, "step": record.get("step", step)}, default=_json_default) + "\n"
        for step, record in enumerate(records)
    )
    assert (folder / "scalars.json").read_text() == expected
    assert (folder / "run.json").read_text() == expected


def test_config_is_written_whole(tmp_path):
    backend = LocalVisBackend(str(tmp_path))
    backend.add_config({"model": {"type": "Net"}, "lr": 0.1})
    assert (tmp_path / "config.py").read_text() == "model = dict(type='Net')\nlr = 0.1\n"

    class Config:
        pretty_text = "model = dict(type='Other')\n"

    backend.add_config(Config())
    assert (tmp_path / "config.py").read_text() == "model = dict(type='Other')\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.py"]


def test_bad_file_names_and_values_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="scalar_save_file"):
        LocalVisBackend(str(tmp_path), scalar_save_file="scalars.txt")
    backend = LocalVisBackend(str(tmp_path))
    with pytest.raises(ValueError, match="file_path"):
        backend.add_scalars({"a": 1}, file_path="a.txt")
    for _ in range(2):  # a rejected name is checked again, not remembered
        with pytest.raises(ValueError, match="scalar log itself"):
            backend.add_scalars({"a": 1}, file_path="scalars.json")
    with pytest.raises(TypeError, match="object"):
        backend.add_scalars({"a": object()})
    with pytest.raises(TypeError, match="dict"):
        backend.add_scalars([1, 2])  # type: ignore[arg-type]


def test_built_from_the_registry(tmp_path):
    backend = VISBACKENDS.build(dict(type="LocalVisBackend", save_dir=str(tmp_path)))
    assert isinstance(backend, LocalVisBackend)


class FakeWriter:
    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        self.calls: list[tuple] = []

    def add_scalar(self, name, value, step):
        self.calls.append(("scalar", name, value, step))

    def add_text(self, tag, text):
        self.calls.append(("text", tag, text))

    def close(self):
        self.calls.append(("close",))


def test_tensorboard_backend_forwards_numbers_to_the_writer(tmp_path, monkeypatch):
    monkeypatch.setattr(TensorboardVisBackend, "_writer_class", staticmethod(lambda: FakeWriter))
    backend = TensorboardVisBackend(str(tmp_path / "tb"))
    backend.add_scalars({"loss": 0.5, "acc": np.float32(1.0)}, step=3, file_path="x.json")
    with pytest.warns(UserWarning, match="'name' is a str"):
        backend.add_scalar("name", "text", step=4)
    backend.add_config({"lr": 0.1})
    backend.close()
    writer = backend.experiment
    assert writer.log_dir == str(tmp_path / "tb")
    assert writer.calls == [
        ("scalar", "loss", 0.5, 3),
        ("scalar", "acc", np.float32(1.0), 3),
        ("text", "config", "lr = 0.1\n"),
        ("close",),
    ]


def test_tensorboard_backend_without_tensorboard_warns_once_and_does_nothing(tmp_path, monkeypatch):
    def missing():
        raise ImportError("No module named 'tensorboard'")

    monkeypatch.setattr(TensorboardVisBackend, "_writer_class", staticmethod(missing))
    monkeypatch.setattr(TensorboardVisBackend, "_warned", False)
    first, second = TensorboardVisBackend(str(tmp_path)), TensorboardVisBackend(str(tmp_path))
    with pytest.warns(UserWarning, match="tensorboard"):
        first.add_scalars({"loss": 1.0})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second.add_scalar("loss", 1.0)
        first.close()
    assert first.experiment is None
    assert list(tmp_path.iterdir()) == []


def test_only_a_configured_tensorboard_backend_warns_that_tensorboard_is_missing(tmp_path, monkeypatch):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "runner"))
    from runner_toys import toy_kwargs

    from fengine.runner import Runner

    def missing():
        raise ImportError("No module named 'tensorboard'")

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # RuntimeInfoHook's writer
    monkeypatch.setattr(TensorboardVisBackend, "_writer_class", staticmethod(missing))
    monkeypatch.setattr(TensorboardVisBackend, "_warned", False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        runner = Runner(**toy_kwargs(tmp_path / "plain"))
        runner.train()
    log = (tmp_path / "plain" / runner.timestamp / f"{runner.timestamp}.log").read_text()
    assert "tensorboard" not in log.lower()
    visualizer = dict(type="Visualizer", vis_backends=[dict(type="TensorboardVisBackend")])
    runner = Runner(**toy_kwargs(tmp_path / "tb", visualizer=visualizer))
    with pytest.warns(UserWarning, match="the `tensorboard` package is not installed"):
        runner.train()


def test_images_are_written_as_png_files_that_decode_to_the_pixels(tmp_path):
    import struct
    import zlib

    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 7
    backend = LocalVisBackend(str(tmp_path))
    backend.add_image("demo", image, step=4)
    data = (tmp_path / "vis_image" / "demo_4.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height, depth, colour = struct.unpack(">IIBB", data[16:26])
    assert (width, height, depth, colour) == (3, 2, 8, 2)
    (length,) = struct.unpack(">I", data[33:37])
    assert data[37:41] == b"IDAT"
    raw = zlib.decompress(data[41 : 41 + length])
    rows = [raw[i * 10 + 1 : (i + 1) * 10] for i in range(2)]  # a filter byte, then 3 RGB pixels
    assert raw[0] == raw[10] == 0 and b"".join(rows) == image.tobytes()
    with pytest.raises(ValueError, match=r"an image must be \(H, W, 3\) RGB or \(H, W\) grey, got shape \(2, 3, 4\)"):
        backend.add_image("bad", np.zeros((2, 3, 4)))
