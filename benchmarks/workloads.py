"""The three workloads every contender trains: pure ``torch``, importable by any environment.

* ``W1``: a tiny MLP (32 → 64 → 64 → 10), batch 32: overhead-bound, the framework's own Python
  shows here;
* ``W2``: a small CNN (three convolutions, two BatchNorms) on 3×32×32 images, batch 32:
  compute-bound;
* ``W3``: a 2-layer ``nn.TransformerEncoder`` language model (causal, ``d_model`` 128, 4 heads,
  vocabulary 512) predicting the next of 64 random tokens, batch 16.

Every contender starts from the same weights (``torch.manual_seed(0)``) and sees the same batches
in the same order (a ``DataLoader`` over a ``TensorDataset`` shuffled by a generator seeded with 0),
trained with SGD(lr=0.01, momentum=0.9, foreach=True) on cross-entropy.

``run.py --device cuda --amp bf16`` reaches the workers as ``FENGINE_BENCH_DEVICE`` and
``FENGINE_BENCH_AMP``: models live on the device, batches are moved there in :func:`loss_of`
(the Runner's preprocessor has moved them already), the forward and the loss run under
``torch.autocast`` in bf16, and the clocks are read after ``torch.cuda.synchronize()``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

LR, MOMENTUM = 0.01, 0.9
DEVICE = torch.device(os.environ.get("FENGINE_BENCH_DEVICE", "cpu"))
AMP = os.environ.get("FENGINE_BENCH_AMP", "") == "bf16"
VOCAB, SEQ = 512, 64


class Workload(NamedTuple):
    """A workload's shape: batch size, batches per epoch and how many epochs are timed."""

    name: str
    batch: int
    iters: int
    timed_epochs: int


WORKLOADS = {
    "W1": Workload("W1", batch=32, iters=100, timed_epochs=7),
    "W2": Workload("W2", batch=32, iters=16, timed_epochs=5),
    "W3": Workload("W3", batch=16, iters=12, timed_epochs=5),
}


class TinyLM(nn.Module):
    """Embedding, a causal 2-layer ``TransformerEncoder`` and a linear head over the vocabulary."""

    def __init__(self, d_model: int = 128) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, d_model)
        layer = nn.TransformerEncoderLayer(
            d_model, nhead=4, dim_feedforward=4 * d_model, dropout=0.0, batch_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, num_layers=2, enable_nested_tensor=False)
        self.head = nn.Linear(d_model, VOCAB)
        self.register_buffer(
            "mask", nn.Transformer.generate_square_subsequent_mask(SEQ), persistent=False
        )

    def forward(self, tokens: Tensor) -> Tensor:
        """Next-token logits, ``(batch, seq, vocab)``."""
        return self.head(self.encoder(self.embed(tokens), mask=self.mask, is_causal=True))


def build_model(name: str) -> nn.Module:
    """The workload's model, from ``torch.manual_seed(0)``, on :data:`DEVICE`."""
    torch.manual_seed(0)
    return _architecture(name).to(DEVICE)


def _architecture(name: str) -> nn.Module:
    if name == "W1":
        return nn.Sequential(
            nn.Linear(32, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)
        )
    if name == "W2":
        return nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Conv2d(32, 64, 3, stride=2, padding=1),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(64, 10),
        )
    if name == "W3":
        return TinyLM()
    raise KeyError(f"unknown workload {name!r}; known: {', '.join(WORKLOADS)}")


def build_tensors(name: str) -> tuple[Tensor, Tensor]:
    """The workload's inputs and targets (one epoch's worth), from a fixed seed."""
    w = WORKLOADS[name]
    generator = torch.Generator().manual_seed(1)
    samples = w.batch * w.iters
    if name == "W3":
        tokens = torch.randint(0, VOCAB, (samples, SEQ + 1), generator=generator)
        return tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    shape = (samples, 32) if name == "W1" else (samples, 3, 32, 32)
    inputs = torch.randn(*shape, generator=generator)
    return inputs, torch.randint(0, 10, (samples,), generator=generator)


def build_loader(name: str, dataset: Any = None, **kwargs: Any) -> DataLoader[Any]:
    """A shuffled ``DataLoader`` over the workload's tensors (``dataset`` replaces the default)."""
    if dataset is None:
        dataset = TensorDataset(*build_tensors(name))
    return DataLoader(
        dataset,
        batch_size=WORKLOADS[name].batch,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
        **kwargs,
    )


def loss_of(model: nn.Module, batch: Sequence[Tensor]) -> Tensor:
    """Cross-entropy of the model's predictions for one ``(inputs, targets)`` batch."""
    inputs, targets = batch
    if DEVICE.type != "cpu":
        inputs, targets = inputs.to(DEVICE, non_blocking=True), targets.to(DEVICE, non_blocking=True)
    with autocast():
        logits = model(inputs)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def autocast() -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on :data:`DEVICE` with ``--amp bf16``, else nothing (not even a disabled one)."""
    return torch.autocast(DEVICE.type, dtype=torch.bfloat16) if AMP else contextlib.nullcontext()


def synchronize() -> None:
    """Wait for the device's queued work (so the clocks measure it); nothing on the CPU."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()


def sgd(params: Any) -> torch.optim.SGD:
    """The raw loop's optimizer: ``torch.optim.SGD(lr=0.01, momentum=0.9, foreach=True)``."""
    return torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, foreach=True)
