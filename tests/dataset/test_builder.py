"""build_dataloader: MMEngine-style configs, defaults and errors naming the bad key."""

from __future__ import annotations

import random
from functools import partial

import numpy as np
import pytest
import torch
from torch.utils.data import BatchSampler, DataLoader

import fengine.dataset.builder as builder_module
from fengine.dataset import (
    DefaultSampler,
    InMemoryDataset,
    build_dataloader,
    default_collate,
    pseudo_collate,
    worker_init_fn,
)


def dataset(n: int = 10) -> InMemoryDataset:
    return InMemoryDataset(torch.arange(n).float(), torch.arange(n))


def test_a_config_builds_a_loader_with_mmengine_defaults():
    ds = dataset()
    loader = build_dataloader(
        dict(dataset=ds, sampler=dict(type="DefaultSampler", shuffle=False), batch_size=4), seed=5
    )
    assert loader.dataset is ds  # objects in the config are not copied
    assert isinstance(loader.sampler, DefaultSampler) and loader.sampler.seed == 5
    assert loader.collate_fn.__wrapped__ is pseudo_collate  # behind the first-batch check
    assert loader.batch_size == 4
    batches = list(loader)
    assert len(batches) == 3
    assert [t.tolist() for t in batches[0][1]] == [0, 1, 2, 3]
    init = loader.worker_init_fn
    assert isinstance(init, partial) and init.func is worker_init_fn
    assert init.keywords == {
        "num_workers": 0,
        "rank": 0,
        "seed": 5,
        "disable_subprocess_warning": False,
    }
    assert build_dataloader(loader) is loader


def test_collate_and_dataset_from_configs():
    class Squares(torch.utils.data.Dataset):
        def __init__(self, n):
            self.n = n
            self.initialised = False

        def full_init(self):
            self.initialised = True

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            return torch.tensor(i * i)

    loader = build_dataloader(
        dict(
            dataset=dict(type=Squares, n=5),
            sampler=dict(type="DefaultSampler", shuffle=False),
            batch_size=5,
            collate_fn=dict(type="default_collate"),
        )
    )
    assert loader.dataset.initialised
    assert loader.worker_init_fn is None
    assert torch.equal(next(iter(loader)), torch.tensor([0, 1, 4, 9, 16]))


def test_diff_rank_seed_lets_the_sampler_draw_its_own_seed(monkeypatch):
    monkeypatch.setattr(np.random, "randint", lambda high: 123)
    loader = build_dataloader(
        dict(dataset=dataset(), sampler=dict(type="DefaultSampler")), seed=5, diff_rank_seed=True
    )
    assert loader.sampler.seed == 123


def test_batch_sampler_and_num_batch_per_epoch(monkeypatch):
    loader = build_dataloader(
        dict(
            dataset=dataset(10),
            sampler=dict(type="DefaultSampler", shuffle=False),
            batch_sampler=dict(type=BatchSampler, drop_last=True),
            batch_size=3,
            collate_fn=default_collate,
        )
    )
    assert [b[1].tolist() for b in loader] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    monkeypatch.setattr(builder_module, "get_world_size", lambda: 2)
    short = build_dataloader(
        dict(
            dataset=dataset(10),
            sampler=dict(type="DefaultSampler", shuffle=False),
            batch_size=2,
            num_batch_per_epoch=2,
        )
    )
    assert len(short.dataset) == 8


def test_seeded_workers_are_reproducible():
    class Noise(torch.utils.data.Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return torch.rand(1)

    cfg = dict(
        dataset=Noise(),
        sampler=dict(type="DefaultSampler", shuffle=False),
        batch_size=2,
        num_workers=2,
        collate_fn=dict(type="default_collate"),
    )
    first = torch.cat(list(build_dataloader(cfg, seed=11)))
    second = torch.cat(list(build_dataloader(cfg, seed=11)))
    assert torch.equal(first, second)
    torch.manual_seed(11)  # worker 0 of rank 0 draws from seed 2 * 0 + 0 + 11
    assert torch.equal(first[0], torch.rand(1))


def test_worker_init_fn_seeds_every_generator():
    worker_init_fn(1, num_workers=4, rank=2, seed=100)
    drawn = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(109), np.random.seed(109), torch.manual_seed(109)
    assert drawn == (random.random(), np.random.rand(), torch.rand(1).item())


@pytest.mark.parametrize(
    ("cfg", "error", "message"),
    [
        (dict(sampler=dict(type="DefaultSampler")), KeyError, "needs `dataset`"),
        (dict(dataset=[1]), KeyError, "needs `sampler`"),
        (
            dict(dataset=[1], sampler=dict(type="DefaultSampeler")),
            KeyError,
            "did you mean 'DefaultSampler'",
        ),
        (
            dict(dataset=[1], sampler=dict(type="DefaultSampler"), batch_size=0),
            ValueError,
            "batch_size",
        ),
        (
            dict(dataset=[1], sampler=dict(type="DefaultSampler"), batch_size="4"),
            ValueError,
            "batch_size",
        ),
        (
            dict(dataset=[1], sampler=dict(type="DefaultSampler"), batchsize=4),
            KeyError,
            "'batch_size'",
        ),
        (
            dict(dataset=[1], sampler=dict(type="DefaultSampler"), collate_fn=3),
            TypeError,
            "collate_fn",
        ),
        (
            dict(dataset=[1], sampler=dict(type="DefaultSampler"), collate_fn=dict(type="nope")),
            KeyError,
            "nope is not in the fengine::function registry",
        ),
        (
            dict(dataset=[1], sampler=dict(type="DefaultSampler"), collate_fn=dict()),
            KeyError,
            "`type`",
        ),
    ],
)
def test_bad_configs_name_the_key(cfg, error, message):
    with pytest.raises(error, match=message):
        build_dataloader(cfg)
    with pytest.raises(TypeError, match="config dict"):
        build_dataloader([("dataset", [1])])  # type: ignore[arg-type]


def test_returns_a_torch_dataloader():
    assert isinstance(
        build_dataloader(dict(dataset=[1, 2], sampler=dict(type="DefaultSampler"))), DataLoader
    )


def test_text_samples_fail_at_the_first_batch_naming_the_dataset() -> None:
    import pickle

    from fengine.dataset import FirstBatchCheck

    class Mixed(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __len__(self) -> int:
            return 4

        def __getitem__(self, index: int) -> dict[str, torch.Tensor] | None:
            return None if index == 2 else {"inputs": torch.tensor(float(index))}

    loader = build_dataloader(dict(dataset=Mixed(), sampler=dict(type="DefaultSampler", shuffle=False), batch_size=4))
    with pytest.raises(TypeError, match=r"dataset Mixed returned a NoneType at sample 2 of the first batch \(None\)"):
        next(iter(loader))
    check = FirstBatchCheck(pseudo_collate, Mixed())
    in_worker = pickle.loads(pickle.dumps(check))  # workers get no copy of the dataset
    assert in_worker._dataset is None and in_worker.dataset_name == "Mixed"
    good = build_dataloader(dict(dataset=dataset(), sampler=dict(type="DefaultSampler", shuffle=False), batch_size=4))
    assert len(list(good)) == 3 and good.collate_fn._checked
