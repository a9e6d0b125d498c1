"""The upstream side of the relay: the process's one HTTP client and the header rules.

Invariants:
- Bodies are never parsed or re-serialised here: bytes in, the same bytes out.
- One function, `headers_forwardable`, filters headers in both directions. It drops
  the hop-by-hop headers of RFC 9110 section 7.6.1 (plus any named in `Connection`),
  `host` (set from the upstream URL) and `content-length` (recomputed by whoever
  frames the message). Every other header passes with its exact name and value bytes,
  in order, duplicates included.
- Timeouts: connect and pool waits are bounded by CLAUDEMON_CONNECT_TIMEOUT; each
  read or write may stay idle up to CLAUDEMON_IDLE_TIMEOUT. There is no total
  timeout, so a stream that runs for an hour is never cut.
- The client ignores the environment (no netrc credentials, no proxy variables) and
  sends no default headers of its own: the client's request is the upstream request.
"""

from __future__ import annotations

from collections.abc import Iterable

import httpx
from django.conf import settings

Header = tuple[bytes, bytes]

# https://www.rfc-editor.org/rfc/rfc9110#section-7.6.1
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
        b"content-length",
    }
)


def headers_forwardable(headers: Iterable[Header]) -> list[Header]:
    """Return the end-to-end headers of a message, exactly as received."""
    headers = list(headers)
    dropped = set(HOP_BY_HOP)
    for name, value in headers:
        if name.lower() == b"connection":
            dropped.update(
                token.strip().lower() for token in value.split(b",") if token.strip()
            )
    return [(name, value) for name, value in headers if name.lower() not in dropped]


def upstream_url(*, raw_path: bytes, query_string: bytes) -> str:
    """Join the upstream URL (prefix kept) with the request's path and query."""
    url = settings.CLAUDEMON_UPSTREAM_URL + raw_path.decode("latin-1")
    if query_string:
        url += "?" + query_string.decode("latin-1")
    return url


_client: httpx.AsyncClient | None = None


def upstream_client() -> httpx.AsyncClient:
    """Return the process's long-lived upstream client, creating it on first use."""
    global _client
    if _client is None:
        connect = settings.CLAUDEMON_CONNECT_TIMEOUT
        idle = settings.CLAUDEMON_IDLE_TIMEOUT
        _client = httpx.AsyncClient(
            timeout=httpx.Timeout(connect=connect, read=idle, write=idle, pool=connect),
            limits=httpx.Limits(
                max_connections=None, max_keepalive_connections=100, keepalive_expiry=60
            ),
            follow_redirects=False,
            trust_env=False,
        )
        # httpx would add Accept, Accept-Encoding, Connection and User-Agent of its
        # own to every request; a transparent relay sends only the client's headers.
        for name in list(_client.headers.keys()):
            del _client.headers[name]
    return _client
