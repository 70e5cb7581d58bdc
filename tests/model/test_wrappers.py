"""is_model_wrapper and MMDistributedDataParallel in a one-process gloo group (spec §7.7)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any

import pytest
import torch
import torch.distributed as dist
from model_toys import RecordingOptimWrapper, ToyModel, batches
from torch import nn

from fengine.model import MMDistributedDataParallel, is_model_wrapper
from fengine.optim import OptimWrapper
from fengine.registry import MODEL_WRAPPERS, Registry


class DotModule(nn.Module):
    """Has ``.module`` like a wrapper, but is not one until registered."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


def test_builtin_wrappers_are_registered() -> None:
    model = nn.Linear(1, 1)
    assert is_model_wrapper(nn.DataParallel(model))
    assert not is_model_wrapper(model) and not is_model_wrapper(DotModule(model))
    for cls in (nn.DataParallel, nn.parallel.DistributedDataParallel, MMDistributedDataParallel):
        assert cls in MODEL_WRAPPERS.module_dict.values()


def test_custom_wrapper_after_registration_and_child_registries() -> None:
    parent = Registry("wrappers")
    child = Registry("child wrappers", parent=parent)
    wrapped = DotModule(nn.Linear(1, 1))
    assert not is_model_wrapper(wrapped, registry=parent)
    child.register_module(module=DotModule)
    assert is_model_wrapper(wrapped, registry=parent)  # the parent sees its children's classes
    assert is_model_wrapper(wrapped, registry=child)
    assert not is_model_wrapper(
        nn.DataParallel(nn.Linear(1, 1)), registry=child
    )  # but not vice versa


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def gloo_group() -> Iterator[None]:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{free_port()}", rank=0, world_size=1
    )
    try:
        yield
    finally:
        dist.destroy_process_group()


def test_ddp_train_step_matches_plain_model(gloo_group: None) -> None:
    torch.manual_seed(0)
    plain = ToyModel()
    torch.manual_seed(0)
    log: list[str] = []
    ddp = MMDistributedDataParallel(ToyModel(log=log))
    assert is_model_wrapper(ddp)
    plain_wrapper = RecordingOptimWrapper(torch.optim.SGD(plain.parameters(), lr=0.1), [])
    ddp_wrapper = RecordingOptimWrapper(torch.optim.SGD(ddp.parameters(), lr=0.1), log)
    for batch in batches():
        log.clear()
        ours = ddp.train_step(batch, ddp_wrapper)
        theirs = plain.train_step(batch, plain_wrapper)
        assert log == ["enter", "forward loss", "exit", "update"]
        assert list(ours) == list(theirs) and all(torch.equal(ours[k], theirs[k]) for k in ours)
    for a, b in zip(ddp.module.parameters(), plain.parameters()):
        assert torch.equal(a, b)
    batch = batches()[0]
    assert torch.equal(torch.stack(ddp.val_step(batch)), torch.stack(plain.val_step(batch)))
    assert torch.equal(torch.stack(ddp.test_step(batch)), torch.stack(plain.test_step(batch)))


class WithUnused(ToyModel):
    def __init__(self) -> None:
        super().__init__()
        self.unused = nn.Linear(1, 1)


def test_ddp_detect_anomalous_params_logs_prefixed_names(
    gloo_group: None, caplog: pytest.LogCaptureFixture
) -> None:
    ddp = MMDistributedDataParallel(
        WithUnused(), detect_anomalous_params=True, find_unused_parameters=True
    )
    wrapper: Any = RecordingOptimWrapper(torch.optim.SGD(ddp.parameters(), lr=0.1), [])
    with caplog.at_level(logging.ERROR, logger="fengine"):
        ddp.train_step(batches()[0], wrapper)
    assert [r.getMessage().split(" with shape")[0] for r in caplog.records] == [
        "module.unused.weight",
        "module.unused.bias",
    ]


def test_ddp_accumulation_skips_sync_until_the_update_step(gloo_group: None) -> None:
    torch.manual_seed(0)
    plain = ToyModel()
    torch.manual_seed(0)
    ddp = MMDistributedDataParallel(ToyModel())
    wrapper = OptimWrapper(torch.optim.SGD(ddp.parameters(), lr=0.1), accumulative_counts=2)
    plain_wrapper = OptimWrapper(torch.optim.SGD(plain.parameters(), lr=0.1), accumulative_counts=2)
    unsynced_at: list[int] = []
    no_sync = ddp.no_sync

    def spy() -> Any:
        unsynced_at.append(wrapper.inner_count)
        return no_sync()

    ddp.no_sync = spy  # type: ignore[method-assign]
    before = [p.detach().clone() for p in ddp.parameters()]
    for step, batch in enumerate(batches()):
        ddp.train_step(batch, wrapper)
        plain.train_step(batch, plain_wrapper)
        moved = any(not torch.equal(a, b) for a, b in zip(ddp.parameters(), before))
        assert moved == (step >= 1)
    assert unsynced_at == [0, 2]  # the forwards whose backward does not step
    for a, b in zip(ddp.module.parameters(), plain.parameters()):
        assert torch.equal(a, b)
