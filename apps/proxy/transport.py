"""httpcore's network layer for the relay, written directly on asyncio's protocols.

httpcore (httpx's own transport, HTTP/1.1 through h11) talks to the network through
a small backend interface. Its default backend goes through anyio, which costs the
relay's hot path, per chunk read: a sniffio lookup of the running library, a cancel
scope for the timeout, and pausing then resuming the socket's reader (two epoll_ctl
calls). bench/profile_relay.py put those at about a tenth of core's CPU while
relaying trickled streams.

This backend keeps what arrives in a buffer fed by `data_received`, so a read that
finds data returns at once without suspending, and a read that has to wait arms one
timer. A request's head is held for one turn of the loop so that it leaves in the
same segment as its body. Reading pauses only when a megabyte is buffered and nobody
reads. Errors are httpcore's own (ConnectError, ReadTimeout, ...), exactly as the
anyio backend maps them, so the pool and the relay see the same exceptions either
way.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections import deque
from typing import Any

import httpcore

_PAUSE_AT = 1024 * 1024  # buffered bytes at which reading pauses
_RESUME_AT = 256 * 1024
_HOLD_AT_MOST = 16 * 1024  # a request head held back to leave with its body
_JOIN_AT_MOST = 1024 * 1024  # joined with the body up to this size, else sent apart
# A large body is handed to asyncio a slice at a time: what the socket does not take
# at once is copied into the transport's buffer, so a whole 150 MB body would be
# held twice until sent.
_SLICE = 1024 * 1024


class _Protocol(asyncio.Protocol):
    """Buffers incoming bytes and wakes the one reader waiting for them."""

    transport: asyncio.Transport  # set by connection_made, before any byte arrives

    def __init__(self) -> None:
        self.chunks: deque[bytes] = deque()
        self.buffered = 0
        self.eof = False
        self.error: Exception | None = None
        self.reading_paused = False
        self.waiter: asyncio.Future[None] | None = None
        self.writable: asyncio.Future[None] | None = None  # set while writing is paused

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # asyncio types it BaseTransport; a stream connection hands a Transport.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.chunks.append(data)
        self.buffered += len(data)
        if self.buffered >= _PAUSE_AT and not self.reading_paused:
            self.reading_paused = True
            self.transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool:
        self.eof = True
        self._wake()
        return False  # let the transport close

    def connection_lost(self, exc: Exception | None) -> None:
        self.eof = True
        self.error = exc
        self._wake()
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)

    def pause_writing(self) -> None:
        self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


def _expire(waiter: asyncio.Future[None], error: Exception) -> None:
    if not waiter.done():
        waiter.set_exception(error)


class LoopStream(httpcore.AsyncNetworkStream):
    """One upstream connection (plain or TLS) as httpcore expects it."""

    def __init__(self, transport: asyncio.Transport, protocol: _Protocol) -> None:
        self._transport = transport
        self._protocol = protocol
        self._held: bytes | None = None  # a small write waiting for the next one

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        protocol = self._protocol
        if not protocol.chunks:
            if protocol.eof:
                return self._at_end()
            await self._wait_for_data(timeout)
            if not protocol.chunks:
                return self._at_end()
        data = protocol.chunks.popleft()
        if len(data) > max_bytes:
            protocol.chunks.appendleft(data[max_bytes:])
            data = data[:max_bytes]
        protocol.buffered -= len(data)
        if protocol.reading_paused and protocol.buffered <= _RESUME_AT:
            protocol.reading_paused = False
            self._transport.resume_reading()
        return data

    async def _wait_for_data(self, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        waiter = self._protocol.waiter = loop.create_future()
        timer = None
        if timeout is not None:
            error = httpcore.ReadTimeout(f"no data from the upstream for {timeout:g} s")
            timer = loop.call_later(timeout, _expire, waiter, error)
        try:
            await waiter
        finally:
            self._protocol.waiter = None
            if timer is not None:
                timer.cancel()

    def _at_end(self) -> bytes:
        error = self._protocol.error
        if error is not None:
            raise httpcore.ReadError(str(error) or type(error).__name__) from error
        return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:
            return
        if self._transport.is_closing():
            raise httpcore.WriteError("the upstream connection is closed")
        held = self._held
        if held is None and len(buffer) <= _HOLD_AT_MOST:
            # httpcore writes the request head, then the body: hold the head for
            # this turn of the loop so both leave in one segment (the upstream
            # then wakes once, not twice; about 0.5 ms on loopback).
            self._held = buffer
            asyncio.get_running_loop().call_soon(self._release)
            return
        if held is not None:
            self._held = None
            if len(held) + len(buffer) <= _JOIN_AT_MOST:
                buffer = held + buffer
            else:
                self._transport.write(held)
        if len(buffer) <= _SLICE:
            self._transport.write(buffer)
            await self._drained(timeout)
            return
        view = memoryview(buffer)
        for start in range(0, len(view), _SLICE):
            self._transport.write(view[start : start + _SLICE])
            await self._drained(timeout)

    def _release(self) -> None:
        held, self._held = self._held, None
        if held is not None and not self._transport.is_closing():
            self._transport.write(held)

    async def _drained(self, timeout: float | None) -> None:
        protocol = self._protocol
        writable = protocol.writable
        if writable is None:
            return
        try:
            await asyncio.wait_for(asyncio.shield(writable), timeout)
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(
                f"the upstream took nothing for {timeout:g} s"
            ) from exc
        if protocol.error is not None or self._transport.is_closing():
            raise httpcore.WriteError("the upstream connection was lost while writing")

    async def aclose(self) -> None:
        self._transport.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> LoopStream:
        loop = asyncio.get_running_loop()
        try:
            transport = await asyncio.wait_for(
                loop.start_tls(
                    self._transport,
                    self._protocol,
                    ssl_context,
                    server_hostname=server_hostname,
                ),
                timeout,
            )
        except TimeoutError as exc:
            self._transport.abort()
            raise httpcore.ConnectTimeout(
                f"TLS handshake took longer than {timeout:g} s"
            ) from exc
        except (OSError, ssl.SSLError) as exc:
            self._transport.abort()
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        if transport is None:  # the connection closed during the handshake
            raise httpcore.ConnectError(
                "the connection closed during the TLS handshake"
            )
        # Flow control now goes through the TLS transport: pausing the TCP one
        # underneath it would leave the TLS layer's own buffering out of step.
        self._protocol.transport = transport
        return LoopStream(transport, self._protocol)

    def get_extra_info(self, info: str) -> Any:
        # What httpcore's connections ask of a stream; nothing of ours asks more.
        if info == "ssl_object":
            return self._transport.get_extra_info("ssl_object")
        if info == "is_readable":
            # httpcore asks this of an idle pooled connection: anything to read (or
            # the end of the stream) means the server closed or broke it.
            protocol = self._protocol
            return bool(protocol.chunks) or protocol.eof or self._transport.is_closing()
        return None


class LoopBackend(httpcore.AsyncNetworkBackend):
    """Opens upstream connections with asyncio's own transports (TCP_NODELAY set)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> LoopStream:
        loop = asyncio.get_running_loop()
        local = (local_address, 0) if local_address else None
        try:
            transport, protocol = await asyncio.wait_for(
                loop.create_connection(_Protocol, host, port, local_addr=local),
                timeout,
            )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(
                f"connecting to {host}:{port} took longer than {timeout:g} s"
            ) from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        sock = transport.get_extra_info("socket")
        if sock is not None:
            for option in socket_options or ():
                sock.setsockopt(*option)
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return LoopStream(transport, protocol)
