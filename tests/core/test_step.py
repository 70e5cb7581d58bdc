"""The pure train/eval steps against plain PyTorch loops, purity, donation, reducers and compile."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import attrs
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

import fengine.core as fc
from fengine.core import optim
from fengine.core.state import TrainState
from fengine.core.step import ModelView, make_eval_step, make_train_step
from fengine.testing.contracts import canonical

Batch = tuple[Tensor, Tensor]


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    # Tiny models: intra-op threads only add contention on a busy 2-core machine (up to 100x).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 3)
    )


def bn_net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3))


def batches(n: int, seed: int = 1, size: int = 8) -> list[Batch]:
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(size, 6, generator=g), torch.randint(0, 3, (size,), generator=g))
        for _ in range(n)
    ]


def ce(view: ModelView, batch: Batch) -> Tensor:
    x, y = batch
    return F.cross_entropy(view(x), y)


def torch_loop(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    data: list[Batch],
    grad_hook: Callable[[], None] = lambda: None,
) -> None:
    model.train()
    for x, y in data:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        grad_hook()
        opt.step()


def functional_loop(
    model: nn.Module, tx: Any, data: list[Batch], *, donate: bool = False, **kwargs: Any
) -> TrainState[Any]:
    step = make_train_step(model, ce, tx, **kwargs)
    state = TrainState.create(model, tx)
    for batch in data:
        state, _ = step(state, batch, donate=donate)
    return state


def assert_same_tensors(state: TrainState[Any], model: nn.Module) -> None:
    expected = {**dict(model.named_parameters()), **dict(model.named_buffers())}
    got = {**state.params, **state.buffers}
    assert got.keys() == expected.keys()
    for name, tensor in expected.items():
        assert got[name].dtype == tensor.dtype
        assert torch.equal(got[name], tensor.detach()), name


def snapshot(state: TrainState[Any]) -> tuple[Any, list[tuple[Tensor, int]]]:
    def tensors(value: Any) -> Iterator[Tensor]:
        if isinstance(value, Tensor):
            yield value
        elif isinstance(value, dict | tuple | list):
            for item in value.values() if isinstance(value, dict) else value:
                yield from tensors(item)
        elif hasattr(value, "__attrs_attrs__"):
            for field in value.__attrs_attrs__:
                yield from tensors(getattr(value, field.name))

    return canonical(state), [(t, t._version) for t in tensors(state)]


def assert_untouched(state: TrainState[Any], before: tuple[Any, list[tuple[Tensor, int]]]) -> None:
    picture, versions = before
    assert [t._version for t, _ in versions] == [v for _, v in versions]
    assert canonical(state) == picture


@pytest.mark.parametrize("donate", [False, True])
def test_sgd_momentum_100_steps_bit_identical_to_torch_loop(donate: bool) -> None:
    data = batches(100)
    reference = mlp()
    torch_loop(
        reference,
        torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9, foreach=True),
        data,
    )
    state = functional_loop(mlp(), optim.sgd(0.05, momentum=0.9), data, donate=donate)
    assert state.step == 100
    assert_same_tensors(state, reference)


def test_adamw_with_weight_decay_bit_identical_to_torch_loop() -> None:
    data = batches(100)
    reference = mlp()
    opt = torch.optim.AdamW(reference.parameters(), lr=3e-3, weight_decay=0.1, foreach=True)
    torch_loop(reference, opt, data)
    assert_same_tensors(
        functional_loop(mlp(), optim.adamw(3e-3, weight_decay=0.1), data), reference
    )


@pytest.mark.parametrize("donate", [False, True])
def test_batchnorm_buffers_follow_torch_loop(donate: bool) -> None:
    data = batches(30)
    reference = bn_net()
    torch_loop(
        reference,
        torch.optim.SGD(reference.parameters(), lr=0.05, momentum=0.9, foreach=True),
        data,
    )
    model = bn_net()
    state = functional_loop(model, optim.sgd(0.05, momentum=0.9), data, donate=donate)
    assert_same_tensors(state, reference)
    assert int(state.buffers["1.num_batches_tracked"]) == 30
    # The module itself is structure only: its own tensors never moved.
    assert int(model.get_buffer("1.num_batches_tracked")) == 0
    x = data[0][0]
    reference.eval()
    assert torch.equal(make_eval_step(model)(state, x), reference(x))


class TiedNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.enc = nn.Linear(6, 6)
        self.dec = nn.Linear(6, 6)
        self.dec.weight = self.enc.weight
        self.out = nn.Linear(6, 3)
        self.enc.bias.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(torch.tanh(self.dec(torch.relu(self.enc(x)))))


def test_frozen_and_tied_parameters_follow_torch_loop() -> None:
    data = batches(20)
    reference = TiedNet()
    trainable = [p for p in reference.parameters() if p.requires_grad]
    torch_loop(reference, torch.optim.SGD(trainable, lr=0.1, momentum=0.9, foreach=True), data)
    model = TiedNet()
    state = functional_loop(model, optim.sgd(0.1, momentum=0.9), data)
    assert "dec.weight" not in state.params
    assert torch.equal(state.params["enc.bias"], model.enc.bias)
    assert not torch.equal(state.params["enc.weight"], model.enc.weight)
    assert_same_tensors(state, reference)


def test_grad_reducer_output_is_what_the_optimizer_steps_on() -> None:
    data = batches(20)
    reference = mlp()
    opt = torch.optim.SGD(
        reference.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-2, foreach=True
    )

    def halve() -> None:
        for p in reference.parameters():
            assert p.grad is not None
            p.grad.mul_(0.5)

    torch_loop(reference, opt, data, grad_hook=halve)
    seen: list[list[str]] = []

    def reducer(grads: dict[str, Tensor]) -> dict[str, Tensor]:
        seen.append(list(grads))
        return {name: g * 0.5 for name, g in grads.items()}

    model = mlp()
    state = functional_loop(
        model, optim.sgd(0.1, momentum=0.9, weight_decay=1e-2), data, grad_reducer=reducer
    )
    assert_same_tensors(state, reference)
    assert seen == [[n for n, _ in model.named_parameters()]] * 20


def hyper_sgd(draw: st.DrawFn) -> Any:
    momentum = draw(st.sampled_from([0.0, 0.5, 0.9]))
    return optim.sgd(
        draw(st.floats(1e-3, 0.2)),
        momentum=momentum,
        weight_decay=draw(st.sampled_from([0.0, 1e-3])),
        nesterov=momentum > 0 and draw(st.booleans()),
    )


@st.composite
def setups(draw: st.DrawFn) -> tuple[nn.Module, Any, list[Batch]]:
    model = draw(st.sampled_from([mlp, bn_net]))(draw(st.integers(0, 100)))
    kind = draw(st.sampled_from(["sgd", "adam", "clipped"]))
    if kind == "sgd":
        tx = hyper_sgd(draw)
    elif kind == "adam":
        tx = optim.adam(draw(st.floats(1e-4, 1e-2)), amsgrad=draw(st.booleans()))
    else:
        tx = optim.chain(optim.clip_grad_norm(draw(st.floats(0.01, 2.0))), hyper_sgd(draw))
    return model, tx, batches(draw(st.integers(1, 4)), seed=draw(st.integers(0, 100)))


@settings(max_examples=25, deadline=None)
@given(setups())
def test_pure_step_leaves_its_input_state_untouched(
    setup: tuple[nn.Module, Any, list[Batch]],
) -> None:
    model, tx, data = setup
    step = make_train_step(model, ce, tx)
    state = TrainState.create(model, tx)
    for batch in data:
        before = snapshot(state)
        new_state, _ = step(state, batch)
        assert_untouched(state, before)
        state = new_state


@settings(max_examples=25, deadline=None)
@given(setups())
def test_donated_steps_are_bit_identical_to_pure_steps(
    setup: tuple[nn.Module, Any, list[Batch]],
) -> None:
    model, tx, data = setup
    step = make_train_step(model, ce, tx)
    pure = TrainState.create(model, tx)
    donated = TrainState.from_dict(copy.deepcopy(pure.to_dict()))
    for batch in data:
        pure, pure_out = step(pure, batch)
        donated, donated_out = step(donated, batch, donate=True)
        assert torch.equal(pure_out.loss, donated_out.loss)
    assert canonical(pure.to_dict()) == canonical(donated.to_dict())


def test_step_advances_counter_and_shares_other_fields() -> None:
    tx = optim.sgd(0.1)
    state = attrs.evolve(
        fc.TrainState.create(mlp(), tx),
        step=4,
        ema=fc.ema.ExponentialMovingAverage(momentum=0.5).init({}),
        epoch=3,
        iter=7,
        inner_iter=2,
        rng=fc.RngState.capture(),
        hook_states={"h": 1},
    )
    with torch.no_grad():  # e.g. called from inside an evaluation loop
        new, out = make_train_step(mlp(), ce, tx)(state, batches(1)[0])
    assert not torch.equal(new.params["0.weight"], state.params["0.weight"])
    assert (new.step, new.epoch, new.iter, new.inner_iter) == (5, 3, 7, 2)
    for field in attrs.fields(fc.TrainState):
        if field.name not in ("params", "buffers", "opt_state", "step"):
            assert getattr(new, field.name) is getattr(state, field.name), field.name
    assert out.grad_norm is None
    assert set(out.log_vars) == {"loss"} and torch.equal(out.log_vars["loss"], out.loss)
    assert not out.loss.requires_grad


def test_dict_losses_are_parsed_and_clip_norm_is_reported() -> None:
    data = batches(5)
    reference = mlp()
    opt = torch.optim.SGD(reference.parameters(), lr=0.1, foreach=True)
    norms = []
    for x, y in data:
        opt.zero_grad()
        out = reference(x)
        (F.cross_entropy(out, y) + 0.1 * out.pow(2).mean()).backward()
        norms.append(torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.5, foreach=True))
        opt.step()

    def losses(view: ModelView, batch: Batch) -> dict[str, Any]:
        out = view(batch[0])
        return {
            "loss_cls": F.cross_entropy(out, batch[1]),
            "loss_reg": [0.1 * out.pow(2).mean()],
            "acc": out.sum(),
        }

    tx = optim.chain(optim.clip_grad_norm(0.5), optim.sgd(0.1))
    step = make_train_step(mlp(), losses, tx)
    state = TrainState.create(mlp(), tx)
    for batch, norm in zip(data, norms):
        state, out = step(state, batch)
        assert out.grad_norm is not None and torch.equal(out.grad_norm, norm)
        assert list(out.log_vars) == ["loss", "loss_cls", "loss_reg", "acc"]
        assert torch.equal(out.loss, out.log_vars["loss_cls"] + out.log_vars["loss_reg"])
    assert_same_tensors(state, reference)


def test_eval_step_runs_in_eval_mode_without_grad_and_writes_nothing() -> None:
    model = bn_net()
    tx = optim.sgd(0.1)
    state, _ = make_train_step(model, ce, tx)(TrainState.create(model, tx), batches(1)[0])
    assert model.training
    before = snapshot(state)
    x = batches(1, seed=5)[0][0]
    out = make_eval_step(model)(state, x)
    assert not model.training and not out.requires_grad
    assert_untouched(state, before)
    reference = bn_net()
    reference.load_state_dict({**state.params, **state.buffers})
    assert torch.equal(out, reference.eval()(x))
    picked = make_eval_step(model, lambda view, x: view.apply(view.module[0], x))(state, x)
    assert torch.equal(picked, F.linear(x, state.params["0.weight"], state.params["0.bias"]))


def test_compiled_step_matches_eager_after_50_steps() -> None:
    # One tiny model keeps the one-off inductor compilation to a few seconds.
    data = batches(50)
    tx = optim.sgd(0.05, momentum=0.9)
    eager = functional_loop(bn_net(), tx, data)
    compiled = functional_loop(bn_net(), tx, data, compile=True)
    for name, tensor in {**eager.params, **eager.buffers}.items():
        torch.testing.assert_close(
            compiled.params.get(name, compiled.buffers.get(name)), tensor, rtol=1e-5, atol=1e-7
        )


@pytest.mark.parametrize(
    ("result", "error", "match"),
    [
        (lambda out: out, ValueError, "0-dim"),
        (lambda out: "x", TypeError, "scalar Tensor, a dict of losses or a .loss, log_vars. pair"),
        (lambda out: {"acc": out.mean()}, ValueError, "no key containing 'loss'"),
        (lambda out: {"loss": 3}, TypeError, "losses\\['loss'\\]"),
    ],
)
def test_bad_loss_results_are_named(
    result: Callable[[Tensor], Any], error: type[Exception], match: str
) -> None:
    tx = optim.sgd(0.1)
    step = make_train_step(mlp(), lambda view, batch: result(view(batch[0])), tx)
    with pytest.raises(error, match=match):
        step(TrainState.create(mlp(), tx), batches(1)[0])


def test_bad_arguments_and_mismatched_state_are_named() -> None:
    tx = optim.sgd(0.1)
    with pytest.raises(TypeError, match=r"torch\.nn\.Module"):
        make_train_step("net", ce, tx)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="loss_fn"):
        make_train_step(mlp(), 3, tx)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tx must be"):
        make_train_step(mlp(), ce, object())
    with pytest.raises(TypeError, match="compile"):
        make_train_step(mlp(), ce, tx, compile="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="forward"):
        make_eval_step(mlp(), forward=3)  # type: ignore[arg-type]
    model = bn_net()
    state = TrainState.create(model, tx)
    without_mean = {n: b for n, b in state.buffers.items() if n != "1.running_mean"}
    broken = TrainState(params=state.params, buffers=without_mean, opt_state=state.opt_state)
    with pytest.raises(KeyError, match=r"1\.running_mean"):
        make_train_step(model, ce, tx)(broken, batches(1)[0])
    # The failed call put the module's own tensors back.
    assert all(isinstance(p, nn.Parameter) for p in model.parameters())


@settings(max_examples=20, deadline=None)
@given(setups())
def test_a_donated_step_over_the_modules_own_tensors_is_bit_identical_to_pure_steps(
    setup: tuple[nn.Module, Any, list[Batch]],
) -> None:
    """A state made of the module's own tensors (the Runner's record): the module runs as it is.

    Same numbers as the pure step bit for bit; the tensors stay the module's (updated in place,
    the buffer mapping kept), and ``.grad`` stays untouched (``autograd.grad`` of leaves).
    """
    model, tx, data = setup
    step = make_train_step(model, ce, tx)
    pure = TrainState.create(model, tx)
    names = {n for n, _ in model.named_parameters()}
    own = model.state_dict(keep_vars=True)
    held = attrs.evolve(
        pure,
        params={n: t for n, t in own.items() if n in names},
        buffers={n: t for n, t in own.items() if n not in names},
        opt_state=tx.init(dict(model.named_parameters())),
    )
    for batch in data:
        pure, pure_out = step(pure, batch)
        before = (held.params, held.buffers)
        held, held_out = step(held, batch, donate=True)
        assert torch.equal(pure_out.loss, held_out.loss)
        assert held.buffers is before[1]
        assert all(held.params[n] is t for n, t in before[0].items())
    assert all(held.params[n] is p and p.grad is None for n, p in model.named_parameters())
    assert canonical(pure.to_dict()) == canonical(held.to_dict())
