"""Which message-hub scalars a log line of a mode shows, under which names, and how summarised."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_UNSEEN: Any = object()


def strip_prefix(key: str, prefix: str) -> str:
    """``key`` without a leading ``prefix`` (unchanged if it has none)."""
    return key[len(prefix) :] if key.startswith(prefix) else key


class KeySelection:
    """The histories of a mode's scalars, each key matched once per selection.

    A key belongs to ``mode`` if it starts with the mode's name (MMEngine tests
    ``startswith(mode)``, without the slash; kept for identical tags). Its name in the tag is
    the key without ``'<mode>/'`` unless ``keep_prefix``; it is averaged over the window if
    ``pattern`` finds a match in that name, else its latest value is shown. Keys and patterns
    seldom change between log lines, so the answer per key is kept; a different pattern
    object starts afresh.
    """

    def __init__(self) -> None:
        self._pattern: re.Pattern[str] | None = None
        # (mode, keep_prefix) -> key -> (name, averaged?), or None for another mode's key
        self._plans: dict[tuple[str, bool], dict[str, tuple[str, bool] | None]] = {}

    def histories(
        self, log_scalars: Mapping[str, Any], mode: str, keep_prefix: bool, pattern: re.Pattern[str]
    ) -> dict[str, tuple[Any, bool]]:
        """``{name: (history, averaged?)}`` for the keys of ``mode``, in first-logged order.

        Two keys with the same name (``'train/trainx'`` and ``'trainx'`` without prefixes)
        keep the first one's position and the last one's history, as a dict built from the
        keys in order would.

        Args:
            log_scalars: the message hub's ``{key: HistoryBuffer}``.
            mode: ``'train'``, ``'val'`` or ``'test'``.
            keep_prefix: name items by their full key.
            pattern: the names to average.

        Returns:
            The selected histories by tag name.
        """
        if pattern is not self._pattern:
            self._plans, self._pattern = {}, pattern
        plan = self._plans.get((mode, keep_prefix))
        if plan is None:
            plan = self._plans[(mode, keep_prefix)] = {}
        selected: dict[str, tuple[Any, bool]] = {}
        for key, buffer in log_scalars.items():
            entry = plan.get(key, _UNSEEN)
            if entry is _UNSEEN:
                entry = plan[key] = _entry(key, mode, keep_prefix, pattern)
            if entry is not None:
                selected[entry[0]] = (buffer, entry[1])
        return selected


def _entry(
    key: str, mode: str, keep_prefix: bool, pattern: re.Pattern[str]
) -> tuple[str, bool] | None:
    if not key.startswith(mode):
        return None
    name = key if keep_prefix else strip_prefix(key, f"{mode}/")
    return name, pattern.search(name) is not None
