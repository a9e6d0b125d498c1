"""How entries keep their original lines: whole, compact, and readable back exactly.

Lines are stored in blocks (apps.indexing.models.Block): consecutive lines of one
file with their searchable text, packed into one zstd frame. Transcript lines
repeat the same keys, paths and file contents, so a frame of many lines compresses
several times better than each line alone, and an entry stays cheap to read
(unpacking a ~256 KB block takes well under a millisecond).

Unpacked layout: a 4-byte big-endian count n, then n pairs of 4-byte lengths
(line, text), then the payloads in that order.
"""

from __future__ import annotations

import struct
import zlib
from collections import OrderedDict
from itertools import accumulate

import zstandard

BLOCK_BYTES = 256 * 1024
_LEVEL = 3
_compressor = zstandard.ZstdCompressor(level=_LEVEL)
_decompressor = zstandard.ZstdDecompressor()
_CACHE_SIZE = 16
_cache: OrderedDict[tuple[int, int], tuple[bytes, list[int]]] = OrderedDict()


def block_pack(records: list[tuple[bytes, bytes]]) -> bytes:
    """Return one compressed block of (line, text utf-8) records."""
    header = [struct.pack(">I", len(records))]
    header += [struct.pack(">II", len(line), len(text)) for line, text in records]
    payload = [part for record in records for part in record]
    return _compressor.compress(b"".join(header + payload))


def block_unpack(data: bytes | memoryview) -> list[tuple[bytes, bytes]]:
    """Return the (line, text utf-8) records of a block."""
    plain = _decompressor.decompress(bytes(data))
    (count,) = struct.unpack_from(">I", plain, 0)
    sizes = struct.unpack_from(f">{count * 2}I", plain, 4)
    position = 4 + 8 * count
    records = []
    for index in range(count):
        line_size, text_size = sizes[2 * index], sizes[2 * index + 1]
        line = plain[position : position + line_size]
        position += line_size
        records.append((line, plain[position : position + text_size]))
        position += text_size
    return records


def block_records(block_id: int, data: bytes | memoryview) -> list[tuple[bytes, bytes]]:
    """Return all (line, text utf-8) records of a block."""
    plain, offsets = _block_open(block_id, data)
    return [
        (
            plain[offsets[2 * i] : offsets[2 * i + 1]],
            plain[offsets[2 * i + 1] : offsets[2 * i + 2]],
        )
        for i in range(len(offsets) // 2)
    ]


def block_record(
    block_id: int, data: bytes | memoryview, slot: int
) -> tuple[bytes, bytes]:
    """Return one (line, text utf-8) record of a block."""
    plain, offsets = _block_open(block_id, data)
    start, middle, end = offsets[2 * slot], offsets[2 * slot + 1], offsets[2 * slot + 2]
    return plain[start:middle], plain[middle:end]


def _block_open(block_id: int, data: bytes | memoryview) -> tuple[bytes, list[int]]:
    """Return a block's unpacked bytes and record offsets, kept while recent.

    Keyed by id and checksum: an id can come back after a rolled-back transaction
    or in another database file, and the same id with other bytes must not hit.
    """
    data = bytes(data)
    key = (block_id, zlib.crc32(data))
    opened = _cache.get(key)
    if opened is None:
        plain = _decompressor.decompress(data)
        (count,) = struct.unpack_from(">I", plain, 0)
        sizes = struct.unpack_from(f">{count * 2}I", plain, 4)
        offsets = list(accumulate(sizes, initial=4 + 8 * count))
        opened = (plain, offsets)
        _cache[key] = opened
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    else:
        _cache.move_to_end(key)
    return opened


def block_text(block_id: int, data: bytes | memoryview, slot: int) -> str:
    """Return one entry's searchable text."""
    if data is None:
        return ""
    return block_record(block_id, data, slot)[1].decode("utf-8", errors="replace")
