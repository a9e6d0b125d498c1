"""How an entry keeps its original line: compact, whole, and readable back exactly.

Stored form is a one-byte tag, then the payload:
  b"r" the raw bytes (tiny lines, where compression saves nothing);
  b"z" one zstd frame;
  b"d" a 4-byte big-endian Dictionary id, then one zstd frame made with it.
Transcript lines are small JSON objects repeating the same keys, so a dictionary
trained on a sample of them compresses each line several times better than zstd
alone while every line stays independently readable.
"""

from __future__ import annotations

import struct

import zstandard

_RAW = b"r"
_ZSTD = b"z"
_DICT = b"d"
_SMALL = 64
_LEVEL = 3
DICT_SIZE = 112 * 1024

_plain = zstandard.ZstdCompressor(level=_LEVEL)
_unplain = zstandard.ZstdDecompressor()
_compressors: dict[int, zstandard.ZstdCompressor] = {}
_decompressors: dict[int, zstandard.ZstdDecompressor] = {}


def dictionary_train(samples: list[bytes]) -> bytes | None:
    """Return a trained dictionary, or None when the samples are too few to help."""
    if len(samples) < 200 or sum(map(len, samples)) < 8 * DICT_SIZE:
        return None
    try:
        trained = zstandard.train_dictionary(DICT_SIZE, samples, level=_LEVEL)
    except zstandard.ZstdError:
        return None
    return trained.as_bytes()


def dictionary_load(*, dict_id: int, data: bytes) -> None:
    """Make a stored dictionary usable for encoding and decoding in this process."""
    compiled = zstandard.ZstdCompressionDict(bytes(data))
    _compressors[dict_id] = zstandard.ZstdCompressor(level=_LEVEL, dict_data=compiled)
    _decompressors[dict_id] = zstandard.ZstdDecompressor(dict_data=compiled)


def dictionary_loaded(dict_id: int) -> bool:
    """Return whether a dictionary id is loaded in this process."""
    return dict_id in _decompressors


def line_encode(line: bytes, *, dict_id: int | None = None) -> bytes:
    """Return the stored form of one line."""
    if len(line) < _SMALL:
        return _RAW + line
    if dict_id is not None:
        return _DICT + struct.pack(">I", dict_id) + _compressors[dict_id].compress(line)
    return _ZSTD + _plain.compress(line)


def line_decode(
    stored: bytes | memoryview, *, dictionaries: dict[int, bytes] | None = None
) -> bytes:
    """Return the original bytes of a stored line (dictionaries: id -> data)."""
    stored = bytes(stored)
    tag = stored[:1]
    if tag == _RAW:
        return stored[1:]
    if tag == _ZSTD:
        return _unplain.decompress(stored[1:])
    if tag == _DICT:
        (dict_id,) = struct.unpack(">I", stored[1:5])
        if dict_id not in _decompressors:
            if not dictionaries or dict_id not in dictionaries:
                raise LookupError(f"zstd dictionary {dict_id} is not loaded")
            dictionary_load(dict_id=dict_id, data=dictionaries[dict_id])
        return _decompressors[dict_id].decompress(stored[5:])
    raise ValueError(f"unknown stored line format {tag!r}")


def text_pack(text: str) -> bytes:
    """Return the stored form of an entry's searchable text (b'' when empty)."""
    return line_encode(text.encode("utf-8")) if text else b""


def text_unpack(stored: bytes | memoryview | None) -> str:
    """Return the searchable text from its stored form (the SQL indexing_text())."""
    if not stored:
        return ""
    return line_decode(stored).decode("utf-8", errors="replace")
