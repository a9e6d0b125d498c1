"""The relay's upstream pool, against real loopback servers (plain and TLS)."""

from __future__ import annotations

import asyncio
import gc
import ssl
from functools import partial

import httpcore
import pytest

from apps.proxy.pool import PoolFull, UpstreamPool
from tests.conftest import wait_for_async
from tests.proxy.test_transport import (
    RESPONSE,
    certificate,
    closed_by_server,
    read_request,
    request,
    run,
    serve,
)


def keep_alive_server(connections: list, *, close_after: bool = False):
    async def handler(reader, writer):
        connections.append(writer)
        try:
            while True:
                await read_request(reader)
                writer.write(RESPONSE)
                await writer.drain()
                if close_after:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    return handler


async def fetch(pool: UpstreamPool, port: int, scheme: bytes = b"http") -> bytes:
    response = await pool.handle_async_request(request(port, scheme=scheme))
    try:
        return await response.aread()
    finally:
        await response.aclose()


def test_it_reuses_one_connection_for_calls_one_after_another():
    connections = []

    async def scenario():
        server, port = await serve(keep_alive_server(connections))
        pool = UpstreamPool(max_connections=10)
        bodies = [await fetch(pool, port) for _ in range(3)]
        server.close()
        return bodies, pool.opened, pool.idle

    bodies, opened, idle = run(scenario())

    assert bodies == [b"hello"] * 3
    assert (opened, idle, len(connections)) == (1, 1, 1)


def test_calls_at_the_same_time_get_a_connection_each_and_all_come_back():
    connections = []

    async def scenario():
        server, port = await serve(keep_alive_server(connections))
        pool = UpstreamPool(max_connections=10)
        bodies = await asyncio.gather(*(fetch(pool, port) for _ in range(4)))
        server.close()
        return bodies, pool.opened, pool.idle

    bodies, opened, idle = run(scenario())

    assert bodies == [b"hello"] * 4
    assert opened == idle == len(connections) == 4


def test_a_connection_the_server_closed_is_not_taken_again():
    connections = []

    async def scenario():
        server, port = await serve(keep_alive_server(connections, close_after=True))
        pool = UpstreamPool(max_connections=10)
        response = await pool.handle_async_request(request(port))
        first = await response.aread()
        await response.aclose()  # back to the pool, idle
        await wait_for_async(partial(closed_by_server, response))
        second = await fetch(pool, port)
        server.close()
        return [first, second], pool.opened

    bodies, opened = run(scenario())

    assert bodies == [b"hello", b"hello"]
    assert opened == len(connections) == 2


def test_a_response_left_before_its_end_closes_its_connection():
    async def handler(reader, writer):
        await read_request(reader)
        writer.write(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n"
        )
        await writer.drain()
        try:
            await reader.read()  # until the pool closes the connection
        finally:
            closed.set_result(True)

    async def scenario():
        global closed
        closed = asyncio.get_running_loop().create_future()
        server, port = await serve(handler)
        pool = UpstreamPool(max_connections=10)
        response = await pool.handle_async_request(request(port))
        chunks = response.aiter_stream()
        first = await chunks.__anext__()
        await chunks.aclose()
        await response.aclose()  # as the relay does when its client goes away
        await asyncio.wait_for(closed, 5)
        server.close()
        return first, pool.idle

    first, idle = run(scenario())

    assert (first, idle) == (b"first", 0)


def test_a_failed_call_leaves_no_connection_behind():
    async def handler(reader, writer):
        await read_request(reader)
        writer.transport.abort()  # a reset instead of an answer

    async def scenario():
        server, port = await serve(handler)
        pool = UpstreamPool(max_connections=10)
        with pytest.raises(httpcore.RemoteProtocolError):
            await pool.handle_async_request(request(port))
        server.close()
        return pool.idle

    assert run(scenario()) == 0


def test_it_speaks_verified_tls_and_reuses_the_connection(tmp_path):
    cert_path, key_path = certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_path, key_path)
    connections = []

    async def scenario():
        server, port = await serve(keep_alive_server(connections), ssl=server_context)
        trusting = UpstreamPool(
            max_connections=10,
            ssl_context=ssl.create_default_context(cafile=str(cert_path)),
        )
        bodies = [await fetch(trusting, port, b"https") for _ in range(2)]
        with pytest.raises(httpcore.ConnectError, match="CERTIFICATE_VERIFY"):
            await fetch(UpstreamPool(max_connections=10), port, b"https")  # certifi's
        server.close()
        return bodies, trusting.opened

    bodies, opened = run(scenario())

    assert bodies == [b"hello", b"hello"]
    assert opened == 1


def test_a_call_beyond_the_bound_fails_at_once_and_a_closed_call_frees_its_slot():
    connections = []

    async def scenario():
        server, port = await serve(keep_alive_server(connections))
        pool = UpstreamPool(max_connections=2)
        held = [await pool.handle_async_request(request(port)) for _ in range(2)]
        with pytest.raises(PoolFull, match="all 2 connections are in use"):
            await pool.handle_async_request(request(port))
        for response in held:
            await response.aread()  # read to its end, so the connection can serve again
        await held[0].aclose()
        body = await fetch(pool, port)  # takes the connection held[0] gave back
        await held[1].aclose()
        server.close()
        return body, pool.opened, pool.idle, pool.lent

    body, opened, idle, lent = run(scenario())

    assert body == b"hello"
    assert (opened, idle, lent) == (2, 2, 0)


def test_a_response_dropped_without_closing_gives_its_slot_back():
    connections = []

    async def scenario():
        server, port = await serve(keep_alive_server(connections))
        pool = UpstreamPool(max_connections=1)
        response = await pool.handle_async_request(request(port))
        full = pool.lent
        del response  # as when a client leaves before its response was iterated
        gc.collect()
        body = await fetch(pool, port)
        server.close()
        return full, body

    assert run(scenario()) == (1, b"hello")
