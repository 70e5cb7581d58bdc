"""fc.ema: MMEngine's averaging numbers, closed forms, torch parity, purity and donation."""

from __future__ import annotations

from typing import Any, cast

import attrs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import fengine.core as fc
from fengine.core.ema import (
    CustomAverage,
    EMAState,
    ExponentialMovingAverage,
    MomentumAnnealingEMA,
    StochasticWeightAverage,
    ema_state_dict,
    load_ema_state_dict,
    load_weights,
    sync,
)
from fengine.testing import through_checkpoint


def scalar_run(averager: fc.ema.Averager, values: list[float]) -> list[float]:
    state = averager.init({"w": torch.tensor(0.0)})
    out = []
    for v in values:
        state = averager.update(state, {"w": torch.tensor(v)})
        out.append(state.params["w"].item())
    return out


# -- MMEngine's measured numbers (spec A6) ---------------------------------------------------


def test_ema_numbers() -> None:
    assert scalar_run(ExponentialMovingAverage(momentum=0.5), [1, 3, 5]) == [1.0, 2.0, 3.5]


def test_ema_interval_numbers() -> None:
    averager = ExponentialMovingAverage(momentum=0.5, interval=2)
    assert scalar_run(averager, [1, 3, 5, 7]) == [1.0, 1.0, 3.0, 3.0]


def test_non_update_calls_still_copy_buffers() -> None:
    averager = ExponentialMovingAverage(momentum=0.5, interval=2)
    state = averager.init({"w": torch.tensor(0.0)}, {"b": torch.tensor(0.0)})
    seen = []
    for v in [1.0, 3.0, 5.0, 7.0]:
        state = averager.update(state, {"w": torch.tensor(v)}, {"b": torch.tensor(10 * v)})
        seen.append(state.buffers["b"].item())
    assert seen == [10.0, 30.0, 50.0, 70.0]


def test_update_buffers_float_averaged_int_tracks_source() -> None:
    averager = ExponentialMovingAverage(momentum=0.5, update_buffers=True)
    state = averager.init(
        {"w": torch.tensor(0.0)}, {"f": torch.tensor(0.0), "n": torch.tensor(0, dtype=torch.long)}
    )
    floats, ints, steps = [], [], []
    for v in [1, 3, 5]:
        src_buffers = {"f": torch.tensor(10.0 * v), "n": torch.tensor(v, dtype=torch.long)}
        state = averager.update(state, {"w": torch.tensor(float(v))}, src_buffers)
        floats.append(state.buffers["f"].item())
        ints.append(state.buffers["n"].item())
        steps.append(state.steps)
    assert floats == [10.0, 20.0, 35.0]
    # MMEngine freezes integer buffers at their first value; here they follow the source.
    assert ints == [1, 3, 5]
    assert steps == [1, 2, 3]
    assert state.buffers["n"].dtype == torch.long


def test_momentum_annealing_numbers() -> None:
    values = scalar_run(MomentumAnnealingEMA(momentum=0.1, gamma=4), [1, 3, 5, 7])
    assert values == pytest.approx([1.0, 2.6, 4.2, 5.8], abs=1e-6)
    averager = MomentumAnnealingEMA(momentum=0.1, gamma=4)
    assert averager.momentum_at(1) == 0.8
    assert averager.momentum_at(1000) == 0.1


def test_swa_numbers() -> None:
    assert scalar_run(StochasticWeightAverage(), [1, 3, 5, 7]) == [1.0, 2.0, 3.0, 4.0]
    assert scalar_run(StochasticWeightAverage(interval=2), [1, 3, 5, 7, 9]) == [1, 1, 3, 3, 5]


@pytest.mark.parametrize("momentum", [0, 1, 1.5, -0.1])
def test_momentum_out_of_range(momentum: float) -> None:
    with pytest.raises(
        ValueError, match=rf"momentum must be in range \(0.0, 1.0\) \(open\), got {momentum!r}"
    ):
        ExponentialMovingAverage(momentum=momentum)
    with pytest.raises(ValueError, match="momentum"):
        MomentumAnnealingEMA(momentum=momentum)


def test_other_validation() -> None:
    with pytest.raises(TypeError, match=r"momentum must be a float in .*got '0.1'"):
        ExponentialMovingAverage(momentum="0.1")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="momentum"):
        ExponentialMovingAverage(momentum=True)
    with pytest.raises(ValueError, match="interval must be an int >= 1, got 0"):
        ExponentialMovingAverage(interval=0)
    with pytest.raises(ValueError, match=r"gamma must be greater than 0 \(a number\), got 0"):
        MomentumAnnealingEMA(gamma=0)
    with pytest.raises(TypeError, match="update_buffers must be a bool, got 1"):
        StochasticWeightAverage(update_buffers=1)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="avg_fn must be callable"):
        CustomAverage(avg_fn=3)  # type: ignore[arg-type]


def test_missing_source_name_is_a_clear_key_error() -> None:
    averager = ExponentialMovingAverage()
    state = averager.init({"a": torch.zeros(2), "b": torch.zeros(2)})
    with pytest.raises(KeyError, match="source params lack 'b'"):
        averager.update(state, {"a": torch.zeros(2)})


# -- properties ---------------------------------------------------------------------------------

SHAPES = st.lists(st.lists(st.integers(1, 4), max_size=2).map(tuple), min_size=1, max_size=4)


def make_sequence(seed: int, shapes: list[tuple[int, ...]], n: int) -> list[dict[str, Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    return [
        {
            f"p{i}": torch.randn(shape, generator=gen, dtype=torch.float64)
            for i, shape in enumerate(shapes)
        }
        for _ in range(n)
    ]


@settings(max_examples=40)
@given(
    seed=st.integers(0, 2**31 - 1),
    shapes=SHAPES,
    n=st.integers(1, 12),
    momentum=st.floats(1e-4, 0.999),
)
def test_ema_after_n_updates_equals_closed_form(
    seed: int, shapes: list[tuple[int, ...]], n: int, momentum: float
) -> None:
    xs = make_sequence(seed, shapes, n)
    averager = ExponentialMovingAverage(momentum=momentum)
    state = averager.init(xs[0])
    for x in xs:
        state = averager.update(state, x)
    assert state.steps == n
    for name in xs[0]:
        closed = (1 - momentum) ** (n - 1) * xs[0][name]
        for k in range(1, n):
            closed = closed + momentum * (1 - momentum) ** (n - 1 - k) * xs[k][name]
        torch.testing.assert_close(state.params[name], closed, rtol=1e-10, atol=1e-12)


@settings(max_examples=30)
@given(
    seed=st.integers(0, 2**31 - 1), shapes=SHAPES, n=st.integers(1, 12), interval=st.integers(1, 3)
)
def test_swa_is_the_mean_of_the_sampled_weights(
    seed: int, shapes: list[tuple[int, ...]], n: int, interval: int
) -> None:
    xs = make_sequence(seed, shapes, n)
    averager = StochasticWeightAverage(interval=interval)
    state = averager.init(xs[0])
    for x in xs:
        state = averager.update(state, x)
    sampled = [xs[0]] + [xs[k] for k in range(1, n) if k % interval == 0]
    for name in xs[0]:
        mean = torch.stack([s[name] for s in sampled]).mean(0)
        torch.testing.assert_close(state.params[name], mean, rtol=1e-10, atol=1e-12)


def mmengine_style_reference(
    avg_func: object, interval: int, xs: list[dict[str, Tensor]]
) -> dict[str, Tensor]:
    """Per-tensor in-place loop written from the spec: copy at 0, avg_func every interval."""
    avg = {k: v.clone() for k, v in xs[0].items()}
    for steps, x in enumerate(xs):
        for k in avg:
            if steps == 0:
                avg[k].copy_(x[k])
            elif steps % interval == 0:
                avg_func(avg[k], x[k], steps)  # type: ignore[operator]
    return avg


AVERAGERS = st.one_of(
    st.builds(
        ExponentialMovingAverage,
        momentum=st.floats(1e-4, 0.999),
        interval=st.integers(1, 3),
        update_buffers=st.booleans(),
    ),
    st.builds(
        MomentumAnnealingEMA,
        momentum=st.floats(1e-4, 0.999),
        gamma=st.floats(0.5, 200),
        interval=st.integers(1, 3),
        update_buffers=st.booleans(),
    ),
    st.builds(StochasticWeightAverage, interval=st.integers(1, 3), update_buffers=st.booleans()),
)


def reference_avg_func(averager: fc.ema.Averager) -> object:
    if isinstance(averager, MomentumAnnealingEMA):
        return lambda a, s, t: a.lerp_(
            s, max(averager.momentum, averager.gamma / (averager.gamma + t))
        )
    if isinstance(averager, ExponentialMovingAverage):
        return lambda a, s, t: a.lerp_(s, averager.momentum)
    return lambda a, s, t: a.add_(s - a, alpha=1 / float(t // averager.interval + 1))


@settings(max_examples=40)
@given(seed=st.integers(0, 2**31 - 1), shapes=SHAPES, n=st.integers(1, 10), averager=AVERAGERS)
def test_bit_identical_to_per_tensor_in_place_reference(
    seed: int, shapes: list[tuple[int, ...]], n: int, averager: fc.ema.Averager
) -> None:
    xs = [{k: v.float() for k, v in x.items()} for x in make_sequence(seed, shapes, n)]
    state = averager.init(xs[0])
    for x in xs:
        state = averager.update(state, x)
    expected = mmengine_style_reference(reference_avg_func(averager), averager.interval, xs)
    for name, value in expected.items():
        assert torch.equal(state.params[name], value)


def model_sequence(seed: int, n: int) -> list[dict[str, Tensor]]:
    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        out.append(
            {
                "w": torch.randn(3, 2, generator=gen),
                "b": torch.randn(3, generator=gen),
                "mean": torch.randn(3, generator=gen),
                "count": torch.randint(0, 100, (), generator=gen),
            }
        )
    return out


def split(x: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    return {k: x[k] for k in ("w", "b")}, {k: x[k] for k in ("mean", "count")}


@settings(max_examples=40)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 8), averager=AVERAGERS)
def test_donated_updates_are_bit_identical_and_pure_updates_write_nothing(
    seed: int, n: int, averager: fc.ema.Averager
) -> None:
    xs = model_sequence(seed, n)
    params, buffers = split(xs[0])
    pure = averager.init(params, buffers)
    donated = averager.init(params, buffers)
    donated_tensors = [*donated.params.values(), *donated.buffers.values()]
    for x in xs:
        params, buffers = split(x)
        inputs = [
            *pure.params.values(),
            *pure.buffers.values(),
            *params.values(),
            *buffers.values(),
        ]
        versions = [t._version for t in inputs]
        snapshots = [t.clone() for t in inputs]
        pure = averager.update(pure, params, buffers)
        assert [t._version for t in inputs] == versions
        assert all(torch.equal(t, s) for t, s in zip(inputs, snapshots))
        donated = averager.update(donated, params, buffers, donate=True)
    for name in pure.params:
        assert torch.equal(pure.params[name], donated.params[name])
    for name in pure.buffers:
        assert torch.equal(pure.buffers[name], donated.buffers[name])
    # Donation reuses the storage: the state's tensors are the ones it started with.
    assert all(
        a is b
        for a, b in zip(donated_tensors, [*donated.params.values(), *donated.buffers.values()])
    )
    assert pure.steps == donated.steps == n


@settings(max_examples=20)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(1, 6), k=st.integers(1, 8))
def test_equals_torch_averaged_model_with_ema_multi_avg_fn(seed: int, n: int, k: int) -> None:
    # AveragedModel lerps with 1 - decay; momenta k/16 make 1 - (1 - m) == m exactly.
    momentum = k / 16
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    reference = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(1 - momentum))  # type: ignore[no-untyped-call]
    averager = ExponentialMovingAverage(momentum=momentum)
    state = averager.init(dict(model.named_parameters()), dict(model.named_buffers()))
    for _ in range(n):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model(torch.randn(5, 3))  # moves the BatchNorm statistics
        reference.update_parameters(model)
        state = averager.update(
            state, dict(model.named_parameters()), dict(model.named_buffers()), donate=True
        )
    for name, value in reference.module.state_dict().items():
        merged = {**state.params, **state.buffers}
        assert torch.equal(merged[name], value), name


def test_custom_average_matches_builtin() -> None:
    swa = StochasticWeightAverage(interval=2)
    custom = CustomAverage(
        avg_fn=lambda a, s, t: a.add_(s - a, alpha=1 / float(t // 2 + 1)), interval=2
    )
    xs = make_sequence(3, [(2, 3), (4,)], 7)
    a, b = swa.init(xs[0]), custom.init(xs[0])
    for x in xs:
        a = swa.update(a, x)
        before = [t.clone() for t in b.params.values()]
        old = b
        b = custom.update(b, x)
        assert all(torch.equal(t, s) for t, s in zip(old.params.values(), before))
    assert all(torch.equal(a.params[k], b.params[k]) for k in a.params)


def test_init_copies_and_requires_no_grad() -> None:
    model = nn.Linear(2, 2)
    state = ExponentialMovingAverage().init(dict(model.named_parameters()))
    assert not state.params["weight"].requires_grad
    assert state.params["weight"].data_ptr() != model.weight.data_ptr()
    torch.testing.assert_close(state.params["weight"], model.weight.detach())
    later = ExponentialMovingAverage(0.5).update(state, dict(model.named_parameters()))
    assert not later.params["weight"].requires_grad


# -- MMEngine's state-dict layout ---------------------------------------------------------------


def test_state_dict_layout_and_round_trip() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    averager = ExponentialMovingAverage(momentum=0.5)
    state = averager.init(dict(model.named_parameters()), dict(model.named_buffers()))
    for _ in range(3):
        state = averager.update(state, dict(model.named_parameters()), dict(model.named_buffers()))
    sd = ema_state_dict(state, order=model.state_dict())
    assert list(sd) == ["steps", *(f"module.{k}" for k in model.state_dict())]
    assert sd["steps"].dtype == torch.long and int(sd["steps"]) == 3
    fresh = averager.init(dict(model.named_parameters()), dict(model.named_buffers()))
    shifted = {k: (v + 1 if v.is_floating_point() else v) for k, v in sd.items() if k != "steps"}
    restored = load_ema_state_dict(fresh, {"steps": sd["steps"], **shifted}, strict=True)
    assert restored.steps == 3
    for k, v in shifted.items():
        merged = {**restored.params, **restored.buffers}
        assert torch.equal(merged[k[len("module.") :]], v)
        assert merged[k[len("module.") :]] is not v  # loaded values are copies


def test_load_strictness_and_shapes() -> None:
    state = EMAState(params={"w": torch.zeros(2)}, buffers={"b": torch.zeros(1)}, steps=5)
    with pytest.raises(KeyError, match=r"missing keys \['b'\], unexpected keys \['x'\]"):
        load_weights(state, {"w": torch.ones(2), "x": torch.ones(1)}, strict=True)
    loose = load_weights(state, {"w": torch.ones(2), "x": torch.ones(1)})
    assert (
        torch.equal(loose.params["w"], torch.ones(2)) and loose.buffers["b"] is state.buffers["b"]
    )
    assert loose.steps == 5
    with pytest.raises(ValueError, match=r"size mismatch for 'w'.*\(2,\).*\(3,\)"):
        load_weights(state, {"w": torch.ones(3)})
    with pytest.raises(KeyError, match="no 'steps' entry"):
        load_ema_state_dict(
            state, {"module.w": torch.ones(2), "module.b": torch.ones(1)}, strict=True
        )
    with pytest.raises(KeyError, match=r"unexpected keys in averaged state dict: \['extra'\]"):
        load_ema_state_dict(state, {"steps": torch.tensor(1), "extra": torch.ones(1)}, strict=True)


def test_sync_copies_everything_and_keeps_steps() -> None:
    averager = ExponentialMovingAverage(momentum=0.5)
    state = averager.init({"w": torch.zeros(2)}, {"n": torch.tensor(0)})
    state = averager.update(state, {"w": torch.ones(2)}, {"n": torch.tensor(1)})
    tensors = [state.params["w"], state.buffers["n"]]
    versions = [t._version for t in tensors]
    synced = sync(state, {"w": torch.full((2,), 7.0)}, {"n": torch.tensor(9)})
    assert synced.steps == 1
    assert torch.equal(synced.params["w"], torch.full((2,), 7.0)) and int(synced.buffers["n"]) == 9
    assert [t._version for t in tensors] == versions and torch.equal(tensors[0], torch.ones(2))
    donated = sync(state, {"w": torch.full((2,), 7.0)}, {"n": torch.tensor(9)}, donate=True)
    assert donated.params["w"] is tensors[0] and torch.equal(tensors[0], torch.full((2,), 7.0))


# -- the donated steady state (aligned tensors kept beside the state) ---------------------------


class Source:
    """A live model's tensors: mutated in place between updates, mappings kept until renewed."""

    def __init__(self, gen: torch.Generator) -> None:
        self.gen = gen
        self.tensors = {
            "w": torch.randn(3, 2, generator=gen, requires_grad=True),
            "b": torch.randn(3, generator=gen, requires_grad=True),
            "mean": torch.randn(3, generator=gen),
            "count": torch.randint(0, 100, (), generator=gen),
        }
        self.params, self.buffers = split(self.tensors)

    def renew(self, which: str) -> None:
        """A new ``params`` or ``buffers`` mapping of new tensors (another model, same names).

        ``'double'`` renews the buffers with a float64 ``mean``, which the averages convert.
        """
        names = self.params if which == "params" else self.buffers
        for name in names:
            value = self.tensors[name].detach().clone()
            if which == "double" and name == "mean":
                value = value.double()
            self.tensors[name] = value.requires_grad_(which == "params")
        new = split(self.tensors)
        self.params, self.buffers = (
            (new[0], self.buffers) if which == "params" else (self.params, new[1])
        )

    def train(self) -> None:
        with torch.no_grad():
            for tensor in self.tensors.values():
                if tensor.is_floating_point():
                    tensor.copy_(torch.randn(tensor.shape, generator=self.gen))
                else:
                    tensor.add_(1)


def restored(state: EMAState) -> EMAState:
    """``state`` through a checkpoint: ``to_plain``, ``torch.save``, the checkpoint decoder."""
    state = through_checkpoint(state)
    assert isinstance(state, EMAState)
    return state


def assert_same(a: EMAState, b: EMAState) -> None:
    assert a.steps == b.steps
    for mine, theirs in ((a.params, b.params), (a.buffers, b.buffers)):
        assert list(mine) == list(theirs)
        assert all(
            torch.equal(mine[k], theirs[k]) and mine[k].dtype == theirs[k].dtype for k in mine
        )


STEADY_EVENTS = st.lists(
    st.sampled_from(
        ["update"] * 6 + ["sync", "params", "buffers", "double", "load", "restore", "other", "pure"]
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=50, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    events=STEADY_EVENTS,
    averager=st.one_of(
        AVERAGERS,
        st.builds(
            CustomAverage,
            avg_fn=st.just(lambda a, s, t: a.mul_(0.75).add_(s, alpha=0.25)),
            interval=st.integers(1, 3),
            update_buffers=st.booleans(),
        ),
    ),
)
def test_donated_steady_state_equals_the_pure_path(
    seed: int, events: list[str], averager: fc.ema.Averager
) -> None:
    # Donated updates on a live source take the aligned-tensor path; the pure path never does.
    source = Source(torch.Generator().manual_seed(seed))
    other = attrs.evolve(cast(Any, averager), update_buffers=not averager.update_buffers)
    fast = averager.init(source.params, source.buffers)
    pure = averager.init(source.params, source.buffers)
    last = None
    for event in events:
        previous = fast
        if event in ("update", "other"):
            source.train()
            step = averager if event == "update" else other
            fast = step.update(fast, source.params, source.buffers, donate=True)
            pure = step.update(pure, source.params, source.buffers)
            assert fast.params is previous.params and fast.buffers is previous.buffers
            if event == last == "update":  # the property does exercise the steady state
                assert fast._plan is previous._plan
        elif event == "sync":
            source.train()
            fast = sync(fast, source.params, source.buffers, donate=True)
            pure = sync(pure, source.params, source.buffers)
        elif event in ("params", "buffers", "double"):
            source.renew(event)
        elif event == "load":
            values = {k: torch.randn(v.shape, generator=source.gen) for k, v in fast.params.items()}
            fast, pure = load_weights(fast, values), load_weights(pure, values)
        elif event == "restore":
            fast, pure = restored(fast), restored(pure)
        else:  # a pure call on the donated state writes nothing and changes nothing after it
            tensors = [*fast.params.values(), *fast.buffers.values()]
            versions = [t._version for t in tensors]
            averager.update(fast, source.params, source.buffers)
            sync(fast, source.params, source.buffers)
            assert [t._version for t in tensors] == versions
        assert_same(fast, pure)
        assert torch.is_grad_enabled()
        assert not any(t.requires_grad for t in [*fast.params.values(), *fast.buffers.values()])
        last = event


def test_donated_update_of_a_source_converted_in_place_is_a_clear_error() -> None:
    model = nn.Linear(2, 2)
    params = dict(model.named_parameters())
    averager = ExponentialMovingAverage(momentum=0.5)
    state = averager.update(averager.init(params), params, donate=True)
    model.double()  # converts each parameter in place: same objects, same mappings
    with pytest.raises(ValueError, match=r"source tensor 'weight' is now torch.float64 on cpu"):
        averager.update(state, params, donate=True)
    assert torch.is_grad_enabled()
