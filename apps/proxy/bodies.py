"""The one place that knows how bodies are stored: formats, blocks, sweeps, compaction.

Stored form: a one-byte tag then the payload: b"r" raw bytes, b"z" a zstandard
frame, b"b" the ids of BodyBlock rows whose contents, joined, are the body.

Why blocks: Claude Code re-sends the whole conversation on every call, so a
session's request bodies grow with the square of its length even when each is
compressed. A request body of a session is cut before every JSON object that
starts an array element (a message, a content block, a tool, a system block);
each piece is stored once per session, keyed by its digest, and the body keeps
only the list of its pieces' ids. What a body shares with earlier bodies of its
session (every agent's: they share tools and system blocks) costs nothing more.
bench/storage.py, 200-call session: 0.85 MB stored for 1.13 MB of new content
(97 MB as relayed), 39x less than zstd per body (33 MB); one of its last bodies
reads in 3-14 ms (p95, with the machine's load), and the recorder spends about
the CPU per body it did before.

Why not zstd with the previous body as a raw dictionary: measured on the same
session with a full body every 16 calls (so a read decodes at most 16 frames,
4.3 ms), it stored 2.5 MB, 2.2 MB of it full bodies, a share that grows with the
square of the session's length; and each body would depend on another exchange,
so a delete must re-base its dependents. Here a body depends only on blocks of
its session, never on another exchange: any body is read in one query, and a
delete only has to sweep the blocks no remaining exchange of the session lists.

Invariants (tests/proxy/test_bodies.py): body_decode returns exactly the bytes
that were relayed; every block a stored body lists exists, with the body's
session_id as its scope; after a delete through services.exchange_delete,
no block of a touched session is left unlisted. Blocks are written and swept
only inside transactions that hold their session (bodyblock_lock: SQLite's
IMMEDIATE transactions, one writer at a time; a lock per session on PostgreSQL),
so a block found by bodyblock_store cannot be swept before the row listing it
is written, and two relays never store the same block twice.

This module holds its own queries (against the house habit of services and
selectors): the format and the rows that carry it are one invariant, kept where
it can be read whole.
"""

from __future__ import annotations

import array
import hashlib
import itertools
import json
import re
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, overload

import zstandard
from django.db import connection, transaction
from django.db.models import Sum
from django.db.models.functions import Length

from apps.proxy import sql
from apps.proxy.models import BodyBlock, Exchange

_RAW = b"r"
_ZSTD = b"z"
_BLOCKS = b"b"
_SMALL = 512  # below this, compression saves nothing worth the CPU
# A cut is made only after at least this many bytes: smaller pieces cost more in
# row overhead and ids than they save (bench/storage.py: 256 stored the least).
_MIN_BLOCK = 256
# Cuts go before an object that starts an array element: `{"` after `[` or `,`
# (whitespace between allowed). In JSON text a quote inside a string is always
# escaped, so these fall on structure, never inside a string. Any other body is
# cut wherever the bytes happen to match, which only changes how well it is
# shared, never what is read back. A plain `{"` is searched first: a literal
# scans about 20x faster than a pattern with a character class before it.
_OBJECT = re.compile(rb'\{"')
_BLANK = frozenset(b" \t\r\n")
_OPENS = frozenset(b"[,")
_IN_CHUNK = 900  # bound parameters per IN list, below SQLite's limit on old builds
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


# --- formats -------------------------------------------------------------------


@overload
def body_encode(data: bytes) -> bytes: ...
@overload
def body_encode(data: None) -> None: ...
def body_encode(data: bytes | None) -> bytes | None:
    """Return the stored form of a body that stands alone."""
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
    if tag == _BLOCKS:
        return _body_join(body_block_ids(stored) or [])
    raise ValueError(f"unknown stored body format {tag!r}")


def _body_join(ids: list[int]) -> bytes:
    statement = sql.on(connection.vendor).BODYBLOCKS_READ
    with connection.cursor() as cursor:  # one parameter: sql.BODYBLOCKS_READ says why
        cursor.execute(statement, [json.dumps(ids)])
        contents = dict(cursor.fetchall())
    if len(contents) < len(set(ids)):
        missing = len(set(ids)) - len(contents)
        raise ValueError(f"stored body lists {missing} missing blocks")
    pieces = {block: _decompress_block(data) for block, data in contents.items()}
    return b"".join(pieces[block] for block in ids)


def _decompress_block(data: bytes) -> bytes:
    if data[:1] == _ZSTD:
        return _decompressor().decompress(data[1:])
    return data[1:]  # b"r": blocks are never lists of blocks


@dataclass(frozen=True, slots=True)
class BodyBlocks:
    """A request body cut into pieces, to be stored by bodyblock_store."""

    pieces: tuple[bytes, ...]
    digests: tuple[bytes, ...]


def body_encode_request(data: bytes, *, session_id: str) -> bytes | BodyBlocks:
    """Return a request body's stored form, or its pieces if its session shares them."""
    if not session_id or len(data) < _SMALL:
        return body_encode(data)
    return body_split(data)


def body_split(data: bytes) -> BodyBlocks:
    """Cut a body before objects that start array elements; hash every piece."""
    pieces, last = [], 0
    for match in _OBJECT.finditer(data):
        cut = match.start()
        if cut - last < _MIN_BLOCK:
            continue
        before = cut - 1
        while before > last and data[before] in _BLANK:
            before -= 1
        if data[before] in _OPENS:
            pieces.append(data[last:cut])
            last = cut
    pieces.append(data[last:])
    digests = [hashlib.blake2b(piece, digest_size=16).digest() for piece in pieces]
    return BodyBlocks(tuple(pieces), tuple(digests))


def body_of_blocks(ids: list[int]) -> bytes:
    """Return the stored form of a body made of these blocks, in order."""
    # Ids of one session are mostly consecutive: deltas of 1 compress to almost
    # nothing, so a body of 500 blocks costs tens of bytes.
    deltas = array.array("q", [ids[0], *(b - a for a, b in itertools.pairwise(ids))])
    if sys.byteorder == "big":
        deltas.byteswap()
    return _BLOCKS + _compressor().compress(deltas.tobytes())


def body_block_ids(stored: bytes | memoryview | None) -> list[int] | None:
    """Return the block ids a stored body lists, or None if it stands alone."""
    if stored is None or bytes(stored[:1]) != _BLOCKS:
        return None
    deltas = array.array("q", _decompressor().decompress(bytes(stored[1:])))
    if sys.byteorder == "big":
        deltas.byteswap()
    return list(itertools.accumulate(deltas))


# --- blocks in the database ----------------------------------------------------


def body_row_stored(row: dict[str, Any]) -> dict[str, Any]:
    """Return a row to write, its request body's blocks stored (call in the write).

    A row then ignored as a duplicate (its uid exists) lists the same blocks as
    the row that exists: nothing is left unlisted.
    """
    body = row.get("request_body")
    if not isinstance(body, BodyBlocks):
        return row
    return row | {"request_body": bodyblock_store(body=body, scope=row["session_id"])}


def bodyblock_lock(*, scopes: list[str]) -> None:
    """Hold these sessions' blocks until the transaction ends (call in one)."""
    statement = sql.on(connection.vendor).BODYBLOCK_LOCK
    if statement and scopes:
        with connection.cursor() as cursor:
            cursor.execute(statement, [sorted(set(scopes))])


def bodyblock_store(*, body: BodyBlocks, scope: str) -> bytes:
    """Store the blocks a session lacks; return the body's stored form."""
    bodyblock_lock(scopes=[scope])
    # All of the session's digests in one index-only read: a body lists most of
    # them, and IN lists of its own digests cost 3x the CPU (bench/storage.py).
    rows = BodyBlock.objects.filter(scope=scope).values_list("digest", "id")
    known = {bytes(digest): pk for digest, pk in rows}
    missing = {
        digest: BodyBlock(scope=scope, digest=digest, data=body_encode(piece))
        for digest, piece in zip(body.digests, body.pieces, strict=True)
        if digest not in known
    }
    BodyBlock.objects.bulk_create(missing.values())  # SQLite returns the new ids
    known.update((digest, block.pk) for digest, block in missing.items())
    return body_of_blocks([known[digest] for digest in body.digests])


def bodyblock_sweep(*, scope: str) -> int:
    """Delete the blocks of a session that none of its exchanges lists; count them."""
    with transaction.atomic():
        bodyblock_lock(scopes=[scope])
        unlisted = set(
            BodyBlock.objects.filter(scope=scope).values_list("id", flat=True)
        )
        if not unlisted:
            return 0
        bodies = Exchange.objects.filter(session_id=scope).values_list(
            "request_body", flat=True
        )
        for stored in bodies.iterator(chunk_size=200):
            unlisted.difference_update(body_block_ids(stored) or ())
        doomed = sorted(unlisted)
        for start in range(0, len(doomed), _IN_CHUNK):
            BodyBlock.objects.filter(pk__in=doomed[start : start + _IN_CHUNK]).delete()
    return len(doomed)


def bodyblock_sweep_all() -> int:
    """Sweep every session that has blocks, one short transaction each."""
    scopes = BodyBlock.objects.order_by("scope").values_list("scope", flat=True)
    return sum(bodyblock_sweep(scope=scope) for scope in list(scopes.distinct()))


def body_sizes() -> dict[str, int]:
    """Return the stored bytes of request bodies and of the blocks they list."""
    exchanges = Exchange.objects.aggregate(total=Sum(Length("request_body")))
    blocks = BodyBlock.objects.aggregate(total=Sum(Length("data")))
    return {"exchanges": exchanges["total"] or 0, "blocks": blocks["total"] or 0}


# --- converting older rows (manage.py compact) -----------------------------------

_COMPACT_BYTES = 8 * 1024 * 1024  # stored bytes converted per transaction
_COMPACT_ROWS = 100


def body_compact() -> Iterator[int]:
    """Rewrite the request bodies of sessions in block form; yield counts per batch.

    Resumable and idempotent: rows already in block form are left as they are,
    and each batch is one short transaction, so stopping loses at most the
    current batch and the relay's recorder never waits long behind it.
    """
    after = 0
    while True:
        page = list(
            Exchange.objects.exclude(session_id="")
            .filter(pk__gt=after, request_body__isnull=False)
            .order_by("pk")
            .annotate(size=Length("request_body"))
            .values_list("pk", "size")[:500]
        )
        if not page:
            return
        after = page[-1][0]
        batch, size = [], 0
        for pk, stored_size in page:
            batch.append(pk)
            size += stored_size
            if size >= _COMPACT_BYTES or len(batch) >= _COMPACT_ROWS:
                yield _compact_batch(ids=batch)
                batch, size = [], 0
        if batch:
            yield _compact_batch(ids=batch)


def _compact_batch(*, ids: list[int]) -> int:
    rows = Exchange.objects.filter(pk__in=ids).values_list(
        "pk", "session_id", "request_body"
    )
    pending = {}  # cut outside the transaction: it is the slow, CPU-bound part
    for pk, session_id, stored in rows:
        if body_block_ids(stored) is not None:
            continue  # stored as blocks already
        data = body_decode(stored)
        body = body_encode_request(data, session_id=session_id) if data else None
        if isinstance(body, BodyBlocks):
            pending[pk] = (session_id, body)
    converted = 0
    with transaction.atomic():
        alive = Exchange.objects.filter(pk__in=pending).values_list("pk", flat=True)
        for pk in list(alive):  # a row deleted meanwhile gets no blocks
            session_id, body = pending[pk]
            stored = bodyblock_store(body=body, scope=session_id)
            converted += Exchange.objects.filter(pk=pk).update(request_body=stored)
    return converted


# --- bodies as people read them -------------------------------------------------

_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def json_pretty(value: Any) -> str:
    """Indent a decoded JSON value for a page: two spaces, non-ASCII kept as is.

    JSON may escape a lone UTF-16 surrogate (\\ud800) that no page can encode as
    UTF-8: it is shown as U+FFFD. Values JSON cannot hold are shown as str().
    """
    text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    return _LONE_SURROGATE.sub("\ufffd", text)


def body_pretty(data: bytes | str) -> str:
    """Return a body as text for a page: indented when it is JSON, else as it is."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    try:
        return json_pretty(json.loads(text))
    except (ValueError, RecursionError):  # not JSON, a 4,300-digit int, too deep
        return text
