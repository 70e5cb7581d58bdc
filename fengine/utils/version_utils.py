"""Version strings as comparable tuples (MMEngine's ``mmengine.utils.digit_version``)."""

from __future__ import annotations

import re

_PRE = {"a": -3, "alpha": -3, "b": -2, "beta": -2, "rc": -1, "c": -1}
_VERSION = re.compile(
    r"^\s*v?(?P<release>\d+(?:\.\d+)*)"
    r"(?:[-_.]?(?P<pre>a|alpha|b|beta|rc|c)[-_.]?(?P<pre_n>\d*))?"
    r"(?:[-_.]?(?:post|rev|r)[-_.]?(?P<post>\d*))?"
    r"(?:[-_.]?dev[-_.]?(?P<dev>\d*))?"
    r"(?:\+[\w.]+)?\s*$",
    re.IGNORECASE,
)


def digit_version(version_str: str, length: int = 4) -> tuple[int, ...]:
    """A version string as a tuple of ints that compares in release order.

    The release numbers, padded or cut to ``length``, then two more: ``(-3|-2|-1, n)`` for an
    alpha, beta or release candidate ``n`` (``(-4, 0)`` for a development release), ``(1, n)``
    for a post release ``n``, else ``(0, 0)`` — MMEngine's encoding, so ``1.0rc1 < 1.0 < 1.0.post1``.
    A local part (``+cpu``) is ignored.

    Args:
        version_str: a PEP 440 version such as ``'2.1.0'``, ``'1.6.0rc1'`` or ``'2.13.0+cpu'``.
        length: how many release numbers to keep.

    Returns:
        The tuple of ``length + 2`` ints.

    Raises:
        ValueError: ``version_str`` is not a version.
    """
    match = _VERSION.match(version_str)
    if match is None:
        raise ValueError(f"digit_version: {version_str!r} is not a version such as '2.1.0'")
    release = [int(part) for part in match["release"].split(".")][:length]
    release += [0] * (length - len(release))
    if match["pre"] is not None:
        release += [_PRE[match["pre"].lower()], int(match["pre_n"] or 0)]
    elif match["dev"] is not None:
        release += [-4, 0]
    elif match["post"] is not None:
        release += [1, int(match["post"] or 0)]
    else:
        release += [0, 0]
    return tuple(release)


__all__ = ["digit_version"]
