"""Short-window means in plain Python that round exactly like NumPy's.

A log line averages a few scalars over a window of about ten records. Building two NumPy arrays
per statistic costs several microseconds, far more than the arithmetic; for short all-float
windows the same sum is done here in Python, in NumPy's own order, so the result is the same
double to the last bit (NaN, infinities and signed zeros included).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

import numpy as np

#: Longest window summed here: NumPy's pairwise summation handles up to this many elements in one
#: unrolled block (no recursive halving), which is the order :func:`numpy_sum` reproduces.
MAX_FAST_WINDOW = 128

_FLOAT_ONLY = frozenset((float,))


def numpy_sum(values: Sequence[float]) -> float:
    """``float(np.array(values).sum())`` for 1 to :data:`MAX_FAST_WINDOW` Python floats.

    NumPy's ``add.reduce`` over a contiguous float64 array starts from ``+0.0`` and adds the
    pairwise sum of the elements: below 8 elements one running sum; otherwise eight running
    sums over elements ``i ≡ k (mod 8)`` of the largest multiple-of-8 prefix, combined as
    ``((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))``, then the remaining elements added one
    by one. IEEE double addition is the same operation in Python, so the results are identical.

    Args:
        values: the floats, oldest first (``1 <= len(values) <= MAX_FAST_WINDOW``).

    Returns:
        The sum as NumPy computes it.
    """
    n = len(values)
    if n < 8:
        total = 0.0
        for value in values:
            total += value
        return total
    r0, r1, r2, r3, r4, r5, r6, r7 = values[:8]
    blocked = n - n % 8
    for i in range(8, blocked, 8):
        r0 += values[i]
        r1 += values[i + 1]
        r2 += values[i + 2]
        r3 += values[i + 3]
        r4 += values[i + 4]
        r5 += values[i + 5]
        r6 += values[i + 6]
        r7 += values[i + 7]
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(blocked, n):
        total += values[i]
    return 0.0 + total


def _follows_numpy() -> bool:
    """Whether :func:`numpy_sum` matches the installed NumPy on probes where orders differ.

    Other summation orders (a running sum, the first element plus the pairwise sum of the
    rest, another block size) give other doubles on these probes; if some NumPy build sums
    differently, the short-window path stays off and every mean goes through NumPy.
    """
    probes = [[-0.0], [-0.0] * 9]
    for n in (*range(1, 20), 31, 64, 100, MAX_FAST_WINDOW):
        probes.append([(-1.0) ** i * 10.0 ** ((i * 7) % 17 - 8) * (1 + i / 3) for i in range(n)])
    for probe in probes:
        expected = float(np.array(probe).sum())
        if struct.pack("<d", numpy_sum(probe)) != struct.pack("<d", expected):
            return False
    return True


#: The installed NumPy sums short windows in the order :func:`numpy_sum` reproduces.
FOLLOWS_NUMPY = _follows_numpy()


def fast_mean(values: Sequence[Any], counts: Sequence[Any]) -> float | None:
    """The mean of a short window as NumPy computes it, or ``None`` when only NumPy can say.

    ``float(np.array(values).sum() / np.array(counts).sum())`` equals
    ``numpy_sum(values) / len(values)`` when every value is a Python ``float`` and every count
    equals 1 (``1``, ``1.0`` or ``True``: their NumPy sum is the window length, exactly). Other
    windows (integer values, other counts, longer than :data:`MAX_FAST_WINDOW`) return ``None``, as
    does every window when the installed NumPy sums in another order (:data:`FOLLOWS_NUMPY`).

    Args:
        values: the window's values, oldest first (not empty).
        counts: their counts, as many as ``values``.

    Returns:
        The mean, or ``None``.
    """
    size = len(values)
    if (
        size > MAX_FAST_WINDOW
        or counts.count(1) != size
        or set(map(type, values)) != _FLOAT_ONLY
        or not FOLLOWS_NUMPY
    ):
        return None
    return numpy_sum(values) / size
