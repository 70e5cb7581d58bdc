"""Sequence type checks (MMEngine's ``mmengine.utils.is_seq_of`` and ``is_list_of``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast


def is_seq_of(seq: Any, expected_type: type | tuple[type, ...], seq_type: type | None = None) -> bool:
    """Whether ``seq`` is a sequence (of ``seq_type`` if given) whose items are all ``expected_type``."""
    if not isinstance(seq, seq_type if seq_type is not None else Sequence):
        return False
    return all(isinstance(item, expected_type) for item in cast(Sequence[Any], seq))


def is_list_of(seq: Any, expected_type: type | tuple[type, ...]) -> bool:
    """Whether ``seq`` is a list whose items are all ``expected_type``."""
    return is_seq_of(seq, expected_type, seq_type=list)


__all__ = ["is_list_of", "is_seq_of"]
