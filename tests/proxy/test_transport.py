"""The relay's own httpcore network backend, against real loopback servers.

The relay tests drive it end to end (streams, resets, timeouts, compression); these
pin what they do not reach: TLS, flow control both ways, stale pooled connections,
and the upstream origin (Host, port, prefix) taken from the configured URL.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from functools import partial
from pathlib import Path

import httpcore
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.test import override_settings

from apps.proxy import transport
from apps.proxy.transport import LoopBackend
from apps.proxy.upstream import upstream_request
from tests.conftest import wait_for_async

RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 20))


async def serve(handler, **kwargs) -> tuple[asyncio.Server, int]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0, **kwargs)
    return server, server.sockets[0].getsockname()[1]


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


def request(port: int, *, scheme: bytes = b"http", timeout: float = 5.0):
    return httpcore.Request(
        b"GET",
        httpcore.URL(scheme=scheme, host=b"localhost", port=port, target=b"/x"),
        headers=[(b"Host", b"localhost")],
        extensions={"timeout": {"connect": timeout, "read": timeout, "write": timeout}},
    )


def closed_by_server(response: httpcore.Response) -> bool:
    """Whether the connection a response came on has seen the server close it."""
    return response.extensions["network_stream"].get_extra_info("is_readable")


def certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def test_it_speaks_tls_and_verifies_the_certificate(tmp_path):
    cert_path, key_path = certificate(tmp_path)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_path, key_path)

    async def handler(reader, writer):
        await read_request(reader)
        writer.write(RESPONSE)
        await writer.drain()
        writer.close()

    async def scenario():
        server, port = await serve(handler, ssl=server_context)
        trusted = ssl.create_default_context(cafile=str(cert_path))
        async with httpcore.AsyncConnectionPool(
            ssl_context=trusted, network_backend=LoopBackend()
        ) as pool:
            response = await pool.handle_async_request(request(port, scheme=b"https"))
            body = await response.aread()
            tls_version = (
                response.extensions["network_stream"]
                .get_extra_info("ssl_object")
                .version()
            )
        # An untrusted certificate is a connect error, never a silent success.
        async with httpcore.AsyncConnectionPool(network_backend=LoopBackend()) as pool:
            with pytest.raises(httpcore.ConnectError, match="CERTIFICATE_VERIFY"):
                await pool.handle_async_request(request(port, scheme=b"https"))
        server.close()
        return response.status, body, tls_version

    status, body, tls_version = run(scenario())

    assert (status, body) == (200, b"hello")
    assert tls_version.startswith("TLS")


@pytest.mark.parametrize("tls", [False, True])
def test_a_large_response_pauses_reading_and_arrives_whole(monkeypatch, tmp_path, tls):
    monkeypatch.setattr(transport, "_PAUSE_AT", 64 * 1024)
    monkeypatch.setattr(transport, "_RESUME_AT", 16 * 1024)
    payload = bytes(range(256)) * (8 * 1024 * 1024 // 256)  # 8 MB
    buffered = []
    original = transport._Protocol.data_received

    def watching(self, data):
        original(self, data)
        buffered.append(self.buffered)

    monkeypatch.setattr(transport._Protocol, "data_received", watching)
    server_tls = client_tls = None
    if tls:
        cert_path, key_path = certificate(tmp_path)
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_tls.load_cert_chain(cert_path, key_path)
        client_tls = ssl.create_default_context(cafile=str(cert_path))

    async def handler(reader, writer):
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(payload))
        writer.write(payload)
        await writer.drain()
        writer.close()

    async def scenario():
        server, port = await serve(handler, ssl=server_tls)
        async with httpcore.AsyncConnectionPool(
            ssl_context=client_tls, network_backend=LoopBackend()
        ) as pool:
            scheme = b"https" if tls else b"http"
            response = await pool.handle_async_request(request(port, scheme=scheme))
            received = bytearray()
            async for chunk in response.aiter_stream():
                received += chunk
                await asyncio.sleep(0.001)  # a slow consumer lets the buffer fill
            await response.aclose()
        server.close()
        return bytes(received)

    assert run(scenario()) == payload
    # Paused at 64 KB, the buffer holds at most that plus what was in flight.
    assert 64 * 1024 <= max(buffered) <= 512 * 1024, max(buffered)


def test_a_silent_upstream_is_a_read_timeout():
    async def handler(reader, writer):
        await read_request(reader)
        await asyncio.sleep(5)

    async def scenario():
        server, port = await serve(handler)
        async with httpcore.AsyncConnectionPool(network_backend=LoopBackend()) as pool:
            with pytest.raises(httpcore.ReadTimeout):
                await pool.handle_async_request(request(port, timeout=0.3))
        server.close()

    run(scenario())


def test_a_peer_that_reads_nothing_is_a_write_timeout():
    async def handler(reader, writer):
        await asyncio.sleep(5)  # never reads: the request cannot be sent

    async def scenario():
        server, port = await serve(handler)
        async with httpcore.AsyncConnectionPool(network_backend=LoopBackend()) as pool:
            big = httpcore.Request(
                b"POST",
                httpcore.URL(scheme=b"http", host=b"127.0.0.1", port=port, target=b"/"),
                headers=[(b"Host", b"x"), (b"Content-Length", b"%d" % (64 << 20))],
                content=b"x" * (64 << 20),
                extensions={"timeout": {"write": 0.5, "read": 5, "connect": 5}},
            )
            with pytest.raises(httpcore.WriteTimeout):
                await pool.handle_async_request(big)
        server.close()

    run(scenario())


def test_a_pooled_connection_the_server_closed_is_not_reused():
    connections = []

    async def handler(reader, writer):
        connections.append(writer)
        await read_request(reader)
        writer.write(RESPONSE)  # keep-alive by HTTP/1.1 rules...
        await writer.drain()
        writer.close()  # ...but the server closes it anyway

    async def scenario():
        server, port = await serve(handler)
        async with httpcore.AsyncConnectionPool(network_backend=LoopBackend()) as pool:
            bodies = []
            for _ in range(2):
                response = await pool.handle_async_request(request(port))
                bodies.append(await response.aread())
                await response.aclose()  # back to the pool, idle
                await wait_for_async(partial(closed_by_server, response))
        server.close()
        return bodies

    assert run(scenario()) == [b"hello", b"hello"]
    assert len(connections) == 2


def test_a_refused_connection_is_a_connect_error():
    async def scenario():
        server, port = await serve(lambda reader, writer: None)
        server.close()
        await server.wait_closed()
        async with httpcore.AsyncConnectionPool(network_backend=LoopBackend()) as pool:
            with pytest.raises(httpcore.ConnectError):
                await pool.handle_async_request(request(port))

    run(scenario())


ANTHROPIC = (b"https", b"api.anthropic.com", 443)
TARGET = b"/v1/messages?beta=true"


@pytest.mark.parametrize(
    ("upstream", "origin", "host", "target"),
    [
        ("https://api.anthropic.com", ANTHROPIC, b"api.anthropic.com", TARGET),
        ("https://api.anthropic.com:443", ANTHROPIC, b"api.anthropic.com", TARGET),
        (
            "http://127.0.0.1:9000/prefix",
            (b"http", b"127.0.0.1", 9000),
            b"127.0.0.1:9000",
            b"/prefix" + TARGET,
        ),
        ("http://[::1]:9000/", (b"http", b"::1", 9000), b"[::1]:9000", TARGET),
    ],
)
def test_the_upstream_request_carries_the_origin_and_the_clients_parts(
    upstream, origin, host, target
):
    with override_settings(CLAUDEMON_UPSTREAM_URL=upstream):
        outgoing = upstream_request(
            method="POST",
            raw_path=b"/v1/messages",
            query_string=b"beta=true",
            headers=[(b"x-api-key", b"k"), (b"connection", b"close"), (b"host", b"h")],
            body=b"{}",
        )

    url = outgoing.url
    assert (url.scheme, url.host, url.port) == origin
    assert url.target == target
    assert outgoing.headers == [
        (b"Host", host),
        (b"x-api-key", b"k"),
        (b"Content-Length", b"2"),
    ]


# A large body leaves apart from its head, a megabyte at a time (asyncio copies what
# the socket does not take at once: a whole body would be held twice).
@pytest.mark.parametrize(("size", "writes"), [(10_000, 1), (2 << 20, 3)])
def test_a_request_head_leaves_with_its_body_unless_the_body_is_large(
    monkeypatch, size, writes
):
    written = []
    original = asyncio.selector_events._SelectorSocketTransport.write

    def counting(self, data):
        written.append(len(data))
        return original(self, data)

    monkeypatch.setattr(
        asyncio.selector_events._SelectorSocketTransport, "write", counting
    )
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    received = []

    async def handler(reader, writer):
        received.append(await read_request(reader))
        writer.write(RESPONSE)
        await writer.drain()
        writer.close()

    async def scenario():
        server, port = await serve(handler)
        async with httpcore.AsyncConnectionPool(network_backend=LoopBackend()) as pool:
            response = await pool.handle_async_request(
                httpcore.Request(
                    b"POST",
                    httpcore.URL(
                        scheme=b"http", host=b"127.0.0.1", port=port, target=b"/"
                    ),
                    headers=[(b"Host", b"x"), (b"Content-Length", b"%d" % size)],
                    content=body,
                )
            )
            await response.aread()
            await response.aclose()
        server.close()

    written.clear()
    run(scenario())

    client_writes = [n for n in written if n != len(RESPONSE)]
    assert len(client_writes) == writes, written
    assert received[0].endswith(b"\r\n\r\n" + body)
