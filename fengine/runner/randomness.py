"""Seeding the process's random number generators (MMEngine's ``randomness`` config).

Capturing and restoring their states for checkpoints is :class:`fengine.core.state.RngState`.
"""

from __future__ import annotations

import logging
import random

import numpy as np
import torch

from fengine import dist

logger = logging.getLogger(__name__)


def set_random_seed(
    seed: int | None = None, deterministic: bool = False, diff_rank_seed: bool = False
) -> int:
    """Seed Python, NumPy and torch (all CUDA devices too), as MMEngine's ``set_random_seed``.

    Args:
        seed: the seed; ``None`` draws one on rank 0, shares it with every rank and returns it.
        deterministic: also make cuDNN deterministic (``benchmark`` off) and turn on
            ``torch.use_deterministic_algorithms``.
        diff_rank_seed: add the process rank to the seed, so ranks draw different streams.

    Returns:
        The seed actually used (after adding the rank).

    Raises:
        TypeError: ``seed`` is not an int or None.
    """
    if seed is not None and (not isinstance(seed, (int, np.integer)) or isinstance(seed, bool)):
        raise TypeError(f"randomness: `seed` must be an int or None, got {seed!r}")
    seed = dist.sync_random_seed() if seed is None else int(seed)
    if diff_rank_seed:
        seed += dist.get_rank()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        if torch.backends.cudnn.benchmark:
            logger.warning("randomness: deterministic=True turns torch.backends.cudnn.benchmark off")
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True)
    return seed
