"""``randomness``: seeding, the drawn seed, and bit-identical runs from one seed."""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from runner_toys import toy_kwargs

from fengine.runner.checkpoint import read_checkpoint
from fengine.runner.randomness import set_random_seed
from fengine.runner.runner import Runner


def _draws() -> tuple[float, float, torch.Tensor]:
    return random.random(), float(np.random.rand()), torch.rand(3)


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**31 - 1))
def test_set_random_seed_seeds_python_numpy_and_torch(seed: int) -> None:
    assert set_random_seed(seed) == seed
    first = _draws()
    set_random_seed(seed)
    second = _draws()
    assert first[:2] == second[:2] and torch.equal(first[2], second[2])


def test_a_missing_seed_is_drawn_and_reported() -> None:
    seed = set_random_seed(None)
    assert isinstance(seed, int) and 0 <= seed < 2**31
    after = _draws()
    set_random_seed(seed)
    again = _draws()
    assert after[:2] == again[:2] and torch.equal(after[2], again[2])
    with pytest.raises(TypeError, match="`seed` must be an int or None"):
        set_random_seed(1.5)  # type: ignore[arg-type]


def test_deterministic_sets_the_torch_flags() -> None:
    was = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark
    try:
        set_random_seed(1, deterministic=True)
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.backends.cudnn.deterministic and not torch.backends.cudnn.benchmark
    finally:
        torch.use_deterministic_algorithms(was[0])
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = was[1], was[2]


def _seeded_run(path: Any, seed: int | None) -> Runner:
    data = {"dataset": {"type": "ToyDataset"}, "sampler": {"type": "DefaultSampler", "shuffle": True}, "batch_size": 3}
    runner = Runner(
        **toy_kwargs(
            path,
            model={"type": "ToyModel", "dropout": 0.5},  # built after seeding: its init is seeded too
            train_dataloader=data,
            val_dataloader=data,
            optim_wrapper={"optimizer": {"type": "SGD", "lr": 0.01, "momentum": 0.9}},
            randomness={"seed": seed},
        )
    )
    runner.train()
    return runner


def test_two_runs_with_one_seed_are_bit_identical(tmp_path: Any) -> None:
    first, second = _seeded_run(tmp_path / "a", 123), _seeded_run(tmp_path / "b", 123)
    other = _seeded_run(tmp_path / "c", 124)
    for (name, a), b in zip(first.model.state_dict().items(), second.model.state_dict().values()):
        assert torch.equal(a, b), name
    assert not all(torch.equal(a, c) for a, c in zip(first.model.state_dict().values(), other.model.state_dict().values()))


def test_the_seed_is_recorded(tmp_path: Any) -> None:
    runner = _seeded_run(tmp_path, None)
    assert isinstance(runner.seed, int)
    assert runner.run_state.meta["seed"] == runner.seed
    assert read_checkpoint(str(tmp_path / "epoch_2.pth"))["meta"]["seed"] == runner.seed
    assert runner.message_hub.get_info("seed") == runner.seed
