"""MMEngine's comparison helpers for tests: ``assert_allclose`` (over ``torch.testing.assert_close``) and key checks."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch


def assert_allclose(
    actual: Any,
    expected: Any,
    rtol: float | None = None,
    atol: float | None = None,
    equal_nan: bool = True,
    msg: str | Callable[[str], str] | None = "",
) -> None:
    """Assert that ``actual`` and ``expected`` are close, as MMEngine's ``assert_allclose``.

    Numbers, sequences and tensors are compared as tensors of the expected's dtype and device
    (so ``assert_allclose(lr_tensor, [0.1, 0.01])`` works); without ``rtol``/``atol`` torch's
    dtype-dependent tolerances apply.

    Args:
        actual: the value produced.
        expected: the reference.
        rtol: relative tolerance (give ``atol`` with it).
        atol: absolute tolerance (give ``rtol`` with it).
        equal_nan: two NaNs count as equal.
        msg: message (or function of torch's message) used on a mismatch.

    Raises:
        AssertionError: the values differ beyond the tolerances.
    """
    if not isinstance(actual, torch.Tensor):
        actual = torch.as_tensor(actual)
    if not isinstance(expected, torch.Tensor):
        expected = torch.as_tensor(expected, dtype=actual.dtype)
    expected = expected.to(device=actual.device, dtype=actual.dtype)
    torch.testing.assert_close(
        actual,
        expected,
        rtol=rtol,
        atol=atol,
        equal_nan=equal_nan,
        check_device=True,
        check_dtype=False,
        msg=msg or None,
    )


def assert_dict_has_keys(obj: Mapping[str, Any], expected_keys: Iterable[str]) -> bool:
    """Whether ``obj`` has every key of ``expected_keys`` (MMEngine's ``assert_dict_has_keys``).

    Args:
        obj: the mapping checked.
        expected_keys: keys that must be present.

    Returns:
        ``True`` when all are present, else ``False``.
    """
    return set(expected_keys).issubset(obj)


def assert_keys_equal(result_keys: Iterable[str], target_keys: Iterable[str]) -> bool:
    """Whether two collections of keys hold the same keys, in any order (MMEngine's name).

    Args:
        result_keys: the keys produced.
        target_keys: the keys expected.

    Returns:
        ``True`` when the two sets of keys are equal, else ``False``.
    """
    return set(result_keys) == set(target_keys)
