"""Data loading: rank-sharding samplers, collate functions, an in-memory batched dataset."""

from fengine.dataset.batched import BatchedSamples, InMemoryDataset
from fengine.dataset.builder import FirstBatchCheck, build_dataloader, check_not_empty
from fengine.dataset.sampler import DefaultSampler, InfiniteSampler
from fengine.dataset.utils import default_collate, pseudo_collate, worker_init_fn

__all__ = [
    "BatchedSamples",
    "DefaultSampler",
    "FirstBatchCheck",
    "InMemoryDataset",
    "InfiniteSampler",
    "build_dataloader",
    "check_not_empty",
    "default_collate",
    "pseudo_collate",
    "worker_init_fn",
]
