"""TrainState: creation from a module, the strict plain-dict round trip, RNG snapshots, resuming."""

from __future__ import annotations

import io
import random
from collections.abc import Iterator
from typing import Any

import attrs
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from fengine.core import optim, plain
from fengine.core.ema import EMAState, ExponentialMovingAverage
from fengine.core.state import RngState, TrainState
from fengine.core.step import ModelView, make_train_step
from fengine.testing.contracts import canonical


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@plain.register("tests.state.Counter")
@attrs.frozen(eq=False)
class Counter:
    """A hook state as hooks keep them: a record with numbers, text and a tensor."""

    count: int
    best: float | None
    last: Tensor
    tags: tuple[str, ...]


def save_load(data: Any) -> Any:
    buffer = io.BytesIO()
    torch.save(data, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))


names = st.lists(
    st.from_regex(r"[a-z]{1,3}(\.[a-z0-9]{1,2}){0,2}", fullmatch=True), max_size=4, unique=True
)
shapes = st.lists(st.integers(0, 3), max_size=3).map(tuple)
dtypes = st.sampled_from(
    [torch.float32, torch.float64, torch.bfloat16, torch.float16, torch.int64, torch.bool]
)


@st.composite
def tensors(draw: st.DrawFn, dtype: st.SearchStrategy[torch.dtype] = dtypes) -> Tensor:
    g = torch.Generator().manual_seed(draw(st.integers(0, 2**16)))
    t = torch.randn(draw(shapes), generator=g, dtype=torch.float64) * 100
    return t.to(draw(dtype))


@st.composite
def optimizer_states(draw: st.DrawFn, params: dict[str, Tensor]) -> Any:
    tx = draw(
        st.sampled_from(
            [
                optim.sgd(0.1, momentum=0.9),
                optim.adam(1e-3, amsgrad=True),
                optim.chain(optim.clip_grad_norm(1.0), optim.sgd(0.1)),
                optim.accumulate(optim.adamw(1e-3), every=2),
            ]
        )
    )
    state = tx.init(params)
    for _ in range(draw(st.integers(0, 2))):
        grads = {n: torch.randn_like(p) for n, p in params.items()}
        params, state = tx.update(grads, state, params)
    return state


plain_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def rng_states(draw: st.DrawFn) -> RngState:
    seed = draw(st.integers(0, 2**31 - 1))
    numpy_rng = np.random.RandomState(seed)
    numpy_rng.standard_normal()  # leaves a cached gaussian in the state
    name, keys, pos, has_gauss, cached = numpy_rng.get_state(legacy=True)
    return RngState(
        torch_cpu=torch.Generator().manual_seed(seed).get_state(),
        numpy=(
            str(name),
            torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            int(pos),
            int(has_gauss),
            float(cached),
        ),
        python=random.Random(seed).getstate(),
    )


@st.composite
def train_states(draw: st.DrawFn) -> TrainState[Any]:
    params = {
        n: draw(tensors(st.sampled_from([torch.float32, torch.float64]))) for n in draw(names)
    }
    buffers = {n: draw(tensors()) for n in draw(names)}
    ema = None
    if draw(st.booleans()):
        averager = ExponentialMovingAverage(momentum=draw(st.floats(0.01, 0.99)))
        ema = averager.update(averager.init(params, buffers), params, buffers)
    hooks = {
        "CheckpointHook": Counter(
            draw(st.integers()), draw(st.none() | st.floats()), draw(tensors()), ("a", "b")
        ),
        "LoggerHook": draw(plain_values),
    }
    return TrainState(
        params=params,
        buffers=buffers,
        opt_state=draw(optimizer_states(params)),
        step=draw(st.integers(0, 10**9)),
        ema=ema,
        epoch=draw(st.integers(0, 1000)),
        iter=draw(st.integers(0, 10**9)),
        inner_iter=draw(st.integers(0, 10**6)),
        rng=draw(st.none() | rng_states()),
        hook_states=hooks,
    )


@settings(max_examples=40, deadline=None)
@given(train_states())
def test_round_trip_through_torch_save_and_weights_only_load_is_exact(
    state: TrainState[Any],
) -> None:
    data = state.to_dict()
    restored = TrainState.from_dict(save_load(data))
    for name in ("params", "buffers"):
        original, back = getattr(state, name), getattr(restored, name)
        assert list(back) == list(original)
        for key, tensor in original.items():
            assert back[key].dtype == tensor.dtype and torch.equal(back[key], tensor)
    assert (restored.step, restored.epoch, restored.iter, restored.inner_iter) == (
        state.step,
        state.epoch,
        state.iter,
        state.inner_iter,
    )
    assert type(restored.opt_state) is type(state.opt_state)
    assert isinstance(restored.hook_states["CheckpointHook"], Counter)
    assert canonical(restored) == canonical(state)


def test_create_copies_detached_tensors_and_initialises_optimizer_and_ema() -> None:
    model = net()
    tx = optim.sgd(0.1, momentum=0.9)
    state = TrainState.create(model, tx, averager=ExponentialMovingAverage(momentum=0.1))
    assert list(state.params) == [n for n, _ in model.named_parameters()]
    assert list(state.buffers) == [n for n, _ in model.named_buffers()]
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        copy = {**state.params, **state.buffers}[name]
        assert torch.equal(copy, tensor) and copy.data_ptr() != tensor.data_ptr()
        assert not copy.requires_grad
    assert state.opt_state.names == tuple(state.params)
    assert isinstance(state.ema, EMAState) and state.ema.steps == 0
    assert torch.equal(state.ema.params["0.weight"], model[0].weight)
    assert (
        state.step,
        state.epoch,
        state.iter,
        state.inner_iter,
        state.rng,
        dict(state.hook_states),
    ) == (0, 0, 0, 0, None, {})


def test_create_rejects_non_modules_and_non_transforms() -> None:
    with pytest.raises(TypeError, match=r"model must be a torch\.nn\.Module"):
        TrainState.create({"w": torch.zeros(1)}, optim.sgd(0.1))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="tx must be an optimizer transform"):
        TrainState.create(net(), "sgd")


def test_from_dict_is_strict_and_lists_missing_and_unknown_keys() -> None:
    data = TrainState.create(net(), optim.sgd(0.1)).to_dict()
    del data["ema"], data["inner_iter"]
    data["message_hub"] = {}
    with pytest.raises(KeyError) as info:
        TrainState.from_dict(data)
    message = str(info.value)
    assert (
        "missing keys ['ema', 'inner_iter']" in message
        and "unknown keys ['message_hub']" in message
    )


@pytest.mark.parametrize(
    ("key", "value", "match"),
    [
        ("params", {"w": [1.0]}, r"params\['w'\]"),
        ("buffers", [torch.zeros(1)], "'buffers' must be a mapping"),
        ("step", 1.5, "'step' must be an int"),
        ("iter", True, "'iter' must be an int"),
        ("hook_states", [], "'hook_states' must be a mapping"),
    ],
)
def test_from_dict_names_badly_typed_fields(key: str, value: Any, match: str) -> None:
    data = TrainState.create(net(), optim.sgd(0.1)).to_dict()
    data[key] = value
    with pytest.raises(TypeError, match=match):
        TrainState.from_dict(data)


def draws() -> tuple[Tensor, float, float]:
    return torch.rand(3), float(np.random.rand()), random.random()


def test_rng_restore_replays_every_generator_even_after_a_checkpoint() -> None:
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    snapshot = RngState.capture()
    first = draws()
    stored = save_load(TrainState(params={}, buffers={}, opt_state=None, rng=snapshot).to_dict())
    draws()
    TrainState.from_dict(stored).rng.restore()  # type: ignore[union-attr]
    again = draws()
    assert torch.equal(first[0], again[0]) and first[1:] == again[1:]


def test_resuming_from_a_saved_state_continues_bit_identically() -> None:
    model = net()
    tx = optim.chain(optim.clip_grad_norm(1.0), optim.adamw(1e-2))

    def loss(view: ModelView, batch: tuple[Tensor, Tensor]) -> Tensor:
        return F.cross_entropy(view(batch[0]), batch[1])

    step = make_train_step(model, loss, tx)
    g = torch.Generator().manual_seed(0)
    data = [
        (torch.randn(8, 4, generator=g), torch.randint(0, 2, (8,), generator=g)) for _ in range(10)
    ]
    straight = TrainState.create(model, tx)
    for batch in data:
        straight, _ = step(straight, batch)
    resumed = TrainState.create(model, tx)
    for batch in data[:5]:
        resumed, _ = step(resumed, batch)
    resumed = TrainState.from_dict(save_load(resumed.to_dict()))
    for batch in data[5:]:
        resumed, _ = step(resumed, batch, donate=True)
    assert resumed.step == 10
    assert canonical(resumed.to_dict()) == canonical(straight.to_dict())
