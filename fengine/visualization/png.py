"""A minimal PNG encoder (8-bit RGB or grey, no filtering), so images need no imaging package."""

from __future__ import annotations

import struct
import zlib

import numpy as np

__all__ = ["png_bytes"]


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(image: np.ndarray) -> bytes:
    """Encode an ``(H, W, 3)`` RGB or ``(H, W)`` grey ``uint8`` array as a PNG file.

    Args:
        image: the pixels; other integer or float dtypes are clipped to ``[0, 255]`` and rounded.

    Returns:
        The bytes of the PNG file.

    Raises:
        ValueError: the array is not ``(H, W)`` or ``(H, W, 3)`` with ``H, W > 0``.
    """
    array = np.asarray(image)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3) or 0 in array.shape:
        raise ValueError(f"an image must be (H, W, 3) RGB or (H, W) grey, got shape {array.shape}")
    if array.dtype != np.uint8:
        array = np.clip(np.rint(array.astype(np.float64)), 0, 255).astype(np.uint8)
    height, width = array.shape[:2]
    colour = 2 if array.ndim == 3 else 0
    rows = array.reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)  # filter type 0 on every row
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(raw, 6))
        + _chunk(b"IEND", b"")
    )
