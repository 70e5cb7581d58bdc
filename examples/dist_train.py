"""Train a small classifier with the Runner, in one process or several (``torchrun``).

One process::

    python examples/dist_train.py

Two processes on this machine (gloo on CPU, NCCL with one GPU per process)::

    torchrun --nproc_per_node=2 examples/dist_train.py --launcher pytorch

Every process runs this same script; ``launcher='pytorch'`` makes the Runner read torchrun's
environment, join the process group, shard the data with ``DefaultSampler`` and wrap the model
in ``MMDistributedDataParallel``. Rank 0 alone writes checkpoints, logs and scalars under
``--work-dir`` and prints the final accuracy.
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fengine.dataset import InMemoryDataset
from fengine.evaluator import BaseMetric
from fengine.model import BaseModel
from fengine.registry import MODELS
from fengine.runner import Runner


@MODELS.register_module()
class Classifier(BaseModel):
    """An MLP with BatchNorm over 2-D points; ``loss`` is the cross-entropy."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Linear(2, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Linear(32, 2))

    def forward(self, inputs: torch.Tensor, data_samples: Any = None, mode: str = "tensor") -> Any:
        logits = self.body(inputs)
        if mode == "loss":
            return {"loss": F.cross_entropy(logits, data_samples)}
        if mode == "predict":
            return list(zip(logits.argmax(1), data_samples))
        return logits


class Accuracy(BaseMetric):
    """The fraction of correct predictions (gathered from every rank before it is computed)."""

    def process(self, data_batch: Any, data_samples: Any) -> None:
        self.results.extend(int(pred == label) for pred, label in data_samples)

    def compute_metrics(self, results: list[Any]) -> dict[str, Any]:
        return {"accuracy": sum(results) / len(results), "samples": len(results)}


def two_moons(size: int, seed: int) -> InMemoryDataset:
    """Two interleaved half circles with a little noise, labelled 0 and 1."""
    generator = torch.Generator().manual_seed(seed)
    angle = torch.rand(size, generator=generator) * torch.pi
    label = torch.randint(0, 2, (size,), generator=generator)
    x = torch.where(label == 0, torch.cos(angle), 1 - torch.cos(angle))
    y = torch.where(label == 0, torch.sin(angle), 0.5 - torch.sin(angle))
    points = torch.stack([x, y], 1) + 0.1 * torch.randn(size, 2, generator=generator)
    return InMemoryDataset(inputs=points, data_samples=label)


def main() -> None:
    """Parse the arguments, build the Runner and train."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--launcher", choices=["none", "pytorch"], default="none")
    parser.add_argument(
        "--backend", default=None, help="'gloo' or 'nccl' (default: nccl with CUDA, else gloo)"
    )
    parser.add_argument(
        "--sync-bn", action="store_true", help="SyncBatchNorm across ranks (GPU only)"
    )
    parser.add_argument("--work-dir", default="work_dirs/dist_train")
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    backend = args.backend or ("nccl" if torch.cuda.is_available() else "gloo")

    def loader(dataset: InMemoryDataset, shuffle: bool) -> dict[str, Any]:
        sampler = {"type": "DefaultSampler", "shuffle": shuffle}
        return {
            "dataset": dataset,
            "sampler": sampler,
            "batch_size": 32,
            "collate_fn": {"type": "default_collate"},
        }

    runner = Runner(
        model={
            "type": "Classifier"
        },  # built after the Runner seeds the generators: same weights every run
        work_dir=args.work_dir,
        train_dataloader=loader(two_moons(1024, seed=0), shuffle=True),
        val_dataloader=loader(two_moons(301, seed=1), shuffle=False),
        train_cfg={"by_epoch": True, "max_epochs": args.epochs, "val_interval": 1},
        val_cfg={},
        val_evaluator=Accuracy(),
        optim_wrapper={"optimizer": {"type": "SGD", "lr": 0.1, "momentum": 0.9}},
        custom_hooks=[{"type": "SyncBuffersHook"}],
        default_hooks={
            "checkpoint": {"type": "CheckpointHook", "interval": 1, "max_keep_ckpts": 2}
        },
        launcher=args.launcher,
        env_cfg={"dist_cfg": {"backend": backend}},
        randomness={"seed": 0},
        cfg={"sync_bn": "torch"} if args.sync_bn else None,
    )
    runner.train()
    metrics = runner.val()
    if runner.rank == 0:
        print(
            f"world size {runner.world_size}: accuracy {metrics['accuracy']:.4f} on {metrics['samples']} samples"
        )


if __name__ == "__main__":
    main()
