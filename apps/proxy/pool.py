"""The relay's keep-alive connections to its one upstream.

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
(`AsyncHTTP11Connection`, h11), over apps.proxy.transport.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import certifi
import httpcore

from apps.proxy.transport import LoopBackend


class _Unlocked:
    """Stands in for a connection's state lock: the pool gives each connection to
    one request at a time, so there is nothing to wait for."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc_info: object) -> None:
        return None


_UNLOCKED = _Unlocked()


def tls_context() -> ssl.SSLContext:
    """Verified TLS with certifi's roots, HTTP/1.1 offered (as httpcore does)."""
    context = ssl.create_default_context(cafile=certifi.where())
    context.set_alpn_protocols(["http/1.1"])
    return context


class UpstreamPool:
    def __init__(
        self,
        *,
        max_idle: int = 100,
        keepalive_expiry: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._idle: list[httpcore.AsyncHTTP11Connection] = []
        self._max_idle = max_idle
        self._keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._backend = LoopBackend()
        self.opened = 0  # connections opened so far (tests and diagnostics)

    async def handle_async_request(
        self, request: httpcore.Request
    ) -> httpcore.Response:
        connection = await self._take() or await self._open(request)
        try:
            response = await connection.handle_async_request(request)
        except BaseException:
            await connection.aclose()
            raise
        response.stream = _Returning(response.stream, connection, self)
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
        stream = await self._backend.connect_tcp(host, url.port, timeout=timeout)
        if url.scheme == b"https":
            stream = await stream.start_tls(
                self._ssl_context or tls_context(),
                server_hostname=host,
                timeout=timeout,
            )
        connection = httpcore.AsyncHTTP11Connection(
            origin=url.origin, stream=stream, keepalive_expiry=self._keepalive_expiry
        )
        connection._state_lock = _UNLOCKED  # see _Unlocked
        self.opened += 1
        return connection

    async def _give_back(self, connection: httpcore.AsyncHTTP11Connection) -> None:
        if not connection.is_idle():
            await connection.aclose()
            return
        self._idle.append(connection)
        if len(self._idle) > self._max_idle:
            await self._idle.pop(0).aclose()

    @property
    def idle(self) -> int:
        return len(self._idle)


class _Returning:
    """A response body that returns its connection to the pool when it is closed."""

    def __init__(
        self,
        stream: AsyncIterator[bytes],
        connection: httpcore.AsyncHTTP11Connection,
        pool: UpstreamPool,
    ) -> None:
        self._stream = stream
        self._connection = connection
        self._pool = pool

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream.__aiter__()

    async def aclose(self) -> None:
        pool, self._pool = self._pool, None
        await self._stream.aclose()  # httpcore marks the connection idle or closes it
        if pool is not None:
            await pool._give_back(self._connection)
