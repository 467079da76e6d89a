"""Test images, made in memory: distinct, valid, broken and hostile."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def image_bytes(seed: int = 0, size: tuple[int, int] = (96, 80), fmt: str = "PNG") -> bytes:
    """A deterministic image whose pixels depend on ``seed`` (so predictions differ)."""
    width, height = size
    image = Image.new("RGB", size)
    image.putdata(
        [
            ((x * 7 + seed * 53) % 256, (y * 5 + seed * 29) % 256, (x * y + seed * 97) % 256)
            for y in range(height)
            for x in range(width)
        ]
    )
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(width: int = 60_000, height: int = 60_000) -> bytes:
    """A tiny PNG whose header declares a huge image (a decompression bomb)."""
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )
