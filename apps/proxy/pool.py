"""The relay's keep-alive connections to one upstream, at most a bounded number.

httpcore's connection pool serves any origin from any number of tasks, and pays for
that on every request with anyio primitives: a pool event, a per-connection request
lock and a state lock, each of which yields to the event loop once even when nobody
else holds it (anyio's fairness checkpoint), plus cancel-shield scopes that look up
the current task. On the relay that was three loop turns before a request could leave
and about a tenth of core's CPU (`current_task` alone 7%, bench/profile_relay.py).

This pool keeps the relay's simpler facts: one upstream origin, one request at a
time per connection, one event loop. Idle connections wait in a stack (the most
recent first, so few stay warm); one is taken unless the server closed it or its
keep-alive expired; a response hands its connection back when it ends cleanly, and
any other end closes it. The HTTP/1.1 work itself stays httpcore's
(`AsyncHTTP11Connection`, h11), over apps.proxy.transport, with the connection's
own state lock: replacing it with a no-op (a private attribute) saved 25-35 µs of
CPU per request on loopback, about 1% of a relayed stream's. Only httpcore's
public, pinned API is used (tests/proxy/test_pins.py).

The bound: at most `max_connections` calls hold a connection at once
(CLAUDEMON_UPSTREAM_CONNECTIONS), and lent and idle connections together never
exceed it, since a new one is opened only when none is idle. One more call fails
at once with PoolFull (the relay answers 503, which Claude Code retries) rather
than queueing behind streams that may run for minutes. A response dropped without
being closed (a client that left before its body was iterated) gives its slot back
when it is garbage-collected: the count is of live leases, not a counter that could
leak.
"""

from __future__ import annotations

import ssl
import weakref
from collections.abc import AsyncIterator
from typing import Protocol, cast

import certifi
import httpcore

from apps.proxy.transport import LoopBackend


class PoolFull(Exception):
    """Every connection the pool may open is lent to a call in flight."""


def tls_context() -> ssl.SSLContext:
    """Verified TLS with certifi's roots, HTTP/1.1 offered (as httpcore does)."""
    context = ssl.create_default_context(cafile=certifi.where())
    context.set_alpn_protocols(["http/1.1"])
    return context


class UpstreamPool:
    def __init__(
        self,
        *,
        max_connections: int,
        keepalive_expiry: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._idle: list[httpcore.AsyncHTTP11Connection] = []
        self._lent: weakref.WeakSet[_Lease] = weakref.WeakSet()
        self.max_connections = max_connections
        self._keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._backend = LoopBackend()
        self.opened = 0  # connections opened so far (tests and diagnostics)

    async def handle_async_request(
        self, request: httpcore.Request
    ) -> httpcore.Response:
        if len(self._lent) >= self.max_connections:
            raise PoolFull(f"all {self.max_connections} connections are in use")
        lease = _Lease(self)
        self._lent.add(lease)
        try:
            lease.connection = await self._take() or await self._open(request)
            response = await lease.connection.handle_async_request(request)
        except BaseException:
            await self.release(lease, reuse=False)
            raise
        # httpcore types a response's stream loosely; an HTTP/1.1 connection's is
        # an async byte stream with aclose.
        lease.stream = cast(_Body, response.stream)
        response.stream = lease
        return response

    async def _take(self) -> httpcore.AsyncHTTP11Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if connection.is_idle() and not connection.has_expired():
                return connection
            await connection.aclose()
        return None

    async def _open(self, request: httpcore.Request) -> httpcore.AsyncHTTP11Connection:
        url = request.url
        timeout = request.extensions.get("timeout", {}).get("connect")
        host = url.host.decode("ascii")
        port = url.port or (443 if url.scheme == b"https" else 80)
        stream = await self._backend.connect_tcp(host, port, timeout=timeout)
        if url.scheme == b"https":
            stream = await stream.start_tls(
                self._ssl_context or tls_context(),
                server_hostname=host,
                timeout=timeout,
            )
        self.opened += 1
        return httpcore.AsyncHTTP11Connection(
            origin=url.origin, stream=stream, keepalive_expiry=self._keepalive_expiry
        )

    async def release(self, lease: _Lease, *, reuse: bool) -> None:
        """End a lease: its connection back to the idle stack if it can serve
        again, else closed."""
        self._lent.discard(lease)
        connection, lease.connection = lease.connection, None
        if connection is None:
            return
        if reuse and connection.is_idle():
            self._idle.append(connection)
        else:
            await connection.aclose()

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def lent(self) -> int:
        return len(self._lent)


class _Body(Protocol):
    """A response body as httpcore's HTTP/1.1 connection hands it over."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class _Lease:
    """One call's hold on a connection; as the response body, it gives the
    connection back (or closes it) when the body is closed."""

    def __init__(self, pool: UpstreamPool) -> None:
        self._pool: UpstreamPool | None = pool
        self.connection: httpcore.AsyncHTTP11Connection | None = None
        self.stream: _Body | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self.stream is None:
            raise RuntimeError("no response body: the request did not complete")
        return self.stream.__aiter__()

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        if self.stream is not None:
            # httpcore marks the connection idle, or closes it if the body was
            # not read to its end.
            await self.stream.aclose()
        if pool is not None:
            await pool.release(self, reuse=True)
