"""Data loading: rank-sharding samplers, collate functions, an in-memory batched dataset."""

from fengine.dataset.batched import BatchedSamples, InMemoryDataset
from fengine.dataset.builder import build_dataloader
from fengine.dataset.sampler import DefaultSampler, InfiniteSampler
from fengine.dataset.utils import default_collate, pseudo_collate, worker_init_fn

__all__ = [
    "BatchedSamples",
    "DefaultSampler",
    "InMemoryDataset",
    "InfiniteSampler",
    "build_dataloader",
    "default_collate",
    "pseudo_collate",
    "worker_init_fn",
]
