"""Small images made in memory for the image tests (Pillow needed)."""

from __future__ import annotations

import io
import struct
import zlib


def png_bytes(
    width: int = 32, height: int = 24, color: tuple[int, int, int] = (200, 30, 30)
) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg_bytes(width: int = 40, height: int = 30) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (10, 120, 240)).save(buffer, format="JPEG", quality=80)
    return buffer.getvalue()


def gif_bytes() -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("P", (16, 16), 3).save(buffer, format="GIF")
    return buffer.getvalue()


def png_claiming_size(width: int, height: int) -> bytes:
    """A valid-looking PNG whose header claims ``width`` x ``height`` but holds almost no data.

    Opening it reads only the header, so it models a decompression bomb without
    needing the memory of a real one.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data))
            + kind
            + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )
