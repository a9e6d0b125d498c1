"""The one header filter, and the redaction of stored headers: tables of cases."""

from __future__ import annotations

import pytest

from apps.proxy.recorder import headers_redact, secret_fingerprint
from apps.proxy.upstream import headers_forwardable


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ([(b"x-api-key", b"k")], [(b"x-api-key", b"k")]),
        ([(b"authorization", b"Bearer t")], [(b"authorization", b"Bearer t")]),
        ([(b"anthropic-beta", b"a,b")], [(b"anthropic-beta", b"a,b")]),
        ([(b"Host", b"127.0.0.1:8001")], []),
        ([(b"content-length", b"12")], []),
        ([(b"transfer-encoding", b"chunked")], []),
        ([(b"Connection", b"keep-alive")], []),
        ([(b"keep-alive", b"timeout=5")], []),
        ([(b"te", b"trailers")], []),
        ([(b"trailer", b"x")], []),
        ([(b"upgrade", b"h2c")], []),
        ([(b"proxy-authorization", b"Basic x")], []),
        ([(b"proxy-authenticate", b"Basic")], []),
        (
            [(b"connection", b"close, X-Foo"), (b"x-foo", b"1"), (b"x-bar", b"2")],
            [(b"x-bar", b"2")],
        ),
        (
            [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")],
            [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2")],
        ),
        (
            [(b"Request-Id", b"req_1"), (b"retry-after", b"3")],
            [(b"Request-Id", b"req_1"), (b"retry-after", b"3")],
        ),
        ([(b"content-encoding", b"gzip")], [(b"content-encoding", b"gzip")]),
        ([(b"x-odd", b"\xff\xfe value")], [(b"x-odd", b"\xff\xfe value")]),
    ],
)
def test_it_forwards_end_to_end_headers_and_drops_hop_by_hop_ones(given, kept):
    assert headers_forwardable(given) == kept


@pytest.mark.parametrize(
    ("name", "value", "stored"),
    [
        (b"x-api-key", b"sk-ant-api03-abc", secret_fingerprint("sk-ant-api03-abc")),
        (
            b"Authorization",
            b"Bearer sk-ant-oat01-x",
            "Bearer " + secret_fingerprint("sk-ant-oat01-x"),
        ),
        (
            b"authorization",
            b"Basic dXNlcjpwdw==",
            "Basic " + secret_fingerprint("dXNlcjpwdw=="),
        ),
        (b"cookie", b"a=b", secret_fingerprint("a=b")),
        (b"set-cookie", b"id=1; Path=/", secret_fingerprint("id=1; Path=/")),
        (b"proxy-authorization", b"Basic zz", "Basic " + secret_fingerprint("zz")),
        (b"x-team-token", b"t0k3n", secret_fingerprint("t0k3n")),
        (b"anthropic-version", b"2023-06-01", "2023-06-01"),
        (b"user-agent", b"claude-cli/2.1.197", "claude-cli/2.1.197"),
    ],
)
def test_it_stores_secrets_as_fingerprints(name, value, stored):
    [[_, kept]] = headers_redact([(name, value)], extra=["X-Team-Token"])

    assert kept == stored


def test_it_tells_two_keys_apart_by_fingerprint():
    first, second = secret_fingerprint("key-one"), secret_fingerprint("key-two")

    assert first != second
    assert first.startswith("sha256:") and len(first) == len("sha256:") + 12
