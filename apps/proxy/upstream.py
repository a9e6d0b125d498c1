"""The upstream side of the relay: the process's one HTTP client and the header rules.

Invariants:
- Bodies are never parsed or re-serialised here: bytes in, the same bytes out.
- One function, `headers_forwardable`, filters headers in both directions. It drops
  the hop-by-hop headers of RFC 9110 section 7.6.1 (plus any named in `Connection`),
  `host` (set from the upstream URL) and `content-length` (recomputed by whoever
  frames the message). Every other header passes with its exact name and value bytes,
  in order, duplicates included.
- Timeouts: connecting (TLS included) is bounded by CLAUDEMON_CONNECT_TIMEOUT; each
  read or write may stay idle up to CLAUDEMON_IDLE_TIMEOUT. There is no total
  timeout, so a stream that runs for an hour is never cut.
- At most CLAUDEMON_UPSTREAM_CONNECTIONS calls are in flight to the upstream; one
  more fails at once with PoolFull, never waits (apps.proxy.pool).
- The relay speaks to the upstream through httpcore (httpx's own transport) on an
  asyncio backend of ours (apps.proxy.transport): no environment lookups (netrc,
  proxy variables), no default headers, no URL re-parsing per call. The upstream
  request is the client's, plus Host and Content-Length.
"""

from __future__ import annotations

import asyncio
import functools
import time
import urllib.parse
from collections.abc import Iterable

import httpcore
from django.conf import settings

from apps.proxy.pool import PoolFull, UpstreamPool

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


@functools.lru_cache(maxsize=8)
def _origin(upstream: str) -> tuple[bytes, bytes, int, bytes, bytes]:
    """Split the upstream URL once: scheme, host, port, path prefix, Host header."""
    parts = urllib.parse.urlsplit(upstream)
    scheme = parts.scheme.encode("ascii")
    default_port = 443 if scheme == b"https" else 80
    port = parts.port or default_port
    host = (parts.hostname or "").encode("idna")  # settings refuse a URL without one
    host_header = b"[" + host + b"]" if b":" in host else host
    if parts.port and parts.port != default_port:
        host_header += b":%d" % parts.port
    return scheme, host, port, parts.path.rstrip("/").encode("latin-1"), host_header


# Methods whose requests say Content-Length even when the body is empty (as httpx and
# the SDKs send them).
_LENGTH_ALWAYS = frozenset({"POST", "PUT", "PATCH"})


def upstream_request(
    *,
    method: str,
    raw_path: bytes,
    query_string: bytes,
    headers: list,
    body: bytes,
    base_url: str = "",
    timeouts: tuple[float, float] | None = None,
) -> httpcore.Request:
    """The upstream request: the client's method, target, end-to-end headers and
    body bytes, plus the Host of the upstream and the body's length.

    A routed call names its provider's `base_url` and (connect, idle) `timeouts`.
    """
    base_url = base_url or settings.CLAUDEMON_UPSTREAM_URL
    scheme, host, port, prefix, host_header = _origin(base_url)
    target = prefix + raw_path
    if query_string:
        target += b"?" + query_string
    outgoing = [(b"Host", host_header), *headers_forwardable(headers)]
    if body or method in _LENGTH_ALWAYS:
        outgoing.append((b"Content-Length", str(len(body)).encode("ascii")))
    connect, idle = timeouts or (
        settings.CLAUDEMON_CONNECT_TIMEOUT,
        settings.CLAUDEMON_IDLE_TIMEOUT,
    )
    phases = {"connect": connect, "read": idle, "write": idle}
    return httpcore.Request(
        method.encode("ascii"),
        httpcore.URL(scheme=scheme, host=host, port=port, target=target),
        headers=outgoing,
        content=body,
        extensions={"timeout": phases},
    )


def url_without_credentials(url: str) -> str:
    """Return a URL fit to show: any `user:password@` taken out."""
    parts = urllib.parse.urlsplit(url)
    if "@" not in parts.netloc:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit(
        (parts.scheme, host, parts.path, parts.query, parts.fragment)
    )


# What a failed upstream exchange raises: httpcore's errors, or a full pool.
# (UnsupportedProtocol is raised only by httpcore's own pool, which the relay does
# not use.) OSError stays as a net: transport.py maps the OS's errors it knows of.
UPSTREAM_ERRORS = (
    PoolFull,
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    OSError,
)

_pool: UpstreamPool | None = None


def upstream_pool() -> UpstreamPool:
    """Return the process's long-lived pool of upstream connections."""
    global _pool
    if _pool is None:
        _pool = UpstreamPool(
            max_connections=settings.CLAUDEMON_UPSTREAM_CONNECTIONS,
            keepalive_expiry=60,
        )
    return _pool


class UpstreamReach:
    """Whether the upstream can be reached: a call it answered lately proves it,
    else a TCP connect, whose answer is kept a few seconds (load balancers poll)."""

    ANSWERED_FRESH = 30.0
    CHECK_KEPT = 10.0

    def __init__(self) -> None:
        self.answered_at = float("-inf")
        self.checked_at = float("-inf")
        self.problem = ""

    def answered(self) -> None:
        self.answered_at = time.monotonic()

    async def check(self) -> str:
        """Return '' if the upstream is reachable, else why not."""
        now = time.monotonic()
        if now - self.answered_at < self.ANSWERED_FRESH:
            return ""
        if now - self.checked_at >= self.CHECK_KEPT:
            self.problem = await _connect_check()
            self.checked_at = time.monotonic()
        return self.problem


async def _connect_check() -> str:
    _, host, port, _, _ = _origin(settings.CLAUDEMON_UPSTREAM_URL)
    timeout = min(settings.CLAUDEMON_CONNECT_TIMEOUT, 5.0)
    try:
        connecting = asyncio.open_connection(host.decode("ascii"), port)
        _, writer = await asyncio.wait_for(connecting, timeout)
    except (OSError, TimeoutError) as exc:
        where = url_without_credentials(settings.CLAUDEMON_UPSTREAM_URL)
        return f"cannot connect to {where}: {exc or type(exc).__name__}"
    writer.close()
    return ""


upstream_reach = UpstreamReach()
