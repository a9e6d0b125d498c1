"""The one pair of functions through which stored bodies are written and read.

Stored form: a one-byte tag then the payload, so the format can change later
without touching callers: b"r" raw bytes, b"z" a zstandard frame. Request
bodies re-send the whole conversation every turn, so compression matters.
"""

from __future__ import annotations

import threading

import zstandard

_RAW = b"r"
_ZSTD = b"z"
_SMALL = 512  # below this, compression saves nothing worth the CPU
# A zstd context costs far more to create than to use on a typical body; keep one
# per thread (contexts are not thread-safe).
_codecs = threading.local()


def _compressor() -> zstandard.ZstdCompressor:
    if not hasattr(_codecs, "compressor"):
        _codecs.compressor = zstandard.ZstdCompressor(level=3)
        _codecs.decompressor = zstandard.ZstdDecompressor()
    return _codecs.compressor


def _decompressor() -> zstandard.ZstdDecompressor:
    _compressor()
    return _codecs.decompressor


def body_encode(data: bytes | None) -> bytes | None:
    """Return the stored form of a body."""
    if data is None:
        return None
    if len(data) < _SMALL:
        return _RAW + data
    return _ZSTD + _compressor().compress(data)


def body_decode(stored: bytes | memoryview | None) -> bytes | None:
    """Return the original bytes of a stored body."""
    if stored is None:
        return None
    stored = bytes(stored)
    tag, payload = stored[:1], stored[1:]
    if tag == _RAW:
        return payload
    if tag == _ZSTD:
        return _decompressor().decompress(payload)
    raise ValueError(f"unknown stored body format {tag!r}")
