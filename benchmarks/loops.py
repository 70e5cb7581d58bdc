"""Hand-written loops: the raw PyTorch reference and ``fengine.core``'s functional step.

Each factory takes a workload name and returns ``run_epoch() -> iterations``; the worker times
the epochs. The raw loop is the textbook one (``zero_grad``, forward, ``backward``, ``step`` with
``torch.optim.SGD(foreach=True)``); the functional loops carry a ``TrainState`` from call to call
through ``fengine.core.make_train_step`` with ``fengine.core.optim.sgd`` (bit-identical to it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from workloads import (
    LR,
    MOMENTUM,
    WORKLOADS,
    build_loader,
    build_model,
    build_tensors,
    loss_of,
    sgd,
    synchronize,
)

Epoch = Callable[[], int]


def raw_loop(workload: str, *, compile: bool = False, loader: Any = None) -> Epoch:
    """The textbook loop (``compile``: the model under ``torch.compile``, optimizer eager)."""
    model = build_model(workload)
    opt = sgd(model.parameters())
    net = torch.compile(model) if compile else model
    loader = build_loader(workload) if loader is None else loader
    model.train()

    def epoch() -> int:
        n = 0
        for batch in loader:
            opt.zero_grad()
            loss_of(net, batch).backward()
            opt.step()
            n += 1
        synchronize()
        return n

    return epoch


def batched_data_loader(workload: str) -> Any:
    """fengine's batched data path: ``InMemoryDataset`` (``__getitems__``), ``DefaultSampler``,
    ``default_collate``: one ``index_select`` per tensor and batch, no per-sample collation."""
    from fengine.dataset import DefaultSampler, InMemoryDataset, default_collate

    dataset = InMemoryDataset(*build_tensors(workload))
    return DataLoader(
        dataset,
        batch_size=WORKLOADS[workload].batch,
        sampler=DefaultSampler(dataset, seed=0),
        collate_fn=default_collate,
    )


def functional_loop(workload: str, *, donate: bool, compile: bool = False) -> Epoch:
    """``fengine.core``'s pure train step, the state carried from call to call."""
    import fengine.core as fc

    model = build_model(workload)
    tx = fc.optim.sgd(LR, momentum=MOMENTUM)

    def loss_fn(view: fc.ModelView, batch: list[Tensor]) -> Tensor:
        return loss_of(view, batch)  # type: ignore[arg-type]

    step = fc.make_train_step(model, loss_fn, tx, compile=compile)
    cell = [fc.TrainState.create(model, tx)]
    loader = build_loader(workload)

    def epoch() -> int:
        state, n = cell.pop(), 0
        for batch in loader:
            state, _ = step(state, batch, donate=donate)
            n += 1
        cell.append(state)
        synchronize()
        return n

    return epoch


LOOPS: dict[str, Callable[[str], Epoch]] = {
    "raw loop": raw_loop,
    "raw loop, fengine batched data": lambda w: raw_loop(w, loader=batched_data_loader(w)),
    "functional, pure": lambda w: functional_loop(w, donate=False),
    "functional, donated": lambda w: functional_loop(w, donate=True),
    "raw loop, compiled": lambda w: raw_loop(w, compile=True),
    "functional, pure, compiled": lambda w: functional_loop(w, donate=False, compile=True),
    "functional, donated, compiled": lambda w: functional_loop(w, donate=True, compile=True),
}
