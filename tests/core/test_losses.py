"""parse_losses: MMEngine's reduction rules, the 'loss' key decision, purity (spec §7.5, A19)."""

from __future__ import annotations

from collections import OrderedDict

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fengine.core import parse_losses


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values[0] if len(values) == 1 else list(values))


def test_a19_mixed_values_and_order() -> None:
    losses = {
        "loss": t(1.0),
        "loss_b": t(2.0, 4.0),
        "acc": t(0.5),
        "loss_list": [t(1.0, 3.0), t(5.0)],
    }
    loss, log_vars = parse_losses(losses)
    assert isinstance(loss, torch.Tensor)
    assert loss.item() == 11.0
    assert list(log_vars) == ["loss", "loss_b", "acc", "loss_list"]
    # fengine logs the optimised total under 'loss' (MMEngine would log the user's own 1.0 there).
    assert [float(v) for v in log_vars.values()] == [11.0, 3.0, 0.5, 7.0]
    assert isinstance(log_vars, OrderedDict)


def test_substring_rule_and_total_first() -> None:
    loss, log_vars = parse_losses({"loss_cls": t(1.0), "aux_loss": t(2.0), "top1": t(9.0)})
    assert float(loss) == 3.0
    assert [(k, float(v)) for k, v in log_vars.items()] == [
        ("loss", 3.0),
        ("loss_cls", 1.0),
        ("aux_loss", 2.0),
        ("top1", 9.0),
    ]


def test_list_values_sum_their_means() -> None:
    loss, log_vars = parse_losses({"loss_cls": t(1.0), "loss_list": [t(2.0), t(3.0)]})
    assert float(loss) == 6.0
    assert [(k, float(v)) for k, v in log_vars.items()] == [
        ("loss", 6.0),
        ("loss_cls", 1.0),
        ("loss_list", 5.0),
    ]


def test_no_loss_key_gives_int_zero() -> None:
    loss, log_vars = parse_losses({"acc": t(1.0)})
    assert loss == 0 and type(loss) is int
    assert log_vars["loss"] == 0 and float(log_vars["acc"]) == 1.0


def test_empty_list_reduces_to_int_zero() -> None:
    loss, log_vars = parse_losses({"loss_cls": t(1.0), "loss_list": []})
    assert float(loss) == 1.0 and log_vars["loss_list"] == 0


@pytest.mark.parametrize("bad", [1.0, 3, "x", (t(1.0), t(2.0)), [t(1.0), 2.0], None])
def test_non_tensor_values_are_a_type_error_naming_the_key(bad: object) -> None:
    with pytest.raises(TypeError, match=r"^loss_x is not a tensor or list of tensors.*'loss_x'"):
        parse_losses({"loss_ok": t(1.0), "loss_x": bad})  # type: ignore[dict-item]


def test_total_is_attached_and_log_vars_are_detached() -> None:
    w = torch.tensor([2.0, 3.0], requires_grad=True)
    loss, log_vars = parse_losses({"loss_a": w * 2, "loss_b": [w.sum()], "acc": w.max()})
    assert isinstance(loss, torch.Tensor) and loss.requires_grad
    assert all(not v.requires_grad for v in log_vars.values() if isinstance(v, torch.Tensor))
    loss.backward()
    assert w.grad is not None and w.grad.tolist() == [2.0, 2.0]  # d/dw mean(2w) + sum(w)


finite = st.floats(-1e3, 1e3, allow_nan=False, width=32)
names = st.sampled_from(["loss", "loss_cls", "aux_loss", "acc", "top1", "lossy", "l"])


@settings(max_examples=40, deadline=None)
@given(st.dictionaries(names, st.lists(finite, min_size=1, max_size=4), min_size=1))
def test_total_equals_direct_sum_and_inputs_untouched(raw: dict[str, list[float]]) -> None:
    losses = {k: torch.tensor(v) for k, v in raw.items()}
    versions = {k: v._version for k, v in losses.items()}
    snapshot = {k: v.clone() for k, v in losses.items()}
    loss, log_vars = parse_losses(losses)
    expected = sum((losses[k].mean() for k in raw if "loss" in k), 0)
    if isinstance(expected, int):
        assert loss == expected == 0
    else:
        assert torch.equal(torch.as_tensor(loss), expected)
    assert next(iter(log_vars)) == "loss" and set(log_vars) == {"loss", *raw}
    assert [k for k in log_vars if k != "loss"] == [k for k in raw if k != "loss"]
    for k, v in losses.items():
        assert v._version == versions[k] and torch.equal(v, snapshot[k])


def same_value(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal dtype and value, the sign of a zero included; NaN matches NaN."""
    if a.dtype != b.dtype:
        return False
    if bool(a.isnan()) or bool(b.isnan()):
        return bool(a.isnan()) and bool(b.isnan())
    return bool(a == b) and bool(torch.signbit(a) == torch.signbit(b))


@settings(max_examples=40, deadline=None)
@given(
    value=st.floats(allow_nan=True, allow_infinity=True, width=32) | st.just(-0.0),
    name=st.sampled_from(["loss", "loss_cls", "aux_loss"]),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.float16, torch.bfloat16]),
)
def test_a_single_scalar_loss_matches_the_general_rule_bit_for_bit(
    value: float, name: str, dtype: torch.dtype
) -> None:
    w = torch.tensor(value, dtype=dtype, requires_grad=True)
    loss, log_vars = parse_losses({name: w * 3})
    # The general rule, by hand: the total is ``0 + mean`` and every term is logged as its mean.
    w_ref = torch.tensor(value, dtype=dtype, requires_grad=True)
    term = (w_ref * 3).mean()
    total = 0 + term
    expected = OrderedDict(loss=total.detach())
    if name != "loss":
        expected[name] = term.detach()
    assert list(log_vars) == list(expected)
    for key, ref in expected.items():
        got = log_vars[key]
        assert isinstance(got, torch.Tensor) and not got.requires_grad
        assert same_value(got, ref), (key, got, ref)
    assert isinstance(loss, torch.Tensor) and loss.requires_grad and loss.dtype == dtype
    # The optimised tensor differs from the general rule's at most in the sign of a zero.
    assert same_value(0 + loss.detach(), total.detach())
    loss.backward()
    total.backward()
    assert w.grad is not None and w_ref.grad is not None
    assert same_value(w.grad, w_ref.grad)


@pytest.mark.parametrize(
    "losses", [{"loss": t(1.0, 2.0)}, {"acc": t(1.0)}, {"loss": torch.tensor(3)}]
)
def test_the_single_loss_path_leaves_other_shapes_to_the_general_rule(losses: dict) -> None:
    name, value = next(iter(losses.items()))
    if not value.is_floating_point():
        with pytest.raises(RuntimeError):  # torch cannot take the mean of an integer tensor
            parse_losses(losses)
        return
    loss, log_vars = parse_losses(losses)
    if "loss" in name:
        assert isinstance(loss, torch.Tensor) and float(loss) == float(value.mean())
    else:
        assert loss == 0 and type(loss) is int
    assert next(iter(log_vars)) == "loss"
