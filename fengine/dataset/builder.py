"""build_dataloader: a ``torch`` DataLoader from an MMEngine-style config dict."""

from __future__ import annotations

import copy
import difflib
import inspect
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from torch.utils.data import DataLoader, Subset

from fengine.dataset.utils import worker_init_fn
from fengine.dist import get_rank, get_world_size
from fengine.registry import DATA_SAMPLERS, DATASETS, FUNCTIONS

_LOADER_KEYS = [p for p in inspect.signature(DataLoader.__init__).parameters if p != "self"]

#: Sample types no model step can take: a dataset returning one is a mistake in ``__getitem__``.
_NOT_A_SAMPLE = (str, bytes, type(None))


class FirstBatchCheck:
    """A loader's collate function that first checks the samples of the first batch it collates.

    A sample that is a ``str``, ``bytes`` or ``None`` is reported with the dataset's class and an
    index instead of failing deep inside the model. Only the first call checks (one type test per
    sample), so later batches cost one attribute read. Wraps fengine's own collate functions;
    a ``collate_fn`` callable of the user's is used as given (it may turn text into tensors).

    Args:
        collate_fn: the collate function (kept as ``__wrapped__``).
        dataset: the loader's dataset.
    """

    def __init__(self, collate_fn: Callable[..., Any], dataset: Any) -> None:
        self.__wrapped__ = collate_fn
        self.dataset_name = type(dataset).__name__
        self._dataset: Any = dataset
        self._checked = False

    def __getstate__(self) -> dict[str, Any]:
        # Workers started by pickling get no second copy of the dataset (the loader sends one).
        return {**self.__dict__, "_dataset": None}

    def __call__(self, data_batch: Any) -> Any:
        if not self._checked:
            self._check(data_batch)
        return self.__wrapped__(data_batch)

    def _check(self, data_batch: Any) -> None:
        samples = data_batch if isinstance(data_batch, list) else []
        bad = next(((i, s) for i, s in enumerate(samples) if isinstance(s, _NOT_A_SAMPLE)), None)
        if bad is None:
            self._checked = True
            return
        position, sample = bad
        where = f"sample {position} of the first batch ({sample!r:.60})"
        try:  # the failing path only: name a dataset index when index 0 returns the same kind
            first = self._dataset[0]  # (None in a worker: then the position is named)
            if isinstance(first, type(sample)):
                where = f"index 0 ({first!r:.60})"
        except Exception:  # only the wording depends on it
            pass
        raise TypeError(
            f"dataset {self.dataset_name} returned a {type(sample).__name__} at {where}; "
            "__getitem__ must return a dict (e.g. dict(inputs=..., "
            "data_samples=...)), a tuple/list or a Tensor, or pass a collate_fn callable that "
            "turns such samples into a batch"
        )


def check_not_empty(loader: Any, name: str) -> None:
    """Raise when ``loader`` (e.g. ``'train_dataloader'``) yields no batch.

    Loaders without a length (iterable datasets) are not checked.

    Raises:
        ValueError: naming the loader, its dataset's class and size, and the batch settings.
    """
    try:
        batches = len(loader)
    except TypeError:
        return
    if batches:
        return
    dataset = getattr(loader, "dataset", None)
    try:
        size = f"{len(dataset)} samples"  # type: ignore[arg-type]
    except TypeError:
        size = "no length"
    raise ValueError(
        f"{name} yields no batch: its dataset {type(dataset).__name__} has {size} "
        f"(batch_size={getattr(loader, 'batch_size', None)}, "
        f"drop_last={getattr(loader, 'drop_last', None)}); give it a non-empty dataset"
    )


def _function(cfg: Any, key: str) -> Callable[..., Any]:
    """A callable from ``dict(type=name_or_callable, **partial_kwargs)`` or a callable."""
    if isinstance(cfg, Mapping):
        args = dict(cfg)
        if "type" not in args:
            raise KeyError(f"dataloader `{key}` config needs a `type`, got {dict(cfg)!r}")
        function = FUNCTIONS.resolve(args.pop("type"))
        return partial(function, **args) if args else function
    if callable(cfg):
        return cfg  # type: ignore[no-any-return]
    raise TypeError(f"dataloader `{key}` must be a callable or a dict(type=...), got {cfg!r}")


def _batch_size(value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ValueError(f"dataloader `batch_size` must be a positive int, got {value!r}")


def build_dataloader(
    dataloader: DataLoader[Any] | Mapping[str, Any],
    seed: int | None = None,
    diff_rank_seed: bool = False,
) -> DataLoader[Any]:
    """A DataLoader from a config dict, or ``dataloader`` itself if it already is one.

    The dict holds ``dataset`` (an object or a ``DATASETS`` config), ``sampler`` (an object or a
    ``DATA_SAMPLERS`` config, built with ``dataset`` and ``seed``), optionally ``batch_sampler``
    (built with ``sampler`` and ``batch_size``), ``collate_fn`` (a callable or
    ``dict(type='pseudo_collate'|'default_collate', ...)``; default ``pseudo_collate``),
    ``worker_init_fn``, ``num_batch_per_epoch`` (use only the first batches' samples) and any
    ``DataLoader`` keyword (``batch_size``, ``num_workers``, ``persistent_workers``, ...). With a
    ``seed``, workers are seeded by :func:`worker_init_fn`. A collate function given by config
    is wrapped in :class:`FirstBatchCheck` (its ``__wrapped__``), so a dataset returning text or
    ``None`` fails at the first batch with its class named.

    Args:
        dataloader: a DataLoader or its config.
        seed: the run's seed (given to the sampler unless ``diff_rank_seed``).
        diff_rank_seed: ranks use different seeds, so the sampler draws a shared one itself.

    Returns:
        The DataLoader.

    Raises:
        TypeError: the config is not a dict, or a value has a wrong type.
        KeyError: ``dataset`` or ``sampler`` is missing, a registry name is unknown (the message
            lists close names), or a key is not a DataLoader argument.
        ValueError: ``batch_size`` is not a positive int.
    """
    if isinstance(dataloader, DataLoader):
        return dataloader
    if not isinstance(dataloader, Mapping):
        raise TypeError(
            f"a dataloader must be a DataLoader or a config dict, got {type(dataloader).__name__}"
        )
    # Copy nested configs, but keep objects (a dataset of large tensors) as they are.
    cfg: dict[str, Any] = {
        k: copy.deepcopy(v) if isinstance(v, Mapping) else v for k, v in dataloader.items()
    }
    for key, example in (
        ("dataset", "dict(type='MyDataset', ...)"),
        ("sampler", "dict(type='DefaultSampler', shuffle=True)"),
    ):
        if key not in cfg:
            raise KeyError(
                f"dataloader config needs `{key}` (e.g. {key}={example}); got keys {sorted(cfg)}"
            )
    dataset: Any = cfg.pop("dataset")
    if isinstance(dataset, Mapping):
        dataset = DATASETS.build(dataset)
        if hasattr(dataset, "full_init"):
            dataset.full_init()
    num_batches = cfg.pop("num_batch_per_epoch", None)
    if num_batches is not None:
        batch_size = cfg.get("batch_size") or 1
        dataset = Subset(
            dataset, range(min(len(dataset), num_batches * batch_size * get_world_size()))
        )

    sampler: Any = cfg.pop("sampler")
    if isinstance(sampler, Mapping):
        sampler = DATA_SAMPLERS.build(
            sampler, default_args={"dataset": dataset, "seed": None if diff_rank_seed else seed}
        )
    _batch_size(cfg.get("batch_size"))
    batch_sampler: Any = cfg.pop("batch_sampler", None)
    if isinstance(batch_sampler, Mapping):
        batch_sampler = DATA_SAMPLERS.build(
            batch_sampler, default_args={"sampler": sampler, "batch_size": cfg.pop("batch_size", 1)}
        )

    init_fn: Callable[..., Any] | None
    disable_warning = cfg.pop("disable_subprocess_warning", False)
    if "worker_init_fn" in cfg:
        init_fn = _function(cfg.pop("worker_init_fn"), "worker_init_fn")
    elif seed is not None:
        init_fn = partial(
            worker_init_fn,
            num_workers=cfg.get("num_workers", 0),
            rank=get_rank(),
            seed=seed,
            disable_subprocess_warning=disable_warning,
        )
    else:
        init_fn = None
    collate_cfg = cfg.pop("collate_fn", {"type": "pseudo_collate"})
    collate_fn = _function(collate_cfg, "collate_fn")
    if isinstance(collate_cfg, Mapping):
        collate_fn = FirstBatchCheck(collate_fn, dataset)

    unknown = sorted(k for k in cfg if k not in _LOADER_KEYS)
    if unknown:
        hints = {k: difflib.get_close_matches(k, _LOADER_KEYS, n=2) for k in unknown}
        raise KeyError(
            f"dataloader config has keys that are not DataLoader arguments: {unknown} "
            f"(close names: {hints}); accepted besides dataset/sampler/batch_sampler/collate_fn/"
            f"worker_init_fn/num_batch_per_epoch: {_LOADER_KEYS}"
        )
    loader: DataLoader[Any] = DataLoader(
        dataset=dataset,
        sampler=sampler if batch_sampler is None else None,
        batch_sampler=batch_sampler,
        collate_fn=collate_fn,
        worker_init_fn=init_fn,
        **cfg,
    )
    return loader
