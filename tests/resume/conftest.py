"""One intra-op thread while these tests run: their models are tiny, and on a busy machine
thread hand-offs cost more than the arithmetic (a step takes ~3x longer with two threads).
Module-wide, so module fixtures that train compute with the same thread count as the tests
(float reductions may differ between thread counts)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
