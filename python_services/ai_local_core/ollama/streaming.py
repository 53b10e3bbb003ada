"""NDJSON parsing for Ollama's streaming endpoints.

Ollama writes one JSON object per line (``application/x-ndjson``). A proxy or a
tunnel may cut the byte stream anywhere, so the decoder buffers until it sees a
newline; a line is never parsed half. An ``{"error": ...}`` line after a 200
status is how Ollama reports a failure mid-stream: :func:`iter_ndjson` turns it
into the matching :class:`~ai_local_core.ollama.exceptions.OllamaError`.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterable
from typing import Any

from ai_local_core.ollama.exceptions import InvalidResponse, error_from_message

__all__ = ["DEFAULT_MAX_LINE_BYTES", "NDJSONDecoder", "iter_ndjson"]

#: A single line longer than this is treated as a broken stream (16 MiB).
DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024


class NDJSONDecoder:
    """Incremental decoder: :meth:`feed` bytes as they come, :meth:`close` at the end."""

    def __init__(self, *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self._buffer = bytearray()
        self._max_line_bytes = max_line_bytes
        self.lines_decoded = 0

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Add bytes; return the objects of every line completed by them."""
        self._buffer.extend(data)
        objects: list[dict[str, Any]] = []
        while True:
            newline = self._buffer.find(b"\n")
            if newline < 0:
                break
            line = bytes(self._buffer[:newline])
            del self._buffer[: newline + 1]
            obj = self._decode(line)
            if obj is not None:
                objects.append(obj)
        if len(self._buffer) > self._max_line_bytes:
            raise InvalidResponse(
                f"stream line longer than {self._max_line_bytes} bytes without a newline"
            )
        return objects

    def close(self) -> list[dict[str, Any]]:
        """Flush a last line that had no trailing newline."""
        rest = bytes(self._buffer)
        self._buffer.clear()
        obj = self._decode(rest)
        return [] if obj is None else [obj]

    @property
    def pending(self) -> int:
        """Bytes buffered that do not yet form a whole line."""
        return len(self._buffer)

    def _decode(self, line: bytes) -> dict[str, Any] | None:
        line = line.strip()
        if not line:
            return None
        try:
            obj: Any = json.loads(line)
        except ValueError as exc:
            preview = line[:80].decode("utf-8", "replace")
            raise InvalidResponse(f"stream line is not JSON ({exc}): {preview!r}") from None
        if not isinstance(obj, dict):
            raise InvalidResponse(f"stream line is not a JSON object: {type(obj).__name__}")
        self.lines_decoded += 1
        return obj


def iter_ndjson(
    chunks: Iterable[bytes], *, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES
) -> Generator[dict[str, Any], None, None]:
    """Yield the JSON objects of an NDJSON byte stream cut into arbitrary chunks.

    Raises the mapped :class:`OllamaError` for an ``{"error": ...}`` line and
    :class:`InvalidResponse` for a line that is not a JSON object.
    """
    decoder = NDJSONDecoder(max_line_bytes=max_line_bytes)
    for chunk in chunks:
        for obj in decoder.feed(chunk):
            yield _check(obj)
    for obj in decoder.close():
        yield _check(obj)


def _check(obj: dict[str, Any]) -> dict[str, Any]:
    error = obj.get("error")
    if error is not None:
        raise error_from_message(str(error))
    return obj
