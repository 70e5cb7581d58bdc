"""stack_batch, merge_dict and detect_anomalous_params (spec §7.7, A22 and the extra checks)."""

from __future__ import annotations

import logging
import math

import pytest
import torch
import torch.fx
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import fengine.model.utils
from fengine.model import detect_anomalous_params, merge_dict, stack_batch


def test_a22_images_padded_to_divisor() -> None:
    out = stack_batch(
        [torch.ones(3, 10, 10), torch.ones(3, 15, 15)], pad_size_divisor=16, pad_value=10
    )
    assert out.shape == (2, 3, 16, 16)
    assert out[0, 0, 9, 9] == 1 and out[0, 0, 10, 10] == 10 and out[1, 0, 15, 15] == 10
    assert out[1, 0, 14, 14] == 1


def test_a22_default_pads_to_largest_with_zeros() -> None:
    out = stack_batch([torch.ones(1, 5, 7), torch.ones(1, 6, 3)])
    assert out.shape == (2, 1, 6, 7)
    assert out[0, 0, 5].eq(0).all() and out[1, 0, :, 3:].eq(0).all()
    assert out[0, 0, :5].eq(1).all() and out[1, 0, :, :3].eq(1).all()


def test_equal_shapes_still_round_up_to_divisor() -> None:
    assert stack_batch([torch.ones(3, 10, 10)] * 2, 16).shape == (2, 3, 16, 16)
    plain = [torch.randn(2, 4, 4), torch.randn(2, 4, 4)]
    assert torch.equal(stack_batch(plain, 4), torch.stack(plain))
    assert torch.equal(stack_batch(plain, 1), torch.stack(plain))


def test_divisor_zero_and_one_mean_no_rounding() -> None:
    images = [torch.ones(1, 5, 7), torch.ones(1, 6, 3)]
    assert torch.equal(stack_batch(images, 0), stack_batch(images, 1))


def test_integer_dtype_keeps_dtype_and_casts_pad_value() -> None:
    out = stack_batch([torch.ones(3, 4, 5, dtype=torch.uint8)], 4, 2.5)
    assert out.dtype == torch.uint8 and out.shape == (1, 3, 4, 8) and out[0, 0, 0, 7] == 2


@pytest.mark.parametrize(
    ("arg", "error"),
    [
        ((torch.ones(1, 2),), TypeError),
        ([torch.ones(1, 2), "x"], TypeError),
        ([], ValueError),
        ([torch.ones(1, 2), torch.ones(1, 2, 3)], ValueError),
        ([torch.ones(2, 5), torch.ones(3, 5)], ValueError),
        ([torch.ones(5), torch.ones(6)], ValueError),
    ],
)
def test_bad_inputs_are_clear_errors(arg: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="stack_batch"):
        stack_batch(arg)  # type: ignore[arg-type]


def test_negative_divisor_rejected() -> None:
    with pytest.raises(ValueError, match="pad_size_divisor"):
        stack_batch([torch.ones(1, 2)], -1)


@settings(max_examples=40, deadline=None)
@given(
    ndim=st.integers(1, 3),
    channels=st.integers(1, 3),
    divisor=st.integers(0, 7),
    pad_value=st.floats(-5, 5, allow_nan=False),
    data=st.data(),
)
def test_smallest_multiple_and_inputs_top_left(
    ndim: int, channels: int, divisor: int, pad_value: float, data: st.DataObject
) -> None:
    count = data.draw(st.integers(1, 4))
    sizes = [
        data.draw(st.lists(st.integers(1, 9), min_size=ndim - 1, max_size=ndim - 1))
        for _ in range(count)
    ]
    tensors = [torch.randn(channels, *s) for s in sizes]
    versions = [t._version for t in tensors]
    out = stack_batch(tensors, divisor, pad_value)
    step = max(divisor, 1)
    expected = [channels] + [math.ceil(max(dim) / step) * step for dim in zip(*sizes)]
    assert list(out.shape) == [count, *expected]
    for dim, size in enumerate(expected[1:]):
        # smallest: one step less would not hold the largest input
        assert size - step < max(s[dim] for s in sizes)
    for slot, tensor in zip(out, tensors):
        corner = tuple(slice(0, n) for n in tensor.shape)
        assert torch.equal(slot[corner], tensor)
        mask = torch.ones_like(slot, dtype=torch.bool)
        mask[corner] = False
        assert slot[mask].eq(torch.tensor(pad_value, dtype=slot.dtype)).all()
    assert [t._version for t in tensors] == versions


# -- merge_dict ------------------------------------------------------------------------------

keys = st.text("abcdef", min_size=1, max_size=3)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.dictionaries(keys, st.integers(), max_size=5), min_size=3, max_size=3))
def test_merge_dict_associative_for_disjoint_keys(raw: list[dict[str, int]]) -> None:
    a, b, c = raw
    b = {k: v for k, v in b.items() if k not in a}  # make the three key sets disjoint
    c = {k: v for k, v in c.items() if k not in a and k not in b}
    snapshot = [dict(a), dict(b), dict(c)]
    left, right = merge_dict(merge_dict(a, b), c), merge_dict(a, merge_dict(b, c))
    assert left == right == merge_dict(a, b, c) == {**a, **b, **c}
    assert [a, b, c] == snapshot


def test_merge_dict_later_wins_and_returns_new_dict() -> None:
    first = {"x": 1, "y": 2}
    merged = merge_dict(first, {"y": 3})
    assert merged == {"x": 1, "y": 3} and merged is not first and first == {"x": 1, "y": 2}
    assert merge_dict() == {}


def test_merge_dict_rejects_non_dicts() -> None:
    with pytest.raises(TypeError, match="argument 1 must be a dict"):
        merge_dict({}, [("a", 1)])  # type: ignore[arg-type]


def test_merge_dict_is_opaque_to_fx_tracing() -> None:
    # torch.fx.wrap patches the name in the defining module, so calls through it become graph nodes.
    class UsesMerge(nn.Module):
        def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
            return fengine.model.utils.merge_dict({"a": x}, {"b": x + 1})

    traced = torch.fx.symbolic_trace(UsesMerge())
    assert any(
        node.op == "call_function" and node.target is merge_dict for node in traced.graph.nodes
    )
    out = traced(torch.zeros(1))
    assert set(out) == {"a", "b"} and out["b"].item() == 1.0


# -- detect_anomalous_params -----------------------------------------------------------------


class ThreeLayers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.c = nn.Linear(2, 1), nn.Linear(2, 1), nn.Linear(2, 1)
        self.c.requires_grad_(False)


def test_unreached_parameters_logged_at_error_and_returned(
    caplog: pytest.LogCaptureFixture,
) -> None:
    model = ThreeLayers()
    loss = model.a(torch.ones(1, 2)).sum()
    with caplog.at_level(logging.ERROR, logger="fengine"):
        found = detect_anomalous_params(loss, model)
    assert found == {
        "b.weight": "not in the computational graph",
        "b.bias": "not in the computational graph",
    }
    records = [r for r in caplog.records if r.name == "fengine"]
    assert [r.levelno for r in records] == [logging.ERROR, logging.ERROR]
    assert (
        records[0].getMessage()
        == "b.weight with shape torch.Size([1, 2]) is not in the computational graph \n"
    )
    assert records[1].getMessage().startswith("b.bias with shape torch.Size([1])")


def test_non_finite_parameters_reported_with_both_reasons() -> None:
    model = ThreeLayers()
    with torch.no_grad():
        model.a.weight[0, 0] = float("nan")
        model.b.bias.fill_(float("inf"))
        model.c.weight.fill_(float("-inf"))
    loss = model.a(torch.ones(1, 2)).sum()
    found = detect_anomalous_params(loss, model)
    assert found == {
        "a.weight": "holds NaN or Inf",
        "b.weight": "not in the computational graph",
        "b.bias": "not in the computational graph; holds NaN or Inf",
        "c.weight": "holds NaN or Inf",
    }


def test_nothing_anomalous_after_backward_through_deep_shared_graph() -> None:
    layer = nn.Linear(3, 3)
    x = torch.ones(1, 3)
    for _ in range(
        2000
    ):  # deeper than Python's recursion limit; the layer is reused (shared nodes)
        x = layer(x).tanh()
    loss = x.sum()
    loss.backward()
    assert detect_anomalous_params(loss, layer) == {}


def test_loss_without_graph_reaches_nothing() -> None:
    assert set(detect_anomalous_params(torch.tensor(1.0), nn.Linear(1, 1))) == {"weight", "bias"}
