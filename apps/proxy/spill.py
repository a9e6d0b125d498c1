"""The on-disk form of recording steps: the spill file and the quarantine file.

Invariants:
- JSON lines, one step per line, each carrying "v" (the format version, 1), so a
  later format can still read this one and a renamed class strands nothing. Reading
  a line never runs code (no pickle).
- Nothing secret reaches the disk: secret headers (and CLAUDEMON_REDACT_HEADERS) are
  fingerprinted and secret query parameters hidden while the line is built, in
  memory. Bodies are capped at CLAUDEMON_RECORD_MAX_BODY, their full size kept.
- Files are created owner-only (0600) in an owner-only folder (0700): they hold
  prompts and tool output.
- Only the recording threads and the data deployment touch these files, never the
  relay's event loop.
"""

from __future__ import annotations

import base64
import json
import os
import re
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings

from apps.proxy.recorder import (
    Call,
    body_prefix,
    call_credential,
    credential_fingerprint,
    headers_redact,
    query_redact,
)

VERSION = 1


@dataclass(frozen=True, slots=True)
class BacklogFiles:
    spill: Path
    quarantine: Path
    legacy: Path  # the pickle spill of earlier versions, never loaded
    legacy_aside: Path  # where such a file is moved and reported
    unnamed: Path  # the spill of versions before relays had names, adopted


def backlog_files() -> BacklogFiles:
    """Return this relay's backlog files under CLAUDEMON_VAR_DIR/backlog, named
    after the database and the relay (CLAUDEMON_RELAY_NAME): relays that share a
    host and its var folder never append to, or drain, one another's spill."""
    folder = settings.CLAUDEMON_VAR_DIR / "backlog"
    stem = settings.CLAUDEMON_DB_PATH.stem
    own = f"{stem}.{_file_safe(settings.CLAUDEMON_RELAY_NAME)}"
    return BacklogFiles(
        spill=folder / f"{own}.spill.jsonl",
        quarantine=folder / f"{own}.quarantine.jsonl",
        legacy=folder / f"{stem}.spill",
        legacy_aside=folder / f"{stem}.spill.legacy-pickle",
        unnamed=folder / f"{stem}.spill.jsonl",
    )


def quarantine_files() -> list[Path]:
    """Return every relay's quarantine file of this database (and an unnamed one
    from before relays had names)."""
    folder = settings.CLAUDEMON_VAR_DIR / "backlog"
    stem = settings.CLAUDEMON_DB_PATH.stem
    named = sorted(folder.glob(f"{stem}.*.quarantine.jsonl"))
    return [folder / f"{stem}.quarantine.jsonl", *named]


def unnamed_adopt(files: BacklogFiles) -> None:
    """Take over the spill (and its draining part) of a version before relays had
    names: one relay wins each rename, the others find nothing to take."""
    for suffix in ("", ".draining"):
        source = files.unnamed.with_name(files.unnamed.name + suffix)
        target = files.spill.with_name(files.spill.name + suffix)
        if source.exists() and not target.exists():
            try:
                os.rename(source, target)
            except FileNotFoundError:
                pass


def _file_safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name)


def step_line(kind: str, call: Call, **extra: Any) -> bytes:
    """Return one step as a JSON line, secrets fingerprinted and bodies capped."""
    cap = settings.CLAUDEMON_RECORD_MAX_BODY
    redact = settings.CLAUDEMON_REDACT_HEADERS
    response = body_prefix(call.chunks, cap)
    record = {
        "v": VERSION,
        "kind": kind,
        **extra,
        "uid": str(call.uid),
        "started_at": call.started_at.isoformat(),
        "method": call.method,
        "path": call.path,
        "query": query_redact(call.query),
        "request_headers": headers_redact(call.request_headers, extra=redact),
        # Whose call, from the key itself: the headers above hold its fingerprint.
        "credential": call_credential(call),
        "request_body": _b64(call.request_body[:cap]),
        "request_size": _size(call.request_size, len(call.request_body)),
        "status_code": call.status_code,
        "response_headers": headers_redact(call.response_headers, extra=redact),
        "response_body": _b64(response),
        "response_size": _size(call.response_size, sum(map(len, call.chunks))),
        "ttfb_ms": call.ttfb_ms,
        "duration_ms": call.duration_ms,
        "state": call.state,
        "error_type": call.error_type,
        "error_message": call.error_message,
    }
    return json.dumps(record, separators=(",", ":")).encode() + b"\n"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _size(known: int | None, measured: int) -> int:
    return measured if known is None else known


def step_read(line: bytes) -> tuple[str, Call]:
    """Return (kind, call) from a step line; ValueError if it is not one we read."""
    try:
        record = json.loads(line)
    except RecursionError:  # a hostile line: unreadable like any other
        raise ValueError("not a step line: nested too deeply") from None
    if not isinstance(record, dict) or record.get("v") != VERSION:
        raise ValueError(f"not a version {VERSION} step line")
    try:
        return record["kind"], _call(record)
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"incomplete step line: {exc!r}") from None


def _call(record: dict[str, Any]) -> Call:
    response = base64.b64decode(record["response_body"])
    return Call(
        uid=uuid.UUID(record["uid"]),
        started_at=datetime.fromisoformat(record["started_at"]),
        t0=0.0,
        method=record["method"],
        path=record["path"],
        query=record["query"],
        request_headers=_headers(record["request_headers"]),
        request_body=base64.b64decode(record["request_body"]),
        request_size=record["request_size"],
        status_code=record["status_code"],
        response_headers=_headers(record["response_headers"]),
        chunks=[response] if response else [],
        response_size=record["response_size"],
        ttfb_ms=record["ttfb_ms"],
        duration_ms=record["duration_ms"],
        state=record["state"],
        error_type=record["error_type"],
        error_message=record["error_message"],
        credential=_credential(record),
    )


def _credential(record: dict[str, Any]) -> str:
    if "credential" in record:
        return str(record["credential"])
    # A line spilled before lines carried it: its headers' fingerprint, as is.
    headers = _headers(record["request_headers"])
    return credential_fingerprint(headers, redacted=True)


def _headers(pairs: list[list[str]]) -> list[tuple[bytes, bytes]]:
    return [(n.encode("latin-1"), v.encode("latin-1")) for n, v in pairs]


def unreadable_line(line: bytes, reason: str) -> bytes:
    """Return a quarantine line keeping a spill line that could not be read."""
    record = {
        "v": VERSION,
        "reason": reason,
        "at": datetime.now(UTC).isoformat(),
        "raw": line.decode("utf-8", "replace"),
    }
    return json.dumps(record).encode() + b"\n"


def lines_append(path: Path, lines: list[bytes]) -> None:
    """Append lines to an owner-only file and make them durable."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    with os.fdopen(fd, "ab") as handle:
        handle.writelines(lines)
        handle.flush()
        os.fsync(handle.fileno())


def lines_read(path: Path) -> Iterator[bytes]:
    """Yield a file's lines one at a time (none if it does not exist)."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return
    with handle:
        yield from handle


def lines_count(path: Path) -> int:
    """Return how many lines a file holds (0 if it does not exist)."""
    return sum(1 for _ in lines_read(path))


def legacy_set_aside(files: BacklogFiles) -> Path | None:
    """Move a spill file of the old pickle format aside, unread; return where it is.

    A pickle runs code when loaded, and these hold keys in clear: it is never read,
    only made owner-only and reported, for the user to inspect and delete.
    """
    if files.legacy.exists():
        os.replace(files.legacy, files.legacy_aside)
    if not files.legacy_aside.exists():
        return None
    os.chmod(files.legacy_aside, 0o600)
    return files.legacy_aside
