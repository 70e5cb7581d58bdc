"""BaseDataPreprocessor.cast_data and ImgDataPreprocessor (spec §7.3, §7.4, A20, A21)."""

from __future__ import annotations

import math
from collections import OrderedDict, namedtuple
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from fengine.model import BaseDataPreprocessor, ImgDataPreprocessor
from fengine.registry import MODELS

NT = namedtuple("NT", ["a", "b"])


class Sample:
    """A data-sample object: anything with ``to`` is moved like a tensor."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def to(self, *args: Any, **kwargs: Any) -> Sample:
        self.calls.append((args, kwargs))
        return self


def test_a20_cast_data_structure() -> None:
    tensor = torch.ones(2)
    data = OrderedDict(x=[tensor, (tensor, "str")], y=NT(1, tensor), z=None, w=b"b", n=3.5)
    out = BaseDataPreprocessor().cast_data(data)
    assert type(out) is dict and list(out) == ["x", "y", "z", "w", "n"]
    assert type(out["x"]) is list and type(out["x"][1]) is tuple and out["x"][1][1] == "str"
    assert type(out["y"]) is NT and out["y"].a == 1 and torch.equal(out["y"].b, tensor)
    assert out["z"] is None and out["w"] == b"b" and out["n"] == 3.5
    assert type(BaseDataPreprocessor().cast_data((tensor, 1))) is tuple


def test_cast_data_leaves_numpy_and_moves_samples_non_blocking() -> None:
    array = np.ones(3)
    sample = Sample()
    out = BaseDataPreprocessor(non_blocking=True)({"a": array, "s": [sample]}, training=True)
    assert out["a"] is array
    assert sample.calls == [((torch.device("cpu"),), {"non_blocking": True})]


def test_device_follows_to_and_cpu() -> None:
    pre = BaseDataPreprocessor()
    assert pre.device == torch.device("cpu")
    pre.to("meta")
    assert pre.device == torch.device("meta")
    assert pre({"x": torch.ones(1)})["x"].device.type == "meta"
    pre.to(torch.float64)  # dtype only: the device stays
    assert pre.device == torch.device("meta")
    pre.cpu()
    assert pre.device == torch.device("cpu")


def test_a21_list_and_batched_tensor() -> None:
    x = torch.arange(18, dtype=torch.uint8).view(3, 2, 3)
    pre = ImgDataPreprocessor(
        mean=[1, 2, 3], std=[1, 1, 2], bgr_to_rgb=True, pad_size_divisor=4, pad_value=-1
    )
    out = pre({"inputs": [x]})
    inputs = out["inputs"]
    assert (
        inputs.shape == (1, 3, 4, 4)
        and inputs.dtype == torch.float32
        and out["data_samples"] is None
    )
    assert inputs[0, 0, :2].tolist() == [[11, 12, 13, -1], [14, 15, 16, -1]]
    assert inputs[0, 1, :2].tolist() == [[4, 5, 6, -1], [7, 8, 9, -1]]
    assert inputs[0, 2, :2].tolist() == [[-1.5, -1, -0.5, -1], [0, 0.5, 1, -1]]
    assert inputs[0, :, 2:].eq(-1).all()
    assert torch.equal(pre({"inputs": x[None]})["inputs"], inputs)
    assert pre.state_dict() == OrderedDict()
    assert {name for name, _ in pre.named_buffers()} == {"mean", "std"}


def test_a21_two_sizes_rgb_to_bgr() -> None:
    pre = ImgDataPreprocessor(
        mean=[127.5], std=[1, 2, 3], pad_size_divisor=16, pad_value=10, rgb_to_bgr=True
    )
    images = [torch.randint(0, 255, (3, 10, 10)), torch.randint(0, 255, (3, 15, 15))]
    out = pre({"inputs": images, "data_samples": ["a", "b"]})
    assert out["inputs"].shape == (2, 3, 16, 16) and out["data_samples"] == ["a", "b"]
    assert out["inputs"][0, :, 10:].eq(10).all() and out["inputs"][0, :, :, 10:].eq(10).all()
    assert out["inputs"][1, :, 15:].eq(10).all() and out["inputs"][1, :, :, 15:].eq(10).all()
    expected = (images[1].flip(0).float() - 127.5) / torch.tensor([1.0, 2, 3]).view(3, 1, 1)
    assert torch.equal(out["inputs"][1, :, :15, :15], expected)


def direct(
    images: list[torch.Tensor],
    mean: list[float] | None,
    std: list[float] | None,
    flip: bool,
    divisor: int,
    pad_value: float,
) -> torch.Tensor:
    """The computation written out element-wise in numpy, float32 as torch does it."""
    step = max(divisor, 1)
    height = math.ceil(max(i.shape[1] for i in images) / step) * step
    width = math.ceil(max(i.shape[2] for i in images) / step) * step
    out = np.full((len(images), images[0].shape[0], height, width), pad_value, dtype=np.float32)
    for n, image in enumerate(images):
        arr = image.numpy().astype(np.float32)
        if flip:
            arr = arr[::-1]
        if mean is not None and std is not None:
            arr = (arr - np.array(mean, np.float32)[:, None, None]) / np.array(std, np.float32)[
                :, None, None
            ]
        out[n, :, : arr.shape[1], : arr.shape[2]] = arr
    return torch.from_numpy(out)


@settings(max_examples=40, deadline=None)
@given(
    channels=st.sampled_from([1, 3]),
    divisor=st.integers(0, 8),
    flip=st.booleans(),
    normalize=st.booleans(),
    pad_value=st.floats(-3, 3, allow_nan=False, width=32),
    same_size=st.booleans(),
    data=st.data(),
)
def test_preprocessor_equals_direct_computation(
    channels: int,
    divisor: int,
    flip: bool,
    normalize: bool,
    pad_value: float,
    same_size: bool,
    data: st.DataObject,
) -> None:
    flip = flip and channels == 3
    count = data.draw(st.integers(1, 3))
    sizes = [
        (data.draw(st.integers(1, 9)), data.draw(st.integers(1, 9)))
        for _ in range(1 if same_size else count)
    ]
    sizes = sizes * count if same_size else sizes
    images = [torch.randint(0, 256, (channels, h, w), dtype=torch.uint8) for h, w in sizes]
    values = st.floats(0.5, 200, allow_nan=False, width=32)
    mean = data.draw(st.lists(values, min_size=channels, max_size=channels)) if normalize else None
    std = data.draw(st.lists(values, min_size=channels, max_size=channels)) if normalize else None
    pre = ImgDataPreprocessor(mean, std, divisor, pad_value, bgr_to_rgb=flip)
    expected = direct(images, mean, std, flip, divisor, pad_value)
    snapshot = [i.clone() for i in images]
    out = pre({"inputs": images})["inputs"]
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-5)
    assert all(torch.equal(a, b) for a, b in zip(images, snapshot))
    if same_size:
        torch.testing.assert_close(
            pre({"inputs": torch.stack(images)})["inputs"], expected, rtol=1e-6, atol=1e-5
        )


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(bgr_to_rgb=True, rgb_to_bgr=True), "cannot both be True"),
        (dict(mean=[1, 2, 3]), "both None"),
        (dict(std=[1, 2, 3]), "both None"),
        (dict(mean=[1, 2], std=[1, 2, 3]), r"mean must have 1 or 3 values.*\[1, 2\]"),
        (dict(mean=[1], std=[1, 2, 3, 4]), "std must have 1 or 3 values"),
        (dict(pad_size_divisor=-2), "pad_size_divisor"),
    ],
)
def test_constructor_errors(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ImgDataPreprocessor(**kwargs)


def test_channel_count_errors() -> None:
    with pytest.raises(ValueError, match=r"3 channels.*\(1, 4, 4\)"):
        ImgDataPreprocessor(bgr_to_rgb=True)({"inputs": [torch.ones(1, 4, 4)]})
    with pytest.raises(ValueError, match=r"mean/std with 3 values.*\(2, 4, 4\)"):
        ImgDataPreprocessor(mean=[1, 2, 3], std=[1])({"inputs": [torch.ones(2, 4, 4)]})
    with pytest.raises(ValueError, match=r"3 channels in dim 1.*\(1, 4, 4, 4\)"):
        ImgDataPreprocessor(mean=[1], std=[1, 2, 3])({"inputs": torch.ones(1, 4, 4, 4)})
    with pytest.raises(ValueError, match="must be 4-D"):
        ImgDataPreprocessor()({"inputs": torch.ones(3, 4, 4)})


def test_input_type_errors() -> None:
    pre = ImgDataPreprocessor()
    with pytest.raises(TypeError, match="expects a dict"):
        pre((torch.ones(1, 3, 2, 2),))
    with pytest.raises(KeyError, match="'inputs'"):
        pre({"img": torch.ones(1, 3, 2, 2)})
    with pytest.raises(TypeError, match="data\\['inputs'\\] must be a tensor"):
        pre({"inputs": np.ones((1, 3, 2, 2))})


class AddOne(nn.Module):
    def forward(self, inputs: torch.Tensor, data_samples: Any) -> tuple[torch.Tensor, Any]:
        return inputs + 1, [*data_samples, "aug"]


MODELS.register_module(module=AddOne, name="TestAddOneAugment", force=True)


def test_batch_augments_run_in_training_only_and_in_order() -> None:
    def double(inputs: torch.Tensor, samples: Any) -> tuple[torch.Tensor, Any]:
        return inputs * 2, samples

    pre = ImgDataPreprocessor(batch_augments=[dict(type="TestAddOneAugment"), double])
    data = {"inputs": [torch.zeros(1, 2, 2)], "data_samples": ["s"]}
    trained = pre(data, training=True)
    assert trained["inputs"].eq(2).all() and trained["data_samples"] == ["s", "aug"]
    evaluated = pre(data, training=False)
    assert evaluated["inputs"].eq(0).all() and evaluated["data_samples"] == ["s"]
    assert data["data_samples"] == ["s"]  # the caller's batch is not modified
    modules_only = ImgDataPreprocessor(batch_augments=[dict(type="TestAddOneAugment")])
    assert isinstance(modules_only.batch_augments, nn.ModuleList)


def test_built_from_registry() -> None:
    pre = MODELS.build(dict(type="ImgDataPreprocessor", mean=[0.0], std=[2.0]))
    assert isinstance(pre, ImgDataPreprocessor)
    assert pre({"inputs": [torch.full((1, 1, 1), 4.0)]})["inputs"].item() == 2.0
